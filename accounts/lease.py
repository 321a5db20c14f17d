"""The account pool on the request path: lease an account for a model, report the outcome, release.

No ORM query: `account_lease` selects from the in-memory snapshot (accounts/snapshot.py) and takes
an in-flight slot in the shared backend (accounts/inflight.py: Redis with REDIS_URL, else
in-process). `account_report` applies the reaction matrix of docs/upstream-protocol.md §11.4
(accounts/feedback.py) to this process's snapshot at once, releases the slot (publishing a
per-(account, mode) cooldown on 429 in the same Redis round trip) and queues the same effect for
the batched writer (accounts/writer.py).

Callers do not use these directly for an upstream call: accounts/attempt.py runs the whole
lease → call → report → retry-elsewhere loop.
"""
from __future__ import annotations

import itertools
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone

from accounts import pool as P
from accounts import refresh, snapshot, writer
from core.config import config
from accounts.feedback import outcome_effect
from accounts.inflight import slots
from grokweb.errors import RateLimited, ServiceUnavailable
from grokweb.registry import MODELS, POOL_MODES, ModelSpec
from grokweb.classify import UpstreamError
from core.metrics import metrics_inflight_add, metrics_upstream_observe

SELECT_K = 4  # candidates offered to the shared backend per round trip
MAX_ACQUIRE_ROUNDS = 6


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
    snapshot.cooldown_learn(account_id=account_id, mode=mode, until=until)
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
        snap = snapshot.pool_snapshot()
        lease = await _try_lease(snap, model=model, modes=modes, strategy=strategy, cap=cap, exclude=exclude)
        if lease is not None:
            return lease
        if round_ == 0:
            refresh.refresh_in_background(refresh.refresh_on_demand)  # docs/upstream-protocol.md §12.5: also triggered when no account is available
            if not await snapshot.pool_snapshot_reload_forced():
                break
    snap = snapshot.pool_snapshot()
    with snap.lock:
        why = snap.explain(pools=model.pools, modes=modes, strategy=strategy, now=time.time(), inflight=_local_inflight, max_inflight=cap, exclude=exclude)
    raise RateLimited(_no_account_message(model, why, cap))



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
    snap = snapshot.pool_snapshot()
    effect = outcome_effect(outcome=outcome, mode=lease.mode, pool=lease.pool, now=now, strategy=strategy, egress=lease.egress, cfg=cfg)
    with snap.lock:
        view = snap.accounts.get(account_id) or lease.account
        cooldown_end = P.effect_apply(view, effect, in_memory=True)
        snap.reindex(account_id, now)
        writer.flusher.enqueue(account_id, effect)  # under the lock: a reload catches up on it
    cooldown = (lease.mode, cooldown_end) if cooldown_end is not None else None
    if cooldown is not None:
        snapshot.cooldown_learn(account_id=account_id, mode=lease.mode, until=cooldown_end)
    slots().release_nowait(account_id, lease.lease_id, cooldown)
    if outcome is None:
        if strategy == "quota":
            refresh.refresh_after_use(account_id, lease.mode, now, cfg)
    elif effect.quota_exhaust:
        refresh.refresh_in_background(refresh.refresh_on_demand)


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


def accounts_available_models() -> list[ModelSpec]:
    """Models some usable (active or cooling, not deleted) account can serve, from the snapshot."""
    cfg = config()
    usable = snapshot.pool_snapshot().usable_pools()
    out = []
    for model in MODELS:
        modes = _modes(model, cfg)
        if any(pool in usable and POOL_MODES[pool].intersection(modes) for pool in model.pools):
            out.append(model)
    return out



def _reset_state_for_tests() -> None:
    """Forget process-local pool state (tests only)."""
    _local_inflight.clear()
    snapshot._reset_for_tests()
    writer._reset_for_tests()
    refresh._reset_for_tests()
