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
