"""Selection over in-memory snapshots (accounts/pool.py): strategies, pool order, fallback, cap, cooldowns."""
import random

from accounts import pool as P
from grokweb.registry import BY_ID

NOW = 1_800_000_000.0


def view(account_id, pool="super", *, health=1.0, fails=0, last_use=None, status="active", **remaining):
    quotas = {}
    for mode, left in remaining.items():
        mode = mode.replace("computer_use", "grok-420-computer-use-sa")
        w = P.default_window(pool, mode)
        w.remaining = left
        if left == 0:
            w.reset_at = NOW + 3600
        quotas[mode] = w
    return P.AccountView(id=account_id, token=f"tok-{account_id}", pool=pool, status=status, quotas=quotas,
                         health=health, fail_count=fails, last_use_at=last_use)


def select(snap, model="grok-4.20-auto", *, strategy="quota", inflight=None, cap=8, exclude=frozenset(), fallback=True, now=NOW, k=1, rng=None):
    spec = BY_ID[model]
    modes = P.modes_for(mode=spec.mode, capability=spec.capability, fallback=fallback)
    return snap.select(pools=spec.pools, modes=modes, strategy=strategy, now=now, inflight=inflight or {},
                       max_inflight=cap, exclude=exclude, k=k, rng=rng)


def test_it_picks_the_highest_score():
    snap = P.PoolSnapshot([view(1, auto=10), view(2, auto=40), view(3, auto=20)], now=NOW)
    choice = select(snap)
    assert (choice.mode, choice.pool, choice.candidates[0].id) == ("auto", "super", 2)


def test_it_scores_health_inflight_failures_and_recent_use():
    # equal quotas: health decides
    snap = P.PoolSnapshot([view(1, auto=10, health=0.5), view(2, auto=10, health=0.9)], now=NOW)
    assert select(snap).candidates[0].id == 2
    # each in-flight request costs 20 points: 90 - 20 > 50, 90 - 60 < 50
    assert select(snap, inflight={2: 1}).candidates[0].id == 2
    assert select(snap, inflight={2: 3}).candidates[0].id == 1
    # failures cost 4 each, capped at 10
    snap = P.PoolSnapshot([view(1, auto=10, fails=3), view(2, auto=10, fails=0, health=0.95)], now=NOW)
    assert select(snap).candidates[0].id == 2
    # used 1 s ago: up to 15 points off
    snap = P.PoolSnapshot([view(1, auto=10, last_use=NOW - 1), view(2, auto=10, health=0.95)], now=NOW)
    assert select(snap).candidates[0].id == 2
    snap = P.PoolSnapshot([view(1, auto=10, last_use=NOW - 30), view(2, auto=10, health=0.95)], now=NOW)
    assert select(snap).candidates[0].id == 1


def test_it_returns_k_candidates_best_first():
    snap = P.PoolSnapshot([view(i, auto=i) for i in range(1, 8)], now=NOW)
    assert [v.id for v in select(snap, k=3).candidates] == [7, 6, 5]


def test_it_skips_exhausted_windows_until_their_reset():
    snap = P.PoolSnapshot([view(1, auto=0, fast=5), view(2, auto=0, fast=5)], now=NOW)
    choice = select(snap, fallback=False)
    assert choice is None
    # after the reset time, the window is full again and selectable
    later = select(snap, fallback=False, now=NOW + 3601)
    assert later.mode == "auto" and later.candidates[0].quotas["auto"].remaining == 50


def test_it_resets_windows_without_reset_time_instead_of_getting_stuck():
    v = view(1, auto=5)
    v.quotas["auto"].remaining = 0
    v.quotas["auto"].reset_at = None
    snap = P.PoolSnapshot([v], now=NOW)
    assert select(snap, fallback=False).candidates[0].id == 1


def test_it_tries_pools_in_strict_order():
    # grok-4.20-fast tries heavy, super, basic
    snap = P.PoolSnapshot([view(1, "basic", fast=30), view(2, "super", fast=1, health=0.1), view(3, "heavy", fast=0)], now=NOW)
    choice = select(snap, "grok-4.20-fast")
    assert (choice.pool, choice.candidates[0].id) == ("super", 2)
    # the cheap basic-first model prefers basic
    choice = select(snap, "grok-4.20-0309-non-reasoning")
    assert (choice.pool, choice.candidates[0].id) == ("basic", 1)


def test_it_falls_back_from_auto_to_fast_to_expert():
    snap = P.PoolSnapshot([view(1, auto=0, fast=0, expert=3), view(2, "heavy", auto=0, fast=2, expert=0)], now=NOW)
    choice = select(snap)
    assert (choice.mode, choice.pool, choice.candidates[0].id) == ("fast", "heavy", 2)
    assert select(snap, fallback=False) is None
    snap = P.PoolSnapshot([view(1, auto=0, fast=0, expert=3)], now=NOW)
    assert select(snap).mode == "expert"


def test_it_does_not_fall_back_for_non_auto_or_non_chat_models():
    assert P.modes_for(mode="fast", capability="chat", fallback=True) == ("fast",)
    assert P.modes_for(mode="auto", capability="image", fallback=True) == ("auto",)
    assert P.modes_for(mode="auto", capability="chat", fallback=True) == ("auto", "fast", "expert")


def test_it_respects_the_inflight_cap():
    snap = P.PoolSnapshot([view(1, auto=40), view(2, auto=1)], now=NOW)
    assert select(snap, inflight={1: 1}, cap=1).candidates[0].id == 2
    assert select(snap, inflight={1: 1, 2: 1}, cap=1) is None


def test_it_skips_accounts_in_cooldown():
    v1, v2 = view(1, auto=40, fast=40), view(2, auto=1, fast=1)
    v1.cooldowns["auto"] = NOW + 60
    snap = P.PoolSnapshot([v1, v2], now=NOW)
    assert select(snap, fallback=False).candidates[0].id == 2
    # the cooldown is per (account, mode): fast still picks account 1
    assert select(snap, "grok-4.20-fast").candidates[0].id == 1
    # and it ends on time
    assert select(snap, fallback=False, now=NOW + 61).candidates[0].id == 1


def test_it_skips_excluded_accounts():
    snap = P.PoolSnapshot([view(1, auto=40), view(2, auto=1)], now=NOW)
    assert select(snap, exclude=frozenset({1})).candidates[0].id == 2


def test_it_ignores_expired_and_disabled_accounts():
    snap = P.PoolSnapshot([view(1, auto=40, status="expired"), view(2, auto=40, status="disabled"), view(3, auto=1)], now=NOW)
    assert select(snap).candidates[0].id == 3
    assert snap.usable_pools() == frozenset({"super"})


def test_reindex_moves_an_account_after_feedback():
    snap = P.PoolSnapshot([view(1, auto=3), view(2, auto=2)], now=NOW)
    assert select(snap).candidates[0].id == 1
    v = snap.accounts[1]
    end = P.effect_apply(v, P.Effect(at=NOW, mode="auto", fail=1, health_mul=0.45, quota_exhaust=True), in_memory=True)
    snap.reindex(1, NOW)
    assert end == NOW + 3600 + 0 or end > NOW  # existing future reset or now + window
    assert v.quotas["auto"].remaining == 0 and v.cooldowns["auto"] == end
    choice = select(snap, fallback=False)
    assert choice.candidates[0].id == 2
    # expired status removes it from every structure
    v2 = snap.accounts[2]
    v2.status = "expired"
    snap.reindex(2, NOW)
    assert select(snap, fallback=False) is None


def test_random_strategy_is_uniform_and_ignores_quotas():
    views = [view(i, auto=0 if i % 2 else 5) for i in range(1, 5)]
    snap = P.PoolSnapshot(views, now=NOW)
    rng = random.Random(3)
    counts = {i: 0 for i in range(1, 5)}
    for _ in range(4000):
        counts[select(snap, strategy="random", fallback=False, rng=rng).candidates[0].id] += 1
    assert all(800 < c < 1200 for c in counts.values()), counts


def test_random_strategy_skips_cooling_busy_and_cooldown_accounts():
    views = [view(i, auto=5) for i in range(1, 5)]
    views[0].cooling_until = NOW + 100
    views[1].cooldowns["auto"] = NOW + 100
    snap = P.PoolSnapshot(views, now=NOW)
    rng = random.Random(5)
    seen = {select(snap, strategy="random", fallback=False, inflight={3: 2}, cap=2, rng=rng).candidates[0].id for _ in range(200)}
    assert seen == {4}
    assert select(snap, strategy="random", fallback=False, inflight={3: 2, 4: 2}, cap=2, rng=rng) is None


def test_explain_names_exhausted_pools_and_earliest_reset():
    snap = P.PoolSnapshot([view(1, auto=0), view(2, "heavy", auto=0)], now=NOW)
    why = snap.explain(pools=("heavy", "super"), modes=("auto",), strategy="quota", now=NOW, inflight={}, max_inflight=8)
    assert why.exhausted == [("heavy", "auto"), ("super", "auto")]
    assert why.earliest_reset == NOW + 3600
    why = snap.explain(pools=("heavy", "super", "basic"), modes=("fast",), strategy="quota", now=NOW, inflight={}, max_inflight=8)
    assert why.empty_pools == ["basic"]


def test_health_never_drops_below_the_floor():
    v = view(1, auto=5, health=0.06)
    P.effect_apply(v, P.Effect(at=NOW, health_mul=0.25), in_memory=True)
    assert v.health == P.HEALTH_FLOOR
    P.effect_apply(v, P.Effect(at=NOW, health_add=2.0), in_memory=True)
    assert v.health == 1.0


def test_selection_stays_correct_with_many_accounts():
    rng = random.Random(1)
    views = [view(i, auto=rng.randint(0, 50), health=rng.uniform(0.2, 1)) for i in range(1, 3001)]
    snap = P.PoolSnapshot(views, now=NOW)
    best = max((v for v in views if v.quotas["auto"].remaining > 0), key=lambda v: P.static_score(v, "auto"))
    assert select(snap, fallback=False).candidates[0].id == best.id
