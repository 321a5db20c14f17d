"""The core's tables: runtime config, version stamps, operator alerts, egress proxies, process heartbeats.

RuntimeConfig, VersionStamp, OperatorAlert and Proxy were born in the accounts app; they moved here
(issue 17 §4: the project's core sits below the pool) with their tables kept under their first
names (`db_table`), so no row moved (core/migrations/0002, accounts/migrations/0004).

Heartbeat: when a Celery worker and Celery beat were last seen (core/heartbeat.py). A database
row, not the cache: without Redis the cache is per process (locmem), and the web processes that
report on /readyz and the admin index must see what the worker and beat wrote.
"""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from core.fields import EncryptedTextField


class Heartbeat(models.Model):
    name = models.CharField(max_length=20, primary_key=True)  # "worker" or "beat"
    seen_at = models.DateTimeField()
    host = models.CharField(max_length=200, blank=True, default="")  # Celery node name / host of the last stamp

    class Meta:
        verbose_name = "process heartbeat"

    def __str__(self) -> str:
        return f"{self.name} seen {self.seen_at.isoformat()} ({self.host})"


class Proxy(models.Model):
    """An egress proxy for upstream traffic (proxy.egress.mode = proxy_pool uses enabled rows too)."""

    url = EncryptedTextField(help_text="http://, https://, socks5:// (credentials allowed), encrypted at rest")
    label = models.CharField(max_length=100, blank=True, default="")
    enabled = models.BooleanField(default=True)
    healthy = models.BooleanField(default=True)
    fail_count = models.PositiveIntegerField(default=0)
    success_count = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True, default="")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_fail_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "accounts_proxy"
        verbose_name_plural = "proxies"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.label or f"proxy #{self.pk}"


class RuntimeConfig(models.Model):
    """Singleton (pk=1): the operator's saved runtime config, a nested dict of overrides."""

    data = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "accounts_runtimeconfig"
        verbose_name = "runtime config"
        verbose_name_plural = "runtime config"

    def __str__(self) -> str:
        return "Runtime config"


class VersionStamp(models.Model):
    """Bumped on every change of a snapshotted table; processes poll these to refresh snapshots."""

    name = models.CharField(max_length=32, primary_key=True)
    version = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "accounts_versionstamp"

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class AlertKind(models.TextChoices):
    ANTI_BOT = "anti_bot", "upstream anti-bot rejection"
    CLOUDFLARE = "cloudflare", "Cloudflare challenge (clearance rejected)"
    MEDIA_LINKS = "media_links", "media links without app.app_url"
    OTHER = "other", "other"


class OperatorAlert(models.Model):
    """Something the operator must fix (not an account's fault). Shown on the admin index and /readyz."""

    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    endpoint = models.CharField(max_length=200, blank=True, default="")
    egress = models.CharField(max_length=200, blank=True, default="", help_text="proxy label or 'direct'")
    message = models.TextField()
    hint = models.TextField(blank=True, default="")
    count = models.PositiveIntegerField(default=1)
    first_at = models.DateTimeField(default=timezone.now)
    last_at = models.DateTimeField(default=timezone.now)
    resolved = models.BooleanField(default=False, db_index=True)

    class Meta:
        db_table = "accounts_operatoralert"
        ordering = ["-last_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "endpoint", "egress"], condition=models.Q(resolved=False), name="one_open_alert"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.count}×)"
