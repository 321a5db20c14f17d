"""Accounts (upstream Grok Web sessions) and their tier history.

The database is the source of truth. Request paths read in-memory snapshots that refresh when a
VersionStamp changes (core/snapshots.py); writes from the hot path are batched.
"""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from core.fields import EncryptedTextField

MODES = ("auto", "fast", "expert", "heavy", "grok-420-computer-use-sa")


class Pool(models.TextChoices):
    BASIC = "basic", "basic"
    SUPER = "super", "super"
    HEAVY = "heavy", "heavy"


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "active"
    COOLING = "cooling", "cooling"
    EXPIRED = "expired", "expired"
    DISABLED = "disabled", "disabled"


class QuotaSource(models.IntegerChoices):
    DEFAULT = 0, "default"
    REAL = 1, "real"
    ESTIMATED = 2, "estimated"


class Account(models.Model):
    """One upstream Grok Web account, identified by its SSO token.

    quotas: {mode: {"remaining": int, "total": int, "window_seconds": int, "reset_at": epoch s | None,
                    "synced_at": epoch s | None, "source": 0|1|2, "stale": bool}}
    """

    token = EncryptedTextField(help_text="SSO cookie value, encrypted at rest")
    token_fingerprint = models.CharField(max_length=64, unique=True, editable=False)
    token_last4 = models.CharField(max_length=4, editable=False)
    pool = models.CharField(max_length=8, choices=Pool.choices, default=Pool.BASIC, db_index=True)
    pool_detected = models.BooleanField(default=False, help_text="pool came from quota tier detection")
    status = models.CharField(max_length=10, choices=AccountStatus.choices, default=AccountStatus.ACTIVE, db_index=True)
    state_reason = models.CharField(max_length=200, blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=200, blank=True, default="")
    user_id = models.CharField(max_length=64, blank=True, default="", help_text="upstream user id (from session or asset paths)")
    quotas = models.JSONField(default=dict, blank=True)
    health = models.FloatField(default=1.0)
    use_count = models.PositiveIntegerField(default=0)
    fail_count = models.PositiveIntegerField(default=0)
    sync_count = models.PositiveIntegerField(default=0)
    last_use_at = models.DateTimeField(null=True, blank=True)
    last_fail_at = models.DateTimeField(null=True, blank=True)
    last_fail_reason = models.CharField(max_length=64, blank=True, default="")
    last_sync_at = models.DateTimeField(null=True, blank=True)
    cooling_until = models.DateTimeField(null=True, blank=True)
    ext = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # indexed: large pools reload only rows changed since the last snapshot load (accounts/snapshot.py)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.pool} ••••{self.token_last4}"

    @property
    def masked_token(self) -> str:
        return "••••••" + self.token_last4

    def set_token(self, token: str) -> None:
        from core import crypto

        self.token = token
        self.token_fingerprint = crypto.fingerprint(token)
        self.token_last4 = token[-4:]


class TierChange(models.Model):
    """One change of an account's pool (tier): old → new, when and why. History for the operator.

    Written by tier detection (import with pool auto, quota refresh: accounts/quota.py) in the same
    transaction as the pool it changes, and by an operator's edit. `old` is blank for the pool
    detected at import."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="tier_changes")
    old = models.CharField(max_length=8, choices=Pool.choices, blank=True, default="", help_text="blank: detected at import")
    new = models.CharField(max_length=8, choices=Pool.choices)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    reason = models.CharField(max_length=300)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.old or '—'} → {self.new}"
