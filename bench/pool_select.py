"""Benchmark: account selection cost per request (issue 4: ≤ 50 µs median with 10,000 accounts).

Measures the pure selection over a PoolSnapshot (accounts/pool.py) the way a request uses it:
select with a live in-flight map (a sliding window of ~64 concurrent leases), then apply the
success feedback to the chosen account (quota −1, health, reindex) when its lease ends, so the
sorted structures really churn. The shared-backend round trip (Redis) is not part of this number.

    python -m bench.pool_select [n_accounts] [rounds]
"""
from __future__ import annotations

import random
import statistics
import sys
import time

from accounts import pool as P
from grokweb.registry import BY_ID


def build_snapshot(n_accounts: int, *, seed: int = 7) -> P.PoolSnapshot:
    rng = random.Random(seed)
    now = time.time()
    views = []
    for i in range(1, n_accounts + 1):
        pool = rng.choices(("basic", "super", "heavy"), weights=(5, 4, 1))[0]
        quotas = {}
        for mode in sorted(P.DEFAULT_TOTALS[pool]):
            w = P.default_window(pool, mode)
            w.remaining = rng.randint(0, w.total)
            if w.remaining == 0:
                w.reset_at = now + rng.randint(60, 7200)
            quotas[mode] = w
        views.append(P.AccountView(
            id=i, token=f"tok-{i}", pool=pool, quotas=quotas, health=rng.uniform(0.3, 1.0),
            fail_count=rng.randint(0, 12), last_use_at=now - rng.uniform(0, 60),
        ))
    return P.PoolSnapshot(views, now=now)


def bench_selection(n_accounts: int = 10000, rounds: int = 20000, *, model: str = "grok-4.20-auto", concurrency: int = 64) -> dict:
    snap = build_snapshot(n_accounts)
    spec = BY_ID[model]
    modes = P.modes_for(mode=spec.mode, capability=spec.capability, fallback=True)
    inflight: dict[int, int] = {}
    open_leases: list[tuple[int, str]] = []
    samples: list[int] = []
    rng = random.Random(11)
    misses = 0
    perf = time.perf_counter_ns
    for _ in range(rounds):
        now = time.time()
        t0 = perf()
        choice = snap.select(pools=spec.pools, modes=modes, strategy="quota", now=now, inflight=inflight, max_inflight=8, k=4, rng=rng)  # k as accounts.lease.SELECT_K
        samples.append(perf() - t0)
        if choice is None:
            misses += 1
            continue
        account_id = choice.candidates[0].id
        inflight[account_id] = inflight.get(account_id, 0) + 1
        open_leases.append((account_id, choice.mode))
        if len(open_leases) >= concurrency:
            done_id, mode = open_leases.pop(rng.randrange(len(open_leases)))
            n = inflight[done_id] - 1
            if n:
                inflight[done_id] = n
            else:
                del inflight[done_id]
            P.effect_apply(snap.accounts[done_id], P.Effect(at=now, mode=mode, use=1, health_add=0.12, quota_decrement=True), in_memory=True)
            snap.reindex(done_id, now)
    samples.sort()
    return {
        "n_accounts": n_accounts,
        "rounds": rounds,
        "median_us": round(statistics.median(samples) / 1000, 2),
        "p99_us": round(samples[int(len(samples) * 0.99) - 1] / 1000, 2),
        "misses": misses,
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    r = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    print(bench_selection(n, r))
