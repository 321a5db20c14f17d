"""Client API keys and the usage ledger."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class ApiKey(models.Model):
    """A client key for /v1. Only its SHA-256 is stored; the key is shown once at creation."""

    label = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="first characters, to recognise a key")
    enabled = models.BooleanField(default=True)
    allowed_models = models.JSONField(default=list, blank=True, help_text="empty = every model")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Limits (gateway/limits.py); empty or 0 = unlimited. Effective in every process within one
    # snapshot poll (the key snapshot reloads on the api_keys stamp).
    expires_at = models.DateTimeField(null=True, blank=True, help_text="after this instant the key is refused (401)")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="empty or 0 = unlimited")
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="prompt + completion tokens in the last minute; counted when an answer ends")
    max_concurrent_requests = models.PositiveIntegerField(null=True, blank=True, help_text="requests in flight at once")
    daily_token_budget = models.PositiveBigIntegerField(null=True, blank=True, help_text="tokens per UTC day")
    monthly_token_budget = models.PositiveBigIntegerField(null=True, blank=True, help_text="tokens per UTC calendar month")

    class Meta:
        verbose_name = "API key"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.label} ({self.prefix}…)"


class UsageStatus(models.TextChoices):
    OK = "ok", "ok"
    ERROR = "error", "error"
    CANCELLED = "cancelled", "cancelled"


class UsageRecord(models.Model):
    """One client request: who, which model/mode/account, tokens, timings, outcome."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    api_key_label = models.CharField(max_length=100, blank=True, default="")
    endpoint = models.CharField(max_length=40)
    model = models.CharField(max_length=80, db_index=True)
    mode = models.CharField(max_length=40, blank=True, default="")
    account = models.ForeignKey("accounts.Account", null=True, blank=True, on_delete=models.SET_NULL)
    stream = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=UsageStatus.choices, default=UsageStatus.OK)
    error_code = models.CharField(max_length=60, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=1)
    request_id = models.CharField(max_length=128, blank=True, default="", db_index=True)

    class Meta:
        ordering = ["-created_at"]


class StoredResponse(models.Model):
    """A Responses API answer kept for GET /v1/responses/{id} and `previous_response_id` chaining.

    Owned by the ApiKey row that created it; NULL owner = made with an `app.api_key` key or on an
    open API (every such caller shares them). Pruned after `responses.retention_days`."""

    id = models.CharField(primary_key=True, max_length=64)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.CASCADE)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    previous_response_id = models.CharField(max_length=64, blank=True, default="")
    response = models.JSONField(help_text="the final response object, output items included")
    input_items = models.JSONField(default=list, help_text="the request's own input items, with ids")
    # Background mode (gateway/background.py). A foreground response is written once, finished, and
    # keeps the defaults below. A background one is written `queued` with its request body, claimed
    # by a worker (`attempts` + 1, `worker_id`, `heartbeat_at`), and ends completed / incomplete /
    # failed / cancelled. `attempts` is the fence of every write a worker makes: a worker whose
    # attempt is no longer the row's (its job was re-queued) or whose row is no longer in progress
    # (cancelled) stops.
    status = models.CharField(max_length=12, default="completed", db_index=True)
    background = models.BooleanField(default=False)
    request_body = models.JSONField(null=True, blank=True, help_text="background: the request, re-run after a restart")
    attempts = models.PositiveSmallIntegerField(default=0)
    worker_id = models.CharField(max_length=200, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class StoredResponseEvent(models.Model):
    """One stream event of a background response, kept so that `GET /v1/responses/{id}?stream=true
    &starting_after=N` can replay and tail it. Sequence numbers are unique per response and never
    reused: a re-run after a worker restart continues after the last number (`attempt` tells runs apart)."""

    response = models.ForeignKey(StoredResponse, on_delete=models.CASCADE, related_name="events")
    sequence_number = models.PositiveIntegerField()
    attempt = models.PositiveSmallIntegerField(default=1)
    type = models.CharField(max_length=80)
    # the event's JSON text as it is sent (a JSONField would be re-serialised on every replay, and
    # PostgreSQL's jsonb would reorder its keys)
    data = models.TextField()

    class Meta:
        ordering = ["response", "sequence_number"]
        constraints = [models.UniqueConstraint(fields=["response", "sequence_number"], name="response_event_seq")]


class UsageHourly(models.Model):
    """The ledger rolled up per hour (UTC), key, model and account; kept after raw rows are pruned.

    Rows are recomputed whole from UsageRecord by gateway/ledger.py (`usage_rollup`), never
    incremented, so a rerun gives the same numbers."""

    hour = models.DateTimeField(db_index=True, help_text="start of the hour, UTC")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    api_key_label = models.CharField(max_length=100, blank=True, default="")
    model = models.CharField(max_length=80)
    account = models.ForeignKey("accounts.Account", null=True, blank=True, on_delete=models.SET_NULL)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "hourly usage"
        verbose_name_plural = "hourly usage"
        ordering = ["-hour", "model"]
