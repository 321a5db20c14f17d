"""Account pool services: lease an account for a request, report the outcome, maintain accounts.

Request path (no ORM query): `account_lease` selects from the in-memory `PoolSnapshot`
("accounts" Snapshot, reloaded when the "accounts" VersionStamp moves) and takes an in-flight
slot in the shared backend (accounts/inflight.py: Redis with REDIS_URL, else in-process).
`account_report` applies the reaction matrix of protocol docs/upstream-protocol.md §11.4 to this process's snapshot at
once, releases the slot (and publishes a per-(account, mode) cooldown on 429 in the same Redis
round trip), and queues the same effect for the batched writer, which applies it to the database
rows about once a second (select_for_update, one transaction, one stamp bump) and at exit.

Maintenance (account_import / enable / disable / delete / set_pool) writes the database directly
and bumps the stamp in the same transaction.
"""
from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts import pool as P
from grok2api.config import config
from grokweb.classify import status_codes_parse
from accounts.inflight import slots
from accounts.models import Account, AccountStatus, TierChange
from grok2api.models import OperatorAlert
from accounts.tokenfile import TokenLine, tokens_parse
from grokweb.errors import InvalidRequest, RateLimited, ServiceUnavailable
from grokweb.registry import MODELS, POOL_MODES, ModelSpec
from grokweb.classify import UpstreamError, UpstreamKind
from grok2api.metrics import metrics_inflight_add, metrics_upstream_observe
from grok2api.snapshots import Snapshot, stamp_bump
from grok2api.text import text_clip

log = logging.getLogger(__name__)

SNAPSHOT_FIELDS = (
    "id", "pool", "status", "state_reason", "quotas", "health", "fail_count", "use_count", "last_use_at",
    "last_fail_at", "last_fail_reason", "cooling_until", "ext", "user_id", "token_last4", "token_fingerprint",
)
FORCED_RELOAD_MIN_INTERVAL = 2.0  # seconds between forced snapshot reloads when nothing qualifies
SELECT_K = 4  # candidates offered to the shared backend per round trip
MAX_ACQUIRE_ROUNDS = 6

ALERT_HINTS = {
    "anti_bot": (
        "Upstream rejected the request with its anti-bot rules. This is not the account's fault: open grok.com "
        "in a browser with this account on the same egress, check the session works, and if the web app sends "
        "an x-statsig-id copy it into upstream.static_statsig_id. The gateway does not forge anti-bot signals."
    ),
    "cloudflare": (
        "Cloudflare answered with a challenge: the clearance is missing, expired, or bound to another IP or "
        "User-Agent. Copy a fresh cf_clearance (proxy.clearance.cf_clearance) and the matching User-Agent "
        "(proxy.clearance.user_agent) from a browser on the same egress IP, with proxy.clearance.mode = manual."
    ),
}


# --------------------------------------------------------------------------------------------------
# Conversions between rows and views


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=dt_timezone.utc) if value is not None else None


def view_from_row(row: dict[str, Any], token: str, *, now: float) -> P.AccountView:
    quotas: dict[str, P.QuotaWindow] = {}
    for mode, data in (row.get("quotas") or {}).items():
        if isinstance(data, dict):
            try:
                quotas[mode] = P.QuotaWindow.from_dict(data, mode=mode)
            except (TypeError, ValueError):
                continue  # a hand-edited broken window falls back to the default table
    ext = dict(row.get("ext") or {})
    raw_cd = ext.pop("cooldowns", None) or {}
    cooldowns: dict[str, float] = {}
    if isinstance(raw_cd, dict):
        for mode, until in raw_cd.items():
            try:
                if float(until) > now:
                    cooldowns[mode] = float(until)
            except (TypeError, ValueError):
                continue
    return P.AccountView(
        id=row["id"],
        token=token,
        pool=row["pool"],
        status=row["status"],
        quotas=quotas,
        health=float(row.get("health") or 0.0),
        fail_count=int(row.get("fail_count") or 0),
        use_count=int(row.get("use_count") or 0),
        last_use_at=_epoch(row.get("last_use_at")),
        user_id=row.get("user_id") or "",
        cooling_until=_epoch(row.get("cooling_until")),
        cooldowns=cooldowns,
        state_reason=row.get("state_reason") or "",
        last_fail_at=_epoch(row.get("last_fail_at")),
        last_fail_reason=row.get("last_fail_reason") or "",
        ext=ext,
        last4=row.get("token_last4") or "",
    )


def row_values(view: P.AccountView, *, now: float) -> dict[str, Any]:
    ext = dict(view.ext)
    cds = P.cooldowns_prune(view.cooldowns, now)
    if cds:
        ext["cooldowns"] = cds
    else:
        ext.pop("cooldowns", None)
    return {
        "status": view.status,
        "state_reason": view.state_reason[:200],
        "quotas": {mode: w.to_dict() for mode, w in view.quotas.items()},
        "health": view.health,
        "fail_count": view.fail_count,
        "use_count": view.use_count,
        "last_use_at": _dt(view.last_use_at),
        "last_fail_at": _dt(view.last_fail_at),
        "last_fail_reason": view.last_fail_reason[:64],
        "cooling_until": _dt(view.cooling_until),
        "ext": ext,
    }


# --------------------------------------------------------------------------------------------------
# Batched writer


class _Flusher:
    """Coalesces feedback effects per account and writes them about once a second, off the request path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, list[P.Effect]] = {}
        self._alerts: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.interval = float(os.environ.get("ACCOUNT_FLUSH_INTERVAL", "1.0"))
        self.autostart = os.environ.get("ACCOUNT_FLUSHER", "1") != "0"
        self._write_lock = threading.Lock()

    def enqueue(self, account_id: int, effect: P.Effect) -> None:
        with self._lock:
            if effect.touches_row:
                self._pending.setdefault(account_id, []).append(effect)
            if effect.alert:
                a = effect.alert
                key = (a["kind"], a["endpoint"][:200], a["egress"][:200])
                slot = self._alerts.get(key)
                if slot is None:
                    self._alerts[key] = {**a, "count": 1, "first_at": effect.at, "last_at": effect.at}
                else:
                    slot["count"] += 1
                    slot["last_at"] = effect.at
                    slot["message"] = a["message"]
        self._ensure_thread()

    def pending_for(self, account_id: int) -> list[P.Effect]:
        with self._lock:
            return list(self._pending.get(account_id, ()))

    def pending_snapshot(self) -> dict[int, list[P.Effect]]:
        with self._lock:
            return {k: list(v) for k, v in self._pending.items()}

    def _ensure_thread(self) -> None:
        if not self.autostart or (self._thread is not None and self._thread.is_alive()):
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="account-flusher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("account flush failed; will retry")
            finally:
                # A background thread must not keep a connection open (test DB teardown, pgbouncer).
                try:
                    connection.close()
                except Exception:
                    pass

    def flush(self) -> int:
        """Write everything pending. Returns the number of accounts written. Safe from any thread."""
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                alerts, self._alerts = self._alerts, {}
            if not pending and not alerts:
                return 0
            try:
                written = _write_effects(pending, alerts)
            except Exception:
                with self._lock:  # put them back in front of anything queued meanwhile
                    for account_id, effects in pending.items():
                        self._pending[account_id] = effects + self._pending.get(account_id, [])
                    for key, alert in alerts.items():
                        if key in self._alerts:
                            self._alerts[key]["count"] += alert["count"]
                        else:
                            self._alerts[key] = alert
                raise
            return written


def _write_effects(pending: dict[int, list[P.Effect]], alerts: dict[tuple[str, str, str], dict[str, Any]]) -> int:
    close_old_connections()
    now = time.time()
    written = 0
    with transaction.atomic():
        if pending:
            ids = sorted(pending)
            rows = Account.objects.select_for_update().filter(id__in=ids).order_by("id").values(*SNAPSHOT_FIELDS)
            updated_at = timezone.now()
            batch: list[dict[str, Any]] = []
            for row in rows:
                view = view_from_row(row, "", now=now)
                for effect in pending[row["id"]]:
                    P.effect_apply(view, effect, in_memory=False)
                values = row_values(view, now=now)
                values["updated_at"] = updated_at
                values["id"] = row["id"]
                batch.append(values)
            _rows_update(batch)
            written = len(batch)
            stamp_bump("accounts")
        for (kind, endpoint, egress), alert in alerts.items():
            _alert_upsert(kind=kind, endpoint=endpoint, egress=egress, alert=alert)
    return written


def _rows_update(batch: list[dict[str, Any]]) -> None:
    """One UPDATE statement run for every row (executemany), values converted by the model's fields.

    The ORM's per-row `.update()` built and compiled a query per account: at a few hundred req/s over
    a pool of hundreds of accounts that was most of the writer thread's time, which competes for the
    GIL with the event loop (docs/benchmarks.md).
    """
    if not batch:
        return
    names = [name for name in batch[0] if name != "id"]
    fields = [Account._meta.get_field(name) for name in names]
    qn = connection.ops.quote_name
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        qn(Account._meta.db_table), ", ".join(f"{qn(f.column)} = %s" for f in fields), qn(Account._meta.pk.column),
    )
    params = [[f.get_db_prep_save(values[f.name], connection) for f in fields] + [values["id"]] for values in batch]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _alert_upsert(*, kind: str, endpoint: str, egress: str, alert: dict[str, Any]) -> None:
    last_at = _dt(alert["last_at"])
    fields = {"count": F("count") + alert["count"], "last_at": last_at, "message": alert["message"], "hint": alert.get("hint", "")}
    if OperatorAlert.objects.filter(kind=kind, endpoint=endpoint, egress=egress, resolved=False).update(**fields):
        return
    try:
        with transaction.atomic():
            OperatorAlert.objects.create(
                kind=kind, endpoint=endpoint, egress=egress, message=alert["message"], hint=alert.get("hint", ""),
                count=alert["count"], first_at=_dt(alert["first_at"]), last_at=last_at,
            )
    except IntegrityError:  # another process opened it meanwhile
        OperatorAlert.objects.filter(kind=kind, endpoint=endpoint, egress=egress, resolved=False).update(**fields)


_flusher = _Flusher()


def account_flush() -> int:
    """Write queued feedback now (shutdown, tests, management commands)."""
    return _flusher.flush()


@atexit.register
def _flush_at_exit() -> None:
    try:
        _flusher.flush()
    except Exception:
        log.warning("account flush at exit failed", exc_info=True)


# --------------------------------------------------------------------------------------------------
# Snapshot


_token_cache: dict[int, tuple[str, str]] = {}  # id -> (fingerprint, token): decrypt each token once
_learned_cooldowns: dict[tuple[int, str], float] = {}  # learned from the shared backend, kept across reloads
_state_lock = threading.Lock()


def _tokens_for(ids: list[int]) -> dict[int, str]:
    from django.db.models import TextField
    from django.db.models.functions import Cast

    from grok2api import crypto

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


def _views(rows: list[dict[str, Any]], *, now: float) -> list[P.AccountView]:
    """Rows → views: tokens decrypted once per (id, fingerprint); unwritten feedback re-applied."""
    missing = [r["id"] for r in rows if _token_cache.get(r["id"], ("",))[0] != r["token_fingerprint"]]
    if missing:
        fetched = _tokens_for(missing)
        fps = {r["id"]: r["token_fingerprint"] for r in rows}
        for account_id, token in fetched.items():
            _token_cache[account_id] = (fps[account_id], token)
    pending = _flusher.pending_snapshot()
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
        rows = list(Account.objects.filter(deleted_at__isnull=True).values(*SNAPSHOT_FIELDS))
        present = {r["id"] for r in rows}
        for stale in [k for k in _token_cache if k not in present]:
            _token_cache.pop(stale, None)
        with _state_lock:
            live = {k: v for k, v in _learned_cooldowns.items() if v > now}
            _learned_cooldowns.clear()
            _learned_cooldowns.update(live)
        snap = P.PoolSnapshot(_views(rows, now=now), now=now)
        state.snap, state.full_at, state.mark = snap, now, started
        return snap
    from datetime import timedelta

    since = state.mark - timedelta(seconds=INCREMENTAL_SLACK)
    rows = list(Account.objects.filter(updated_at__gte=since).values(*SNAPSHOT_FIELDS, "deleted_at"))
    alive = Account.objects.filter(deleted_at__isnull=True).count()
    gone = [r["id"] for r in rows if r["deleted_at"] is not None]
    views = _views([r for r in rows if r["deleted_at"] is None], now=now)
    with snap.lock:
        for account_id in gone:
            snap.remove(account_id, now)
        for view in views:
            snap.replace(view, now)
    state.mark = started
    if alive != len(snap.accounts):  # rows vanished or appeared without a fresh updated_at
        state.snap = None
        return _load()
    return snap


_snapshot: Snapshot[P.PoolSnapshot] = Snapshot("accounts", _load)


def pool_snapshot() -> P.PoolSnapshot:
    return _snapshot.get()


def pool_snapshot_reload() -> P.PoolSnapshot:
    return _snapshot.refresh_now()


_last_forced_reload = 0.0


async def _forced_reload() -> bool:
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


# --------------------------------------------------------------------------------------------------
# Lease / report


_local_inflight: dict[int, int] = {}
_lease_seq = itertools.count(1)
_lease_prefix = uuid.uuid4().hex[:10]
_rng = random.Random()


@dataclass(slots=True, eq=False)
class Lease:
    """One in-flight use of an account. `mode` is the upstream mode to send (after any fallback)."""

    account: P.AccountView
    mode: str
    pool: str
    model: ModelSpec
    lease_id: str
    started_at: float
    egress: str = ""  # the caller may set the egress label (proxy label / "direct") for operator alerts
    released: bool = False
    fallback: bool = field(default=False)  # True when `mode` differs from the model's own mode

    def __repr__(self) -> str:
        return f"Lease(account={self.account.id}, pool={self.pool}, mode={self.mode})"


def _strategy(cfg) -> str:
    return "quota" if cfg.get("account.refresh.enabled", True) else "random"


def _modes(model: ModelSpec, cfg) -> tuple[str, ...]:
    return P.modes_for(mode=model.mode, capability=model.capability, fallback=bool(cfg.get("features.auto_chat_mode_fallback", True)))


def _learn_cooldown(snap: P.PoolSnapshot, account_id: int, mode: str, until: float, now: float) -> None:
    view = snap.accounts.get(account_id)
    with _state_lock:
        if _learned_cooldowns.get((account_id, mode), 0.0) < until:
            _learned_cooldowns[(account_id, mode)] = until
    if view is not None and view.cooldowns.get(mode, 0.0) < until:
        with snap.lock:
            view.cooldowns[mode] = until
            snap.reindex(account_id, now)


async def _try_lease(snap: P.PoolSnapshot, *, model: ModelSpec, modes, strategy, cap, exclude) -> Lease | None:
    backend = slots()
    skip = set(exclude)
    for _ in range(MAX_ACQUIRE_ROUNDS):
        now = time.time()
        with snap.lock:
            choice = snap.select(
                pools=model.pools, modes=modes, strategy=strategy, now=now, inflight=_local_inflight,
                max_inflight=cap, exclude=skip, k=SELECT_K, rng=_rng,
            )
        if choice is None:
            return None
        ids = [v.id for v in choice.candidates]
        lease_id = f"{_lease_prefix}:{next(_lease_seq)}"
        try:
            got = await backend.acquire(ids, choice.mode, cap, lease_id)
        except (OSError, ConnectionError) as exc:
            raise ServiceUnavailable(f"The account pool's shared state (Redis) is unreachable: {type(exc).__name__}") from None
        except Exception as exc:
            if type(exc).__module__.startswith("redis"):
                raise ServiceUnavailable(f"The account pool's shared state (Redis) is unreachable: {type(exc).__name__}") from None
            raise
        now = time.time()
        for account_id, until in got.cooldowns.items():
            _learn_cooldown(snap, account_id, choice.mode, until, now)
            skip.add(account_id)
        skip.update(got.busy)
        if got.index is not None:
            view = choice.candidates[got.index]
            _local_inflight[view.id] = _local_inflight.get(view.id, 0) + 1
            metrics_inflight_add(pool=choice.pool, delta=1)
            return Lease(
                account=view, mode=choice.mode, pool=choice.pool, model=model, lease_id=lease_id,
                started_at=now, fallback=choice.mode != model.mode,
            )
    return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _no_account_message(model: ModelSpec, why: P.Exhaustion, cap: int) -> str:
    mode_text = ", ".join(why.modes)
    parts: list[str] = []
    exhausted_pools = list(dict.fromkeys(p for p, _ in why.exhausted))
    if exhausted_pools:
        modes = list(dict.fromkeys(m for _, m in why.exhausted))
        parts.append(f"pools {', '.join(exhausted_pools)} exhausted for mode{'s' if len(modes) > 1 else ''} {', '.join(modes)}")
    if why.busy:
        busy_pools = list(dict.fromkeys(p for p, _ in why.busy))
        parts.append(f"every account of pools {', '.join(busy_pools)} is busy (account.selection.max_inflight = {cap})")
    if why.empty_pools:
        parts.append(f"no active account in pools {', '.join(why.empty_pools)}")
    text = f"No available account for model {model.id}: " + ("; ".join(parts) if parts else f"nothing can serve mode {mode_text}")
    if why.earliest_reset is not None:
        text += f"; earliest reset {_iso(why.earliest_reset)}"
    return text


async def account_lease(*, model: ModelSpec, exclude: frozenset[int] = frozenset()) -> Lease:
    """Choose an account for `model` and take an in-flight slot on it.

    Raises RateLimited (429) naming the exhausted pools/modes and the earliest reset when nothing
    can serve the model. Every lease must be ended by `account_report` (or `account_release`)."""
    cfg = config()
    strategy = _strategy(cfg)
    modes = _modes(model, cfg)
    cap = int(cfg.get("account.selection.max_inflight", 8) or 0)
    for round_ in (0, 1):
        snap = _snapshot.get()
        lease = await _try_lease(snap, model=model, modes=modes, strategy=strategy, cap=cap, exclude=exclude)
        if lease is not None:
            return lease
        if round_ == 0:
            _schedule(_on_demand_refresh)  # docs/upstream-protocol.md §12.5: also triggered when no account is available
            if not await _forced_reload():
                break
    snap = _snapshot.get()
    with snap.lock:
        why = snap.explain(pools=model.pools, modes=modes, strategy=strategy, now=time.time(), inflight=_local_inflight, max_inflight=cap, exclude=exclude)
    raise RateLimited(_no_account_message(model, why, cap))


def _pool_interval(cfg, pool: str) -> int:
    return int(cfg.get(f"account.refresh.{pool}_interval_sec", 7200) or 7200)


def outcome_effect(*, outcome: UpstreamError | None, mode: str | None, pool: str, now: float, strategy: str, egress: str = "", cfg=None) -> P.Effect:
    """The account-record column of docs/upstream-protocol.md §11.4 for one outcome (pure apart from reading config)."""
    cfg = cfg if cfg is not None else config()
    if outcome is None:
        return P.Effect(at=now, mode=mode, use=1, health_add=0.12, quota_decrement=True)
    kind = outcome.kind if isinstance(outcome.kind, UpstreamKind) else UpstreamKind(outcome.kind)
    factor = getattr(outcome, "health_factor", ...)
    action = getattr(outcome, "account_action", None)

    def mul(default: float) -> float:
        return default if factor is ... or factor is None else float(factor)

    if kind in (UpstreamKind.RATE_LIMITED, UpstreamKind.QUOTA_EXHAUSTED):
        cd = getattr(outcome, "cooldown_seconds", None)
        effect = P.Effect(
            at=now, mode=mode, fail=1, fail_reason="rate_limited", health_mul=mul(0.45), quota_exhaust=True,
            cooldown_seconds=float(cd) if cd else None,
        )
        if strategy == "random":
            effect.cooling_until = now + _pool_interval(cfg, pool)
        return effect
    if kind is UpstreamKind.BLOCKED or action == "disable":
        return P.Effect(
            at=now, mode=mode, fail=1, fail_reason="blocked", status=P.EXPIRED, state_reason="blocked",
            ext={"expired_at": now, "expired_reason": text_clip(outcome.detail or outcome.message, 300)},
        )
    if kind is UpstreamKind.AUTH_INVALID or action == "expire":
        return P.Effect(
            at=now, mode=mode, fail=1, fail_reason="invalid_credentials", status=P.EXPIRED, state_reason="invalid_credentials",
            ext={"expired_at": now, "expired_reason": text_clip(outcome.detail or outcome.message, 300)},
        )
    if kind is UpstreamKind.AUTH_SUSPECT:
        return P.Effect(at=now, mode=mode, fail=1, fail_reason="auth_suspect", health_mul=mul(0.55), memory_status=P.EXPIRED)
    if kind in (UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE):
        name = kind.value
        return P.Effect(
            at=now, mode=mode, fail=1, fail_reason=name,
            alert={
                "kind": name, "endpoint": outcome.endpoint or "", "egress": egress or getattr(outcome, "egress", "") or "direct",
                "message": outcome.message, "hint": ALERT_HINTS[name],
            },
        )
    if kind in (UpstreamKind.MODERATED, UpstreamKind.BAD_REQUEST, UpstreamKind.NOT_FOUND):
        return P.Effect(at=now, mode=mode)
    if kind is UpstreamKind.FORBIDDEN_OTHER:
        return P.Effect(at=now, mode=mode, fail=1, fail_reason="forbidden", health_mul=mul(0.25))
    if kind in (UpstreamKind.UPSTREAM_5XX, UpstreamKind.TRANSPORT, UpstreamKind.TIMEOUT, UpstreamKind.UPSTREAM_OTHER):
        return P.Effect(at=now, mode=mode, fail=1, fail_reason=kind.value, health_mul=mul(0.75))
    return P.Effect(at=now, mode=mode, fail=1, fail_reason=kind.value)  # TRUNCATED / PROTOCOL


def account_report(*, lease: Lease, outcome: UpstreamError | None, answer_started: bool = False) -> None:
    """Apply the outcome of one leased upstream call (docs/upstream-protocol.md §11.4) and release the slot. Idempotent.

    In-memory effect is immediate (this process's snapshot, the shared cooldown); the database
    write is queued for the batched writer. `answer_started` does not change the account record
    column (errors after the first byte still count); it is accepted for the caller's symmetry."""
    if lease.released:
        return
    lease.released = True
    now = time.time()
    cfg = config()
    strategy = _strategy(cfg)
    account_id = lease.account.id
    _release_local(account_id)
    metrics_inflight_add(pool=lease.pool, delta=-1)
    metrics_upstream_observe(pool=lease.pool, mode=lease.mode, outcome="ok" if outcome is None else outcome.kind.value)
    snap = _snapshot.get()
    effect = outcome_effect(outcome=outcome, mode=lease.mode, pool=lease.pool, now=now, strategy=strategy, egress=lease.egress, cfg=cfg)
    with snap.lock:
        view = snap.accounts.get(account_id) or lease.account
        cooldown_end = P.effect_apply(view, effect, in_memory=True)
        snap.reindex(account_id, now)
    cooldown = (lease.mode, cooldown_end) if cooldown_end is not None else None
    if cooldown is not None:
        with _state_lock:
            _learned_cooldowns[(account_id, lease.mode)] = max(cooldown_end, _learned_cooldowns.get((account_id, lease.mode), 0.0))
    slots().release_nowait(account_id, lease.lease_id, cooldown)
    _flusher.enqueue(account_id, effect)
    if outcome is None:
        if strategy == "quota":
            _after_use_refresh(account_id, lease.mode, now, cfg)
    elif effect.quota_exhaust:
        _schedule(_on_demand_refresh)


def account_release(*, lease: Lease) -> None:
    """End a lease without an outcome (the client went away before anything was decided)."""
    if lease.released:
        return
    lease.released = True
    _release_local(lease.account.id)
    metrics_inflight_add(pool=lease.pool, delta=-1)
    slots().release_nowait(lease.account.id, lease.lease_id, None)


def _release_local(account_id: int) -> None:
    n = _local_inflight.get(account_id, 0) - 1
    if n > 0:
        _local_inflight[account_id] = n
    else:
        _local_inflight.pop(account_id, None)


_RETRY_KINDS_ALWAYS = frozenset({
    UpstreamKind.AUTH_INVALID, UpstreamKind.BLOCKED, UpstreamKind.TRANSPORT, UpstreamKind.TIMEOUT,
    UpstreamKind.TRUNCATED, UpstreamKind.PROTOCOL, UpstreamKind.RATE_LIMITED, UpstreamKind.QUOTA_EXHAUSTED,
    UpstreamKind.AUTH_SUSPECT,
})


def _on_codes(cfg) -> frozenset[int]:
    return status_codes_parse(cfg.get("retry.on_codes", "429,401,503"))


def account_retry_allowed(
    *,
    error: BaseException | None = None,
    attempt: int | None = None,
    answer_started: bool = False,
    outcome: BaseException | None = None,
    attempts: int | None = None,
) -> bool:
    """May the caller retry on another account after `attempt` attempts ended with `error`?

    Never after the first byte reached the client. Attempts are capped at retry.max_retries + 1.
    HTTP statuses 429/401/5xx retry only when listed in retry.on_codes; invalid-credential and
    blocked bodies, transport errors, timeouts, truncation and in-band rate limits always may;
    anti-bot, Cloudflare, moderation, bad requests and other 403s never do.
    (`outcome`/`attempts` are accepted as aliases of `error`/`attempt`.)"""
    error = error if error is not None else outcome
    attempt = attempt if attempt is not None else (attempts or 0)
    if answer_started or not isinstance(error, UpstreamError):
        return False
    cfg = config()
    if attempt >= int(cfg.get("retry.max_retries", 1)) + 1:
        return False
    kind = error.kind
    status = error.upstream_status
    codes = _on_codes(cfg)
    if kind is UpstreamKind.UPSTREAM_5XX:
        return status is not None and status in codes
    if kind in (UpstreamKind.AUTH_INVALID, UpstreamKind.BLOCKED):
        return True  # invalid-credential bodies always swap accounts
    if status in (429, 401):
        return status in codes
    if kind in _RETRY_KINDS_ALWAYS:
        return True
    if kind in (UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE, UpstreamKind.MODERATED, UpstreamKind.BAD_REQUEST, UpstreamKind.FORBIDDEN_OTHER):
        return False
    return bool(getattr(error, "retry_elsewhere", False))


def accounts_available_models() -> list[ModelSpec]:
    """Models some usable (active or cooling, not deleted) account can serve, from the snapshot."""
    cfg = config()
    usable = _snapshot.get().usable_pools()
    out = []
    for model in MODELS:
        modes = _modes(model, cfg)
        if any(pool in usable and POOL_MODES[pool].intersection(modes) for pool in model.pools):
            out.append(model)
    return out


# --------------------------------------------------------------------------------------------------
# Background quota refresh triggers (never block the event loop)


_pending_tasks: set[asyncio.Future] = set()
_after_use_last: dict[int, float] = {}


def _schedule(fn, *args) -> None:
    """Run a (sync, possibly I/O-bound) trigger off the event loop; inline from sync code."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        try:
            fn(*args)
        except Exception:
            log.warning("pool: background trigger %s failed", getattr(fn, "__name__", fn), exc_info=True)
        return

    def run() -> None:
        try:
            fn(*args)
        except Exception:
            log.warning("pool: background trigger %s failed", getattr(fn, "__name__", fn), exc_info=True)

    fut = loop.run_in_executor(None, run)
    _pending_tasks.add(fut)
    fut.add_done_callback(_pending_tasks.discard)


def _after_use_refresh(account_id: int, mode: str, now: float, cfg) -> None:
    """Single-mode probe of the mode just used (a partial probe: it updates that window, never the tier)."""
    interval = float(cfg.get("account.refresh.after_use_min_interval_sec", 60))
    last = _after_use_last.get(account_id, 0.0)
    if now - last < interval:
        return
    _after_use_last[account_id] = now
    if len(_after_use_last) > 50000:
        _after_use_last.clear()
    _schedule(_enqueue_refresh, [account_id], [mode])


def _enqueue_refresh(account_ids: list[int] | None, modes: list[str] | None) -> None:
    from accounts.tasks import quota_refresh

    quota_refresh.delay(account_ids=account_ids, modes=modes)


def _on_demand_refresh() -> None:
    """A full refresh, at most once per account.refresh.on_demand_min_interval_sec across processes."""
    from django.core.cache import cache

    interval = int(config().get("account.refresh.on_demand_min_interval_sec", 300) or 300)
    if cache.add("g2a:pool:on_demand_refresh", 1, timeout=interval):
        _enqueue_refresh(None, None)


# --------------------------------------------------------------------------------------------------
# Maintenance


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
    from grok2api import crypto

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
        from accounts.quota import quota_probe_tokens

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
            transaction.on_commit(lambda: _schedule(_enqueue_refresh, ids, None))
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
        with _state_lock:
            _learned_cooldowns.pop((account.id, mode), None)
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


def _reset_state_for_tests() -> None:
    """Forget process-local pool state (tests only)."""
    _local_inflight.clear()
    _learned_cooldowns.clear()
    _after_use_last.clear()
    with _flusher._lock:
        _flusher._pending.clear()
        _flusher._alerts.clear()
    _snapshot.invalidate()
    _load_state.snap = None
    global _last_forced_reload
    _last_forced_reload = 0.0
