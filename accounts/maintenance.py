"""Maintenance of the account pool: import tokens, enable, disable, delete, move between pools.

Each writes the database directly and bumps the "accounts" stamp in the same transaction, so every
process's snapshot (accounts/snapshot.py) reloads the change.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import refresh, snapshot
from accounts.inflight import slots
from accounts.models import Account, AccountStatus, TierChange
from accounts.quota import quota_probe_tokens
from accounts.tokenfile import TokenLine, tokens_parse
from grokweb.errors import InvalidRequest
from grokweb.registry import POOL_MODES
from core import crypto
from core.snapshots import stamp_bump

log = logging.getLogger(__name__)


IMPORT_POOLS = ("auto", "basic", "super", "heavy")


@dataclass(slots=True)
class ImportReport:
    imported: list[tuple[int, int, str, str]] = field(default_factory=list)  # (line, account id, last4, pool)
    duplicates: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    notes: list[tuple[int, str]] = field(default_factory=list)  # (line, e.g. tier probe result)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        return f"{verb} {len(self.imported)}, duplicate {len(self.duplicates)}, invalid {len(self.invalid)}"

    def lines(self) -> list[str]:
        out = [self.summary()]
        for line, account_id, last4, pool in self.imported:
            out.append(f"  line {line}: {'ok' if self.dry_run else 'imported'} ••••{last4} → {pool}" + (f" (id {account_id})" if account_id else ""))
        for line, why in self.duplicates:
            out.append(f"  line {line}: duplicate ({why})")
        for line, why in self.invalid:
            out.append(f"  line {line}: invalid ({why})")
        for line, why in self.notes:
            out.append(f"  line {line}: {why}")
        return out


def account_import(
    *,
    tokens: str | bytes | Sequence[str],
    pool: str,
    tags: Iterable[str] = (),
    dry_run: bool = False,
    note: str = "",
    probe_after: bool = True,
) -> ImportReport:
    """Import SSO tokens (one per line; see accounts/tokenfile.py for the accepted forms).

    pool "auto" probes each new token's rate limits now and stores the detected tier (basic when
    the probe fails). All rows are written in one transaction: nothing is half-imported."""
    if pool not in IMPORT_POOLS:
        raise InvalidRequest(f"pool must be one of {', '.join(IMPORT_POOLS)}, got {pool!r}", param="pool")
    tags = [t.strip() for t in tags if t and t.strip()]
    if isinstance(tokens, (str, bytes)):
        parsed = tokens_parse(tokens)
    else:
        parsed = []
        for i, raw in enumerate(tokens, start=1):
            parsed.extend(TokenLine(line=i, token=t.token, error=t.error) for t in tokens_parse(raw) if t.token or t.error)
    report = ImportReport(dry_run=dry_run)
    seen: dict[str, int] = {}
    fresh: list[tuple[int, str, str]] = []  # (line, token, fingerprint)
    for item in parsed:
        if item.error:
            report.invalid.append((item.line, item.error))
            continue
        fp = crypto.fingerprint(item.token)
        if fp in seen:
            report.duplicates.append((item.line, f"same token as line {seen[fp]}"))
            continue
        seen[fp] = item.line
        fresh.append((item.line, item.token, fp))
    stored = set(Account.objects.filter(token_fingerprint__in=[fp for _, _, fp in fresh]).values_list("token_fingerprint", flat=True)) if fresh else set()
    new: list[tuple[int, str, str]] = []
    for line, token, fp in fresh:
        if fp in stored:
            report.duplicates.append((line, "already stored"))
        else:
            new.append((line, token, fp))
    probes: dict[str, Any] = {}
    if pool == "auto" and new and not dry_run:
        probes = quota_probe_tokens(tokens=[t for _, t, _ in new])
    if dry_run:
        for line, token, _ in new:
            report.imported.append((line, 0, token[-4:], pool))
        return report
    now = time.time()
    created: list[Account] = []
    history: list[TierChange] = []
    with transaction.atomic():
        for line, token, fp in new:
            account = Account(tags=list(tags), note=note[:200])
            account.set_token(token)
            if pool == "auto":
                result = probes.get(token)
                account.pool = "basic"
                if result is not None:
                    result.apply_to(account, now=now)
                    report.notes.append((line, result.describe()))
                account.pool_detected = True  # detection owns this pool: later syncs may re-classify it
            else:
                account.pool = pool
            account.save()
            created.append(account)
            report.imported.append((line, account.id, account.token_last4, account.pool))
            if pool == "auto":  # the start of the account's tier history
                why = result.describe() if result is not None else "no tier probe answer; stored as basic"
                history.append(TierChange(account=account, old="", new=account.pool, reason=f"import with pool auto: {why}"[:300]))
        TierChange.objects.bulk_create(history)
        stamp_bump("accounts")
        if probe_after and pool != "auto" and created:
            ids = [a.id for a in created]
            transaction.on_commit(lambda: refresh.refresh_in_background(refresh.refresh_enqueue, ids, None))
    return report


def _account_obj(account: Account | int) -> Account:
    return account if isinstance(account, Account) else Account.objects.get(pk=account)


def _account_save(account: Account, fields: list[str]) -> Account:
    with transaction.atomic():
        account.save(update_fields=fields + ["updated_at"])
        stamp_bump("accounts")
    return account


def account_disable(*, account: Account | int, reason: str = "") -> Account:
    account = _account_obj(account)
    account.status = AccountStatus.DISABLED
    account.state_reason = (reason or "disabled by operator")[:200]
    account.ext = {**(account.ext or {}), "disabled_at": time.time(), "disabled_reason": reason}
    return _account_save(account, ["status", "state_reason", "ext"])


def account_enable(*, account: Account | int, reason: str = "") -> Account:
    """Back to active: clears the state reason, cooling and per-mode cooldowns."""
    account = _account_obj(account)
    account.status = AccountStatus.ACTIVE
    account.state_reason = ""
    account.cooling_until = None
    ext = dict(account.ext or {})
    ext.pop("cooldowns", None)
    if reason:
        ext["enabled_reason"] = reason
    account.ext = ext
    account.health = max(account.health, 0.5)
    _account_save(account, ["status", "state_reason", "cooling_until", "ext", "health"])
    backend = slots()
    for mode in POOL_MODES.get(account.pool, ()):
        try:
            backend.clear_cooldown_sync(account.id, mode)
        except Exception:
            log.warning("clearing the shared cooldown of account %s failed", account.id, exc_info=True)
        snapshot.cooldown_forget(account_id=account.id, mode=mode)
    return account


def account_delete(*, account: Account | int, reason: str = "") -> Account:
    """Soft delete: the row stays (history, usage records) but leaves the pool."""
    account = _account_obj(account)
    account.deleted_at = timezone.now()
    account.status = AccountStatus.DISABLED
    account.state_reason = (reason or "deleted by operator")[:200]
    return _account_save(account, ["deleted_at", "status", "state_reason"])


def account_set_pool(*, account: Account | int, pool: str, detected: bool = False, reason: str = "") -> Account:
    """The operator's pool choice (detected=False: later syncs leave it alone), kept in the tier history."""
    if pool not in POOL_MODES:
        raise InvalidRequest(f"pool must be one of basic, super, heavy, got {pool!r}", param="pool")
    account = _account_obj(account)
    old = account.pool
    account.pool = pool
    account.pool_detected = detected
    with transaction.atomic():
        _account_save(account, ["pool", "pool_detected"])
        if old != pool:
            TierChange.objects.create(account=account, old=old, new=pool, reason=(reason or "set by the operator")[:300])
    return account
