"""The account pool's in-memory snapshot: every usable account as a view, reloaded when the
"accounts" VersionStamp moves (core/snapshots.py).

Small pools reload in full; large ones patch in the rows changed since the last load (see
`_load`). Tokens are decrypted once per (id, fingerprint). Feedback the writer has not written yet
(accounts/writer.py) and cooldowns learned from the shared in-flight backend are re-applied on
every reload, so a reload never forgets what this process already knows.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from accounts import pool as P
from accounts.models import Account
from accounts.writer import SNAPSHOT_FIELDS, flusher, view_from_row
from core import crypto
from core.snapshots import Snapshot

log = logging.getLogger(__name__)

FORCED_RELOAD_MIN_INTERVAL = 2.0  # seconds between forced snapshot reloads when nothing qualifies



_token_cache: dict[int, tuple[str, str]] = {}  # id -> (fingerprint, token): decrypt each token once
_learned_cooldowns: dict[tuple[int, str], float] = {}  # learned from the shared backend, kept across reloads
_state_lock = threading.Lock()


def _tokens_for(ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        # Cast bypasses the field's decrypting converter so one unreadable token cannot fail the load.
        for account_id, raw in Account.objects.filter(id__in=chunk).annotate(raw=Cast("token", TextField())).values_list("id", "raw"):
            try:
                out[account_id] = crypto.decrypt(raw) if raw else ""
            except ValueError:
                log.error("account %s: stored token cannot be decrypted (encryption key changed?)", account_id)
                out[account_id] = ""
    return out


FULL_RELOAD_MAX_ACCOUNTS = 2000  # up to this many accounts every reload is a full one (< ~0.1 s)
FULL_RELOAD_EVERY = 60.0  # seconds; larger pools reload changed rows only in between
INCREMENTAL_SLACK = 5.0  # seconds of updated_at overlap (commit order, clock skew between hosts)


@dataclass(slots=True)
class _LoadState:
    snap: P.PoolSnapshot | None = None
    full_at: float = 0.0
    mark: datetime | None = None  # reload rows changed since (mark - slack)


_load_state = _LoadState()


def _rows_and_pending(query) -> tuple[list[dict[str, Any]], dict[int, list[P.Effect]], int]:
    """The rows and this process's unwritten feedback, read with no flush half-way between them."""
    with flusher.settled():
        rows = list(query)
        pending, seq = flusher.pending_snapshot()
    return rows, pending, seq


def _catch_up(snap: P.PoolSnapshot, ids: set[int], seq: int, now: float) -> None:
    """Apply to the fresh views in `ids` the feedback reported (on the old ones) while they were built.

    The caller holds `snap.lock`, under which `account_report` applies an effect and queues it, so
    every effect is either queued already (and applied here) or lands on the fresh view afterwards.
    """
    late = flusher.queued_since(seq)
    if late is None:
        log.warning("account pool: more feedback arrived during a reload than it can catch up on; the next reload has it")
        return
    for account_id, effect in late:
        view = snap.accounts.get(account_id)
        if view is not None and account_id in ids:
            P.effect_apply(view, effect, in_memory=True)
            snap.reindex(account_id, now)


def _views(rows: list[dict[str, Any]], pending: dict[int, list[P.Effect]], *, now: float) -> list[P.AccountView]:
    """Rows → views: tokens decrypted once per (id, fingerprint); unwritten feedback re-applied."""
    missing = [r["id"] for r in rows if _token_cache.get(r["id"], ("",))[0] != r["token_fingerprint"]]
    if missing:
        fetched = _tokens_for(missing)
        fps = {r["id"]: r["token_fingerprint"] for r in rows}
        for account_id, token in fetched.items():
            _token_cache[account_id] = (fps[account_id], token)
    with _state_lock:
        learned = {k: v for k, v in _learned_cooldowns.items() if v > now}
    views: list[P.AccountView] = []
    for row in rows:
        token = _token_cache.get(row["id"], ("", ""))[1]
        view = view_from_row(row, token, now=now)
        if not token and view.status in P.USABLE_STATUSES:
            view.status = P.EXPIRED  # in memory only: an undecryptable token cannot be used
            view.state_reason = "token unreadable"
        for effect in pending.get(view.id, ()):  # not yet written: keep their effect visible
            P.effect_apply(view, effect, in_memory=True)
        for mode in P.ALL_MODES:
            until = learned.get((view.id, mode))
            if until is not None and view.cooldowns.get(mode, 0.0) < until:
                view.cooldowns[mode] = until
        views.append(view)
    return views


def _load() -> P.PoolSnapshot:
    """Full reload for small pools and every FULL_RELOAD_EVERY s; otherwise only rows changed since
    the last load are patched into the live snapshot (rows written with a fresh updated_at)."""
    now = time.time()
    started = timezone.now()
    state = _load_state
    snap = state.snap
    if snap is None or len(snap.accounts) <= FULL_RELOAD_MAX_ACCOUNTS or now - state.full_at > FULL_RELOAD_EVERY or state.mark is None:
        rows, pending, seq = _rows_and_pending(Account.objects.filter(deleted_at__isnull=True).values(*SNAPSHOT_FIELDS))
        present = {r["id"] for r in rows}
        for stale in [k for k in _token_cache if k not in present]:
            _token_cache.pop(stale, None)
        with _state_lock:
            live = {k: v for k, v in _learned_cooldowns.items() if v > now}
            _learned_cooldowns.clear()
            _learned_cooldowns.update(live)
        fresh = P.PoolSnapshot(_views(rows, pending, now=now), now=now)
        snap = state.snap or fresh
        with snap.lock:
            if snap is not fresh:
                snap.take_over(fresh)
            _catch_up(snap, set(snap.accounts), seq, now)
        state.snap, state.full_at, state.mark = snap, now, started
        return snap
    since = state.mark - timedelta(seconds=INCREMENTAL_SLACK)
    rows, pending, seq = _rows_and_pending(Account.objects.filter(updated_at__gte=since).values(*SNAPSHOT_FIELDS, "deleted_at"))
    alive = Account.objects.filter(deleted_at__isnull=True).count()
    gone = [r["id"] for r in rows if r["deleted_at"] is not None]
    views = _views([r for r in rows if r["deleted_at"] is None], pending, now=now)
    with snap.lock:
        for account_id in gone:
            snap.remove(account_id, now)
        for view in views:
            snap.replace(view, now)
        _catch_up(snap, {view.id for view in views}, seq, now)
    state.mark = started
    if alive != len(snap.accounts):  # rows vanished or appeared without a fresh updated_at
        state.full_at = 0.0
        return _load()
    return snap


_snapshot: Snapshot[P.PoolSnapshot] = Snapshot("accounts", _load)


def pool_snapshot() -> P.PoolSnapshot:
    return _snapshot.get()


def pool_snapshot_reload() -> P.PoolSnapshot:
    return _snapshot.refresh_now()


_last_forced_reload = 0.0


async def pool_snapshot_reload_forced() -> bool:
    """Reload the snapshot now unless that happened in the last FORCED_RELOAD_MIN_INTERVAL seconds."""
    global _last_forced_reload
    now = time.monotonic()
    if now - _last_forced_reload < FORCED_RELOAD_MIN_INTERVAL:
        return False
    _last_forced_reload = now

    def reload() -> None:
        try:
            _snapshot.refresh_now()
        finally:
            connection.close()

    await asyncio.to_thread(reload)
    return True


def cooldown_learn(*, account_id: int, mode: str, until: float) -> None:
    """Remember a per-(account, mode) cooldown across reloads (learned from the shared backend or
    set by this process's own feedback) until it ends."""
    with _state_lock:
        if _learned_cooldowns.get((account_id, mode), 0.0) < until:
            _learned_cooldowns[(account_id, mode)] = until


def cooldown_forget(*, account_id: int, mode: str) -> None:
    """The operator enabled the account again: its learned cooldowns no longer hold."""
    with _state_lock:
        _learned_cooldowns.pop((account_id, mode), None)


def _reset_for_tests() -> None:
    global _last_forced_reload
    _learned_cooldowns.clear()
    _snapshot.invalidate()
    _load_state.snap = None
    _last_forced_reload = 0.0
