"""Account selection over an in-memory snapshot (protocol docs/upstream-protocol.md §9.3, §11.4, §12.4). Pure Python.

No Django, no I/O: `accounts/snapshot.py` loads the snapshot from the database, `accounts/lease.py`
keeps the shared in-flight counters and cooldowns, and `accounts/writer.py` persists the effects
this module computes.

Time is epoch seconds (float) everywhere. A quota window is the JSON stored in `Account.quotas`:
    {mode: {"remaining": int, "total": int, "window_seconds": int, "reset_at": float | None,
            "synced_at": float | None, "source": 0 default | 1 real | 2 estimated, "stale": bool}}
Per-(account, mode) cooldowns live in `Account.ext["cooldowns"] = {mode: until}`.

Speed: the quota strategy keeps, per (pool, mode), a list of eligible accounts sorted by their
static score (100·health + 25·remaining − 4·min(fails, 10)) and a heap of accounts waiting for a
reset or a cooldown to end. The dynamic penalties (−20·inflight, −up to 15 for recent use) only
lower a score, so a walk down the sorted list can stop as soon as the next static score cannot
beat the best dynamic score found: a selection touches a handful of entries, not the whole pool.
"""
from __future__ import annotations

import bisect
import heapq
import random as _random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from grokweb.registry import AUTO_FALLBACK, POOL_MODES

ACTIVE, COOLING, EXPIRED, DISABLED = "active", "cooling", "expired", "disabled"
USABLE_STATUSES = frozenset({ACTIVE, COOLING})
SOURCE_DEFAULT, SOURCE_REAL, SOURCE_ESTIMATED = 0, 1, 2
HEALTH_FLOOR = 0.05
RECENT_USE_SECONDS = 15.0
RECENT_USE_PENALTY = 15.0
POOLS = ("basic", "super", "heavy")
ALL_MODES = ("auto", "fast", "expert", "heavy", "grok-420-computer-use-sa")
TIER_RANK = {"basic": 0, "super": 1, "heavy": 2}
WALK_EXTRA = 24  # entries examined past the first k candidates when scores are close

# Spec §9.3: the default quota tables, used until real data is known.
DEFAULT_TOTALS: dict[str, dict[str, int]] = {
    "basic": {"fast": 30},
    "super": {"auto": 50, "fast": 140, "expert": 50, "grok-420-computer-use-sa": 50},
    "heavy": {"auto": 150, "fast": 400, "expert": 150, "heavy": 20, "grok-420-computer-use-sa": 150},
}
DEFAULT_POOL_WINDOW = {"basic": 86400, "super": 7200, "heavy": 7200}


def mode_window_fallback(mode: str) -> int:
    """Spec §9.1: window when rate-limits omits windowSizeSeconds."""
    return 86400 if mode == "fast" else 7200


@dataclass(slots=True)
class QuotaWindow:
    remaining: int
    total: int
    window_seconds: int
    reset_at: float | None = None
    synced_at: float | None = None
    source: int = SOURCE_DEFAULT
    stale: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, mode: str) -> "QuotaWindow":
        remaining = int(data.get("remaining") or 0)
        total = int(data.get("total") or remaining)
        window = int(data.get("window_seconds") or mode_window_fallback(mode))
        reset_at = data.get("reset_at")
        synced_at = data.get("synced_at")
        return cls(
            remaining=max(0, remaining),
            total=max(0, total),
            window_seconds=window,
            reset_at=float(reset_at) if reset_at is not None else None,
            synced_at=float(synced_at) if synced_at is not None else None,
            source=int(data.get("source") or 0),
            stale=bool(data.get("stale", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "remaining": self.remaining,
            "total": self.total,
            "window_seconds": self.window_seconds,
            "reset_at": self.reset_at,
            "synced_at": self.synced_at,
            "source": self.source,
            "stale": self.stale,
        }

    def copy(self) -> "QuotaWindow":
        return QuotaWindow(self.remaining, self.total, self.window_seconds, self.reset_at, self.synced_at, self.source, self.stale)


def default_window(pool: str, mode: str) -> QuotaWindow | None:
    total = DEFAULT_TOTALS.get(pool, {}).get(mode)
    if total is None:
        return None
    return QuotaWindow(remaining=total, total=total, window_seconds=DEFAULT_POOL_WINDOW.get(pool, mode_window_fallback(mode)))


def window_reset_if_due(window: QuotaWindow, now: float) -> bool:
    """An exhausted window whose reset time passed (or never had one) is full again. Never stuck."""
    if window.remaining > 0:
        return False
    if window.reset_at is not None and window.reset_at > now:
        return False
    window.remaining = window.total if window.total > 0 else 1
    window.reset_at = None
    window.source = SOURCE_ESTIMATED if window.source != SOURCE_DEFAULT else SOURCE_DEFAULT
    return True


@dataclass(slots=True, eq=False)
class AccountView:
    id: int
    token: str
    pool: str
    status: str = ACTIVE
    quotas: dict[str, QuotaWindow] = field(default_factory=dict)
    health: float = 1.0
    fail_count: int = 0
    use_count: int = 0
    last_use_at: float | None = None
    user_id: str = ""
    cooling_until: float | None = None
    cooldowns: dict[str, float] = field(default_factory=dict)  # mode -> until
    state_reason: str = ""
    last_fail_at: float | None = None
    last_fail_reason: str = ""
    ext: dict[str, Any] = field(default_factory=dict)
    last4: str = ""

    @property
    def usable(self) -> bool:
        return self.status in USABLE_STATUSES

    def window(self, mode: str) -> QuotaWindow | None:
        w = self.quotas.get(mode)
        if w is None and mode in POOL_MODES.get(self.pool, ()):
            w = default_window(self.pool, mode)
            if w is not None:
                self.quotas[mode] = w
        return w

    def __repr__(self) -> str:  # never the token
        return f"AccountView(id={self.id}, pool={self.pool}, status={self.status}, health={self.health:.2f})"


def static_score(view: AccountView, mode: str) -> float:
    w = view.quotas.get(mode)
    remaining = w.remaining if w is not None else 0
    return 100.0 * view.health + 25.0 * remaining - 4.0 * min(view.fail_count, 10)


def recent_use_penalty(last_use_at: float | None, now: float) -> float:
    if last_use_at is None:
        return 0.0
    age = now - last_use_at
    if age < 0:
        return RECENT_USE_PENALTY
    if age >= RECENT_USE_SECONDS:
        return 0.0
    return RECENT_USE_PENALTY * (1.0 - age / RECENT_USE_SECONDS)


def blocked_until(view: AccountView, mode: str, now: float, *, quota: bool) -> float | None:
    """When (view, mode) becomes selectable again, or None if it is selectable now.

    `quota`: whether the quota window counts (quota strategy) or is ignored (random strategy).
    Exhausted windows whose reset passed are reset inline here.
    """
    until = 0.0
    cd = view.cooldowns.get(mode)
    if cd is not None and cd > now:
        until = cd
    if view.cooling_until is not None and view.cooling_until > now:
        until = max(until, view.cooling_until)
    if quota:
        w = view.window(mode)
        if w is not None and w.remaining <= 0 and not window_reset_if_due(w, now):
            until = max(until, w.reset_at or now)
    return until if until > now else None


def modes_for(*, mode: str, capability: str, fallback: bool) -> tuple[str, ...]:
    """The upstream modes to try, in order: auto chat models fall back auto → fast → expert."""
    if fallback and mode == "auto" and capability == "chat":
        return AUTO_FALLBACK
    return (mode,)


@dataclass(slots=True)
class Choice:
    mode: str
    pool: str
    candidates: list[AccountView]


@dataclass(slots=True)
class Exhaustion:
    """Why nothing could be selected, for the 429 message."""

    exhausted: list[tuple[str, str]]  # (pool, mode) with accounts, all exhausted/cooling
    empty_pools: list[str]  # pools without any usable account
    busy: list[tuple[str, str]]  # (pool, mode) where eligible accounts were all at max_inflight/excluded
    earliest_reset: float | None
    modes: tuple[str, ...]


class PoolSnapshot:
    """All accounts plus per-(pool, mode) candidate structures, built once per reload.

    Mutated in place by the owning process (feedback patches, inline resets, learned cooldowns):
    callers call `reindex(account_id, now)` after changing a view.
    """

    def __init__(self, views: Iterable[AccountView], *, now: float) -> None:
        # Held by the request path around select/feedback and by the loader thread while it patches
        # changed rows in (uncontended, it costs ~0.1 µs).
        self.lock = threading.RLock()
        self.accounts: dict[int, AccountView] = {}
        self._ready: dict[tuple[str, str], list[tuple[float, int]]] = {}
        self._ready_key: dict[tuple[int, str], tuple[tuple[str, str], tuple[float, int]]] = {}
        self._waiting: dict[tuple[str, str], list[tuple[float, int]]] = {}
        self._members: dict[str, list[int]] = {p: [] for p in POOLS}  # usable ids per pool (random strategy)
        self._member_pos: dict[int, int] = {}
        self._member_pool: dict[int, str] = {}
        ready_build: dict[tuple[str, str], list[tuple[float, int]]] = {}
        for view in views:
            self.accounts[view.id] = view
            if not view.usable or view.pool not in POOL_MODES:
                continue
            self._member_add(view)
            for mode in POOL_MODES[view.pool]:
                key = (view.pool, mode)
                until = blocked_until(view, mode, now, quota=True)
                if until is None:
                    entry = (-static_score(view, mode), view.id)
                    ready_build.setdefault(key, []).append(entry)
                    self._ready_key[(view.id, mode)] = (key, entry)
                else:
                    self._waiting.setdefault(key, []).append((until, view.id))
        for key, entries in ready_build.items():
            entries.sort()
            self._ready[key] = entries
        for heap in self._waiting.values():
            heapq.heapify(heap)

    # -- membership -------------------------------------------------------------------------------

    def _member_add(self, view: AccountView) -> None:
        if view.id in self._member_pos:
            return
        ids = self._members.setdefault(view.pool, [])
        self._member_pos[view.id] = len(ids)
        self._member_pool[view.id] = view.pool
        ids.append(view.id)

    def _member_remove(self, account_id: int) -> None:
        pos = self._member_pos.pop(account_id, None)
        if pos is None:
            return
        ids = self._members[self._member_pool.pop(account_id)]
        last = ids.pop()
        if last != account_id:
            ids[pos] = last
            self._member_pos[last] = pos

    def _ready_remove(self, account_id: int, mode: str) -> None:
        found = self._ready_key.pop((account_id, mode), None)
        if found is None:
            return
        key, entry = found
        entries = self._ready.get(key)
        if entries:
            i = bisect.bisect_left(entries, entry)
            if i < len(entries) and entries[i] == entry:
                del entries[i]

    def _place(self, view: AccountView, mode: str, now: float) -> None:
        key = (view.pool, mode)
        self._ready_remove(view.id, mode)
        until = blocked_until(view, mode, now, quota=True)
        if until is None:
            entry = (-static_score(view, mode), view.id)
            bisect.insort(self._ready.setdefault(key, []), entry)
            self._ready_key[(view.id, mode)] = (key, entry)
        else:
            heapq.heappush(self._waiting.setdefault(key, []), (until, view.id))

    def reindex(self, account_id: int, now: float) -> None:
        """Re-file an account after its view changed (health, quota, status, cooldown, pool)."""
        view = self.accounts.get(account_id)
        for mode in ALL_MODES:
            self._ready_remove(account_id, mode)
        self._member_remove(account_id)
        if view is None or not view.usable or view.pool not in POOL_MODES:
            return
        self._member_add(view)
        for mode in POOL_MODES[view.pool]:
            self._place(view, mode, now)

    def take_over(self, fresh: "PoolSnapshot") -> None:
        """Adopt a freshly built snapshot's contents in place; the caller holds `self.lock`.

        The request path keeps reporting feedback on the live object while a reload builds the
        fresh one; adopting in place (then catching up, accounts/snapshot.py) means no report lands
        on an object nobody reads any more.
        """
        lock = self.lock
        self.__dict__.update(fresh.__dict__)
        self.lock = lock

    def replace(self, view: AccountView, now: float) -> None:
        """Put a freshly loaded view in place of the current one (incremental reload)."""
        self.accounts[view.id] = view
        self.reindex(view.id, now)

    def remove(self, account_id: int, now: float) -> None:
        self.accounts.pop(account_id, None)
        self.reindex(account_id, now)

    def _promote(self, pool: str, mode: str, now: float) -> None:
        """Move accounts whose reset/cooldown time passed from the waiting heap back to ready."""
        heap = self._waiting.get((pool, mode))
        while heap and heap[0][0] <= now:
            _, account_id = heapq.heappop(heap)
            view = self.accounts.get(account_id)
            if view is None or not view.usable or view.pool != pool or (account_id, mode) in self._ready_key:
                continue
            self._place(view, mode, now)

    def earliest_wait(self, pool: str, mode: str, now: float) -> float | None:
        heap = self._waiting.get((pool, mode))
        if not heap:
            return None
        best = None
        for until, account_id in heap[:64] if len(heap) > 64 else heap:
            view = self.accounts.get(account_id)
            if view is None or not view.usable or view.pool != pool or (account_id, mode) in self._ready_key:
                continue
            if until > now and (best is None or until < best):
                best = until
        if best is None and heap and heap[0][0] > now:
            best = heap[0][0]
        return best

    def pool_size(self, pool: str) -> int:
        return len(self._members.get(pool, ()))

    def usable_pools(self) -> frozenset[str]:
        return frozenset(p for p, ids in self._members.items() if ids)

    # -- selection --------------------------------------------------------------------------------

    def select_quota(
        self,
        *,
        pool: str,
        mode: str,
        now: float,
        inflight: Mapping[int, int],
        max_inflight: int,
        exclude: frozenset[int] | set[int] = frozenset(),
        k: int = 1,
    ) -> list[AccountView]:
        """Up to k best accounts by score (docs/upstream-protocol.md §12.4 quota strategy), best first."""
        self._promote(pool, mode, now)
        entries = self._ready.get((pool, mode))
        if not entries:
            return []
        best: list[tuple[float, int]] = []  # (dynamic score, id), descending
        accounts = self.accounts
        budget = WALK_EXTRA
        for neg_static, account_id in entries:
            static = -neg_static
            if len(best) >= k:
                # exact stop: nothing further down can beat the k-th best (penalties only subtract);
                # bounded: among near-equal scores, WALK_EXTRA more entries are enough
                if static <= best[-1][0]:
                    break
                budget -= 1
                if budget < 0:
                    break
            if account_id in exclude:
                continue
            n = inflight.get(account_id, 0)
            if max_inflight and n >= max_inflight:
                continue
            view = accounts[account_id]
            if view.cooling_until is not None and view.cooling_until > now:
                continue
            cd = view.cooldowns.get(mode)
            if cd is not None and cd > now:
                continue
            dyn = static - 20.0 * n - recent_use_penalty(view.last_use_at, now)
            if len(best) < k:
                best.append((dyn, account_id))
                best.sort(key=lambda item: -item[0])
            elif dyn > best[-1][0]:
                best[-1] = (dyn, account_id)
                best.sort(key=lambda item: -item[0])
        return [accounts[account_id] for _, account_id in best]

    def select_random(
        self,
        *,
        pool: str,
        mode: str,
        now: float,
        inflight: Mapping[int, int],
        max_inflight: int,
        exclude: frozenset[int] | set[int] = frozenset(),
        k: int = 1,
        rng: _random.Random | None = None,
    ) -> list[AccountView]:
        """Up to k accounts drawn uniformly among those not cooling and under the in-flight cap."""
        ids = self._members.get(pool)
        if not ids:
            return []
        rng = rng or _random
        accounts = self.accounts

        def ok(account_id: int) -> bool:
            if account_id in exclude:
                return False
            if max_inflight and inflight.get(account_id, 0) >= max_inflight:
                return False
            view = accounts[account_id]
            if view.cooling_until is not None and view.cooling_until > now:
                return False
            cd = view.cooldowns.get(mode)
            return cd is None or cd <= now

        picked: list[int] = []
        for _ in range(min(64, 4 * len(ids))):  # rejection sampling keeps the draw uniform
            account_id = ids[rng.randrange(len(ids))]
            if account_id not in picked and ok(account_id):
                picked.append(account_id)
                if len(picked) >= k:
                    break
        if len(picked) < k:
            rest = [a for a in ids if a not in picked and ok(a)]
            rng.shuffle(rest)
            picked.extend(rest[: k - len(picked)])
        return [accounts[a] for a in picked]

    def select(
        self,
        *,
        pools: tuple[str, ...],
        modes: tuple[str, ...],
        strategy: str,
        now: float,
        inflight: Mapping[int, int],
        max_inflight: int,
        exclude: frozenset[int] | set[int] = frozenset(),
        k: int = 1,
        rng: _random.Random | None = None,
    ) -> Choice | None:
        """Mode-major, pool order strict: the first (mode, pool) with a candidate wins."""
        for mode in modes:
            for pool in pools:
                if mode not in POOL_MODES.get(pool, ()):
                    continue
                if strategy == "random":
                    found = self.select_random(pool=pool, mode=mode, now=now, inflight=inflight, max_inflight=max_inflight, exclude=exclude, k=k, rng=rng)
                else:
                    found = self.select_quota(pool=pool, mode=mode, now=now, inflight=inflight, max_inflight=max_inflight, exclude=exclude, k=k)
                if found:
                    return Choice(mode=mode, pool=pool, candidates=found)
        return None

    def explain(
        self,
        *,
        pools: tuple[str, ...],
        modes: tuple[str, ...],
        strategy: str,
        now: float,
        inflight: Mapping[int, int],
        max_inflight: int,
        exclude: frozenset[int] | set[int] = frozenset(),
    ) -> Exhaustion:
        exhausted: list[tuple[str, str]] = []
        busy: list[tuple[str, str]] = []
        empty = [p for p in pools if not self._members.get(p)]
        earliest: float | None = None
        for mode in modes:
            for pool in pools:
                if mode not in POOL_MODES.get(pool, ()) or pool in empty:
                    continue
                ready = self._ready.get((pool, mode)) or []
                if strategy != "random" and not any(a not in exclude for _, a in ready[:256]):
                    exhausted.append((pool, mode))
                else:
                    # eligible by quota but busy, excluded, cooling or in cooldown
                    ids = self._members.get(pool, [])
                    cooling = [a for a in ids if blocked_until(self.accounts[a], mode, now, quota=False) is not None]
                    if cooling and len(cooling) == len(ids):
                        exhausted.append((pool, mode))
                    else:
                        busy.append((pool, mode))
                    for a in cooling[:256]:
                        until = blocked_until(self.accounts[a], mode, now, quota=False)
                        if until is not None and (earliest is None or until < earliest):
                            earliest = until
                wait = self.earliest_wait(pool, mode, now)
                if wait is not None and (earliest is None or wait < earliest):
                    earliest = wait
        return Exhaustion(exhausted=exhausted, empty_pools=empty, busy=busy, earliest_reset=earliest, modes=modes)


# -- feedback effects (docs/upstream-protocol.md §11.4) ----------------------------------------------------------------


@dataclass(slots=True)
class Effect:
    """What one upstream outcome does to an account. Applied to the in-memory view at once and to
    the database row later by the batched writer, with the same function (`effect_apply`)."""

    at: float
    mode: str | None = None
    use: int = 0
    fail: int = 0
    health_add: float = 0.0
    health_mul: float = 1.0
    quota_decrement: bool = False
    quota_exhaust: bool = False
    cooldown_seconds: float | None = None  # per-(account, mode) cooldown; None = until the window resets
    cooling_until: float | None = None  # random strategy: whole account
    status: str | None = None  # persisted
    state_reason: str | None = None
    memory_status: str | None = None  # in-memory only (AUTH_SUSPECT: expired until the next reload)
    fail_reason: str | None = None
    ext: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None  # operator alert (kind, endpoint, egress, message, hint)

    @property
    def touches_row(self) -> bool:
        return bool(
            self.use or self.fail or self.health_add or self.health_mul != 1.0 or self.quota_decrement or self.quota_exhaust
            or self.cooling_until or self.status or self.fail_reason or self.ext
        )


def effect_apply(view: AccountView, effect: Effect, *, in_memory: bool) -> float | None:
    """Apply `effect` to `view` (an in-memory view or a view of a DB row). Returns the cooldown end
    for (account, effect.mode) when the effect sets one."""
    at = effect.at
    if effect.use:
        view.use_count += effect.use
        view.last_use_at = at
    if effect.fail:
        view.fail_count += effect.fail
        view.last_fail_at = at
    if effect.fail_reason:
        view.last_fail_reason = effect.fail_reason
    if effect.health_mul != 1.0 or effect.health_add:
        view.health = min(1.0, max(HEALTH_FLOOR, view.health * effect.health_mul + effect.health_add))
    cooldown_end: float | None = None
    if effect.mode:
        w = view.window(effect.mode)
        if effect.quota_decrement and w is not None:
            w.remaining = max(0, w.remaining - 1)
            w.source = SOURCE_ESTIMATED
            if w.remaining == 0 and (w.reset_at is None or w.reset_at <= at):
                w.reset_at = at + w.window_seconds
        if effect.quota_exhaust:
            if w is not None:
                if w.reset_at is None or w.reset_at <= at:
                    w.reset_at = at + (effect.cooldown_seconds or w.window_seconds)
                w.remaining = 0
                w.source = SOURCE_ESTIMATED
                cooldown_end = w.reset_at
            else:
                cooldown_end = at + (effect.cooldown_seconds or mode_window_fallback(effect.mode))
            if effect.cooldown_seconds:
                cooldown_end = at + effect.cooldown_seconds
            prev = view.cooldowns.get(effect.mode)
            if prev is None or prev < cooldown_end:
                view.cooldowns[effect.mode] = cooldown_end
    if effect.cooling_until is not None:
        view.cooling_until = max(view.cooling_until or 0.0, effect.cooling_until)
    if effect.status:
        view.status = effect.status
    if effect.state_reason is not None:
        view.state_reason = effect.state_reason
    if effect.ext:
        view.ext.update(effect.ext)
    if in_memory and effect.memory_status:
        view.status = effect.memory_status
    return cooldown_end


def cooldowns_prune(cooldowns: dict[str, float], now: float) -> dict[str, float]:
    return {m: u for m, u in cooldowns.items() if u > now}


def tier_max(a: str, b: str) -> str:
    return a if TIER_RANK.get(a, 0) >= TIER_RANK.get(b, 0) else b
