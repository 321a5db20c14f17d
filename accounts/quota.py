"""Quota sync: probe `POST {web}/rest/rate-limits` per mode and store windows (docs/pool.md).

Wire format of one probe answer (GrokClient.rate_limits(mode=...) returns the JSON object):
    {"windowSizeSeconds": 7200, "remainingQueries": 50, "totalQueries": 50, ...}
Parsed into a window: remaining = remainingQueries (required: without it the window is unknown);
total = totalQueries (fallback: remaining; a zero total means "no such window"); window =
windowSizeSeconds (fallback: fast 86400 s, others 7200 s); reset_at = now + window (an estimate,
the API has no reset time); source real; synced_at now.

Tier: one rule, `account_tier_from_probe`, for import with pool auto, the scheduled and on-demand
refresh and the after-use probe. It decides only on a *full* probe — one that got an answer (a
window, or "no such window") for every tier-defining mode: auto, fast and heavy. A partial probe
(the after-use probe of the mode just used, `refresh_quotas --mode`) or one where any of those modes
failed updates the windows it saw and leaves the tier alone: a single `expert` window says nothing
about the account's `auto` window, and reading its absence as "basic" demoted paid accounts under
traffic. On a full probe: any heavy total > 0 → heavy; else the lowest of the votes auto.total
(7/20 → basic, 50 → super, 150 → heavy; no auto window votes basic) and fast.total (30 → basic,
140 → super, 400 → heavy); unknown numbers do not vote (docs/upstream-protocol.md §9.2, docs/pool.md). The pool is only
re-classified for accounts whose pool came from detection (`pool_detected`) — an operator's
explicit pool choice stands. Every change is recorded as a TierChange row (old → new, when, why).

A failed probe never leaves the pool stuck: that mode's window is marked stale; a real window is
decremented by one and becomes estimated; a window whose reset time passed is reset to full.
Account-level failures (invalid credentials, blocked, anti-bot, Cloudflare) feed the same reaction
matrix as chat calls (accounts.feedback.outcome_effect).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from accounts import pool as P
from core.config import config
from accounts.feedback import outcome_effect
from accounts.models import Account, AccountStatus, TierChange
from accounts.writer import SNAPSHOT_FIELDS, flusher, row_values, view_from_row
from grokweb.registry import POOL_MODES
from grokweb.classify import UpstreamError, UpstreamKind
from core.snapshots import stamp_bump
from core.text import text_clip

log = logging.getLogger(__name__)

ALL_MODES = ("auto", "fast", "expert", "heavy", "grok-420-computer-use-sa")
DETECT_MODES = ("auto", "fast", "heavy")  # the tier-defining windows: a full probe covers all three
AUTO_TIERS = {7: "basic", 20: "basic", 50: "super", 150: "heavy"}
FAST_TIERS = {30: "basic", 140: "super", 400: "heavy"}
ACCOUNT_KINDS = frozenset({
    UpstreamKind.AUTH_INVALID, UpstreamKind.BLOCKED, UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE,
})


def quota_parse(raw: Any, *, mode: str, now: float) -> P.QuotaWindow | None:
    """One rate-limits answer → a real window, or None when the answer carries no usable window."""
    if not isinstance(raw, dict):
        return None
    remaining = raw.get("remainingQueries")
    if isinstance(remaining, bool) or not isinstance(remaining, (int, float)):
        return None
    remaining = max(0, int(remaining))
    total = raw.get("totalQueries")
    total = int(total) if isinstance(total, (int, float)) and not isinstance(total, bool) else remaining
    if total <= 0:
        return None  # token-budget form or "no such mode": not a query window
    window = raw.get("windowSizeSeconds")
    window = int(window) if isinstance(window, (int, float)) and not isinstance(window, bool) and window > 0 else P.mode_window_fallback(mode)
    wait = raw.get("waitTimeSeconds")
    reset_at = now + window
    if remaining == 0 and isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > 0:
        reset_at = now + float(wait)
    return P.QuotaWindow(
        remaining=min(remaining, max(total, remaining)), total=max(total, remaining), window_seconds=window,
        reset_at=reset_at, synced_at=now, source=P.SOURCE_REAL, stale=False,
    )


def tier_detect(windows: dict[str, P.QuotaWindow | None]) -> str:
    heavy = windows.get("heavy")
    if heavy is not None and heavy.total > 0:
        return "heavy"
    votes: list[str] = []
    auto = windows.get("auto")
    if auto is None:
        votes.append("basic")
    elif auto.total in AUTO_TIERS:
        votes.append(AUTO_TIERS[auto.total])
    fast = windows.get("fast")
    if fast is not None and fast.total in FAST_TIERS:
        votes.append(FAST_TIERS[fast.total])
    if not votes:
        return "basic"
    return min(votes, key=lambda t: P.TIER_RANK[t])


def account_tier_from_probe(
    *, windows: dict[str, P.QuotaWindow | None], errors: dict[str, BaseException] | None = None,
) -> str | None:
    """The tier a probe proves, or None when it proves none (the tier must then stay as it is).

    `windows` holds every mode that answered (None = "no such window"), `errors` every mode that
    failed. Only a full probe decides: each tier-defining mode answered. Import with pool auto,
    the scheduled / on-demand refresh and the after-use probe all go through here."""
    errors = errors or {}
    if any(mode in errors or mode not in windows for mode in DETECT_MODES):
        return None
    return tier_detect(windows)


def probe_evidence(windows: dict[str, P.QuotaWindow | None]) -> str:
    """The tier-defining windows of a probe, for the tier history ("auto 50/50, fast 140/140, heavy none")."""
    parts = []
    for mode in DETECT_MODES:
        if mode not in windows:
            parts.append(f"{mode} not probed")
        elif windows[mode] is None:
            parts.append(f"{mode} none")
        else:
            parts.append(f"{mode} {windows[mode].remaining}/{windows[mode].total}")
    return ", ".join(parts)


def window_mark_stale(window: P.QuotaWindow, *, now: float) -> P.QuotaWindow:
    """Spec §12.5 on probe failure: real → decrement by one, estimated; reset passed → full again."""
    w = window.copy()
    if w.reset_at is not None and w.reset_at <= now:
        w.remaining = w.total if w.total > 0 else w.remaining
        w.reset_at = None
        if w.source == P.SOURCE_REAL:
            w.source = P.SOURCE_ESTIMATED
    elif w.source == P.SOURCE_REAL:
        w.remaining = max(0, w.remaining - 1)
        w.source = P.SOURCE_ESTIMATED
        if w.remaining == 0 and w.reset_at is None:
            w.reset_at = now + w.window_seconds
    w.stale = True
    return w


@dataclass(slots=True)
class ProbeResult:
    """Outcome of probing one account's modes."""

    windows: dict[str, P.QuotaWindow | None] = field(default_factory=dict)  # mode -> window (None: no window)
    errors: dict[str, BaseException] = field(default_factory=dict)  # mode -> failure
    at: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.windows) and not self.account_error

    @property
    def account_error(self) -> UpstreamError | None:
        for err in self.errors.values():
            if isinstance(err, UpstreamError) and err.kind in ACCOUNT_KINDS:
                return err
        return None

    @property
    def tier(self) -> str | None:
        """Detected tier, or None unless this was a full probe (account_tier_from_probe)."""
        return account_tier_from_probe(windows=self.windows, errors=self.errors)

    def describe(self) -> str:
        err = self.account_error
        if err is not None:
            return f"tier probe failed: {err.kind.value} ({text_clip(err.message, 200)}); stored as basic"
        if not self.windows:
            first = next(iter(self.errors.values()), None)
            return f"tier probe failed ({type(first).__name__ if first else 'no answer'}); stored as basic"
        tier = self.tier
        if tier is None:
            failed = ", ".join(sorted(m for m in DETECT_MODES if m in self.errors)) or "none"
            return f"tier probe incomplete (failed: {failed}); stored as basic"
        return f"tier detected: {tier} ({probe_evidence(self.windows)})"

    def apply_to(self, account: Account, *, now: float) -> None:
        """For import with pool auto: set pool, windows and status on an unsaved Account."""
        err = self.account_error
        if err is not None:
            _apply_account_error(account, err, now=now)
            return
        tier = self.tier
        if tier:
            account.pool = tier
        quotas = dict(account.quotas or {})
        for mode, w in self.windows.items():
            if w is not None and mode in POOL_MODES.get(account.pool, ()):
                quotas[mode] = w.to_dict()
        account.quotas = quotas
        account.last_sync_at = timezone.now()
        account.sync_count = (account.sync_count or 0) + 1


def _apply_account_error(account: Account, err: UpstreamError, *, now: float) -> None:
    row = {f: getattr(account, f) for f in SNAPSHOT_FIELDS}
    view = view_from_row(row, "", now=now)
    P.effect_apply(view, outcome_effect(outcome=err, mode=None, pool=account.pool, now=now, strategy="quota"), in_memory=False)
    for key, value in row_values(view, now=now).items():
        setattr(account, key, value)


async def _probe_one(token: str, user_id: str, modes: Iterable[str], sem: asyncio.Semaphore) -> ProbeResult:
    from grokweb.client import GrokClient

    result = ProbeResult()
    client = GrokClient(token=token, user_id=user_id)

    async def one(mode: str) -> None:
        async with sem:
            try:
                raw = await client.rate_limits(mode=mode)
            except UpstreamError as exc:
                result.errors[mode] = exc
                return
            except Exception as exc:  # transport problems the client did not classify
                try:
                    from grokweb.classify import classify_transport

                    result.errors[mode] = classify_transport(exc, endpoint="/rest/rate-limits")
                except Exception:
                    result.errors[mode] = exc
                return
            result.windows[mode] = quota_parse(raw, mode=mode, now=time.time())

    try:
        await asyncio.gather(*(one(m) for m in modes))
    finally:
        closer = getattr(client, "aclose", None)
        if closer is not None:
            try:
                await closer()
            except Exception:
                pass
    # A 404 "Model not found" for one mode means "no such window", not a failed probe.
    for mode, err in list(result.errors.items()):
        if isinstance(err, UpstreamError) and err.kind is UpstreamKind.NOT_FOUND:
            del result.errors[mode]
            result.windows[mode] = None
    result.at = time.time()
    return result


def _run(coro):
    """Run a coroutine from sync code, also when the calling thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["v"] = asyncio.run(coro)
        except BaseException as exc:
            box["e"] = exc

    t = threading.Thread(target=target, name="quota-probe")
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]


def _modes_for_probe(pool: str, detect: bool, only: Iterable[str] | None) -> tuple[str, ...]:
    if only:
        return tuple(m for m in only if m in ALL_MODES)
    modes = set(POOL_MODES.get(pool, ())) | {"auto", "fast"}
    if detect:
        modes |= set(DETECT_MODES)
    return tuple(m for m in ALL_MODES if m in modes)


def quota_probe_tokens(*, tokens: list[str]) -> dict[str, ProbeResult]:
    """Probe tokens not stored yet (import with pool auto). {token: ProbeResult}."""
    concurrency = max(1, int(config().get("account.refresh.usage_concurrency", 50) or 1))

    async def main() -> dict[str, ProbeResult]:
        sem = asyncio.Semaphore(concurrency)
        results = await asyncio.gather(*(_probe_one(t, "", DETECT_MODES, sem) for t in tokens))
        return dict(zip(tokens, results))

    return _run(main())


@dataclass(slots=True)
class SyncResult:
    account_id: int
    last4: str
    ok: bool
    pool: str
    message: str


def quota_refresh(
    *,
    account_ids: Iterable[int] | None = None,
    pool: str | None = None,
    modes: Iterable[str] | None = None,
    trigger: str = "",
) -> list[SyncResult]:
    """Probe and store quotas. Without arguments: every manageable (active/cooling) account.

    Explicit account ids also re-probe expired accounts: an expired account whose probe succeeds
    is active again (the operator re-checked it). `trigger` names the caller in the tier history."""
    qs = Account.objects.filter(deleted_at__isnull=True)
    explicit = account_ids is not None
    if explicit:
        qs = qs.filter(id__in=list(account_ids)).exclude(status=AccountStatus.DISABLED)
    else:
        qs = qs.filter(status__in=[AccountStatus.ACTIVE, AccountStatus.COOLING])
    if pool:
        qs = qs.filter(pool=pool)
    accounts = list(qs.only("id", "token", "token_fingerprint", "token_last4", "pool", "pool_detected", "user_id", "status"))
    if not accounts:
        return []
    only = list(modes) if modes else None
    concurrency = max(1, int(config().get("account.refresh.usage_concurrency", 50) or 1))
    plan = [(a.id, a.token, a.user_id, _modes_for_probe(a.pool, a.pool_detected, only)) for a in accounts]

    async def main() -> list[ProbeResult]:
        sem = asyncio.Semaphore(concurrency)
        return await asyncio.gather(*(_probe_one(token, uid, ms, sem) for _, token, uid, ms in plan))

    probes = _run(main())
    close_old_connections()
    if not trigger:
        # The Celery task names no trigger: beat passes a pool, the after-use probe account ids,
        # the on-demand refresh (after a 429 / when no account qualifies) nothing.
        if pool:
            trigger = f"scheduled refresh of pool {pool}"
        elif explicit:
            trigger = "refresh of selected accounts"
        else:
            trigger = "on-demand refresh of all accounts"
    results = [_store(account_id=a.id, probe=probe, explicit=explicit, trigger=trigger) for a, probe in zip(accounts, probes)]
    with transaction.atomic():
        stamp_bump("accounts")
    return results


def _store(*, account_id: int, probe: ProbeResult, explicit: bool, trigger: str) -> SyncResult:
    now = probe.at or time.time()
    with transaction.atomic():
        row = Account.objects.select_for_update().filter(id=account_id).values(*SNAPSHOT_FIELDS, "pool_detected").first()
        if row is None:
            return SyncResult(account_id, "", False, "", "deleted meanwhile")
        view = view_from_row(row, "", now=now)
        pool = row["pool"]
        err = probe.account_error
        extra: dict[str, Any] = {"last_sync_at": timezone.now()}
        if err is not None:
            P.effect_apply(view, outcome_effect(outcome=err, mode=None, pool=pool, now=now, strategy="quota"), in_memory=False)
            message = f"{err.kind.value}: {text_clip(err.message, 200)}"
            ok = False
        else:
            tier = probe.tier if row["pool_detected"] else None
            if tier and tier != pool:
                # Same transaction as the pool it explains: the history never disagrees with the row.
                TierChange.objects.create(
                    account_id=account_id, old=pool, new=tier, reason=f"{trigger}: {probe_evidence(probe.windows)}"[:300],
                )
                pool = tier
                extra["pool"] = tier
            for mode, w in probe.windows.items():
                if w is not None and mode in POOL_MODES.get(pool, ()):
                    view.quotas[mode] = w
            for mode, exc in probe.errors.items():
                if mode in POOL_MODES.get(pool, ()):
                    current = view.window(mode)
                    if current is not None:
                        view.quotas[mode] = window_mark_stale(current, now=now)
            ok = not probe.errors
            if ok:
                if explicit and view.status == P.EXPIRED:
                    view.status = P.ACTIVE
                    view.state_reason = ""
                extra["sync_count"] = F("sync_count") + 1
                message = "synced " + ", ".join(f"{m} {w.remaining}/{w.total}" for m, w in sorted(view.quotas.items()))
            else:
                names = ", ".join(f"{m}: {getattr(e, 'kind', type(e).__name__)}" for m, e in probe.errors.items())
                message = f"probe failed ({names}); windows marked stale"
        values = row_values(view, now=now)
        values.update(extra)
        values["updated_at"] = timezone.now()
        Account.objects.filter(id=account_id).update(**values)
    if err is not None and err.kind in (UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE):
        effect = outcome_effect(outcome=err, mode=None, pool=pool, now=now, strategy="quota")
        effect.fail = 0
        effect.fail_reason = None
        flusher.enqueue(account_id, effect)  # operator alert through the same batched writer
    return SyncResult(account_id, row.get("token_last4", ""), ok, pool, message)
