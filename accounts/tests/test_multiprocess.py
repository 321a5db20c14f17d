"""Two `manage.py serve` processes on real PostgreSQL + Redis share one account pool.

- concurrent requests against accounts with max_inflight=1 never put two requests in flight on one
  account at the simulator (high-water mark per token recorded inside the simulator);
- a 429 seen by one process stops the other from choosing that account for that mode at once
  (the batched DB write is held back for 60 s, so only the shared Redis cooldown can tell it).
"""
import asyncio
import collections
import time

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Account

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not getattr(settings, "REDIS_URL", None), reason="needs real Redis (REDIS_URL) and PostgreSQL"),
]

KEY = "sk-pool-multiprocess"


class HighWater(collections.defaultdict):
    """The simulator's per-token in-flight counter, also remembering each token's peak."""

    def __init__(self, current=None):
        super().__init__(int)
        self.peak: collections.Counter = collections.Counter()
        for k, v in (current or {}).items():
            self[k] = v

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if value > self.peak[key]:
            self.peak[key] = value


def _accounts(*specs):
    from accounts.maintenance import account_import

    for token, remaining in specs:
        account_import(tokens=token, pool="super", probe_after=False)
        Account.objects.filter(token_last4=token[-4:]).update(quotas={
            "auto": {"remaining": remaining, "total": 50, "window_seconds": 7200, "reset_at": None, "synced_at": time.time(), "source": 1},
        })
    from core.snapshots import stamp_bump

    stamp_bump("accounts")


@pytest.fixture
def two_gateways(sim, gateway_factory):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    env = {
        **sim.upstream_env(),
        "GROK_APP_API_KEY": KEY,
        "REDIS_URL": settings.REDIS_URL,
        "GROK_ACCOUNT_SELECTION_MAX_INFLIGHT": "1",
        "GROK_FEATURES_AUTO_CHAT_MODE_FALLBACK": "false",
        "GROK_RETRY_MAX_RETRIES": "1",
        "ACCOUNT_FLUSH_INTERVAL": "60",  # DB feedback lands late: cross-process effects must come from Redis
    }
    return gateway_factory(env), gateway_factory(env)


def _wait_listed(*gateways, model="grok-4.20-auto"):
    """Both processes picked the new accounts up (snapshot poll) before the test starts."""
    import httpx

    deadline = time.monotonic() + 20
    for g in gateways:
        while True:
            ids = {m["id"] for m in httpx.get(g.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json().get("data", [])}
            if model in ids:
                break
            assert time.monotonic() < deadline, f"{g.url} never listed {model}"
            time.sleep(0.1)


async def _chat(base_url: str):
    from openai import AsyncOpenAI, RateLimitError

    client = AsyncOpenAI(base_url=base_url + "/v1", api_key=KEY, max_retries=0, timeout=60)
    try:
        done = await client.chat.completions.create(model="grok-4.20-auto", messages=[{"role": "user", "content": "Say hello"}], stream=False)
        return done.choices[0].message.content
    except RateLimitError as exc:
        return exc
    finally:
        await client.close()


def test_two_processes_share_inflight_caps_and_cooldowns(sim, two_gateways):
    g1, g2 = two_gateways

    # 1. max_inflight = 1 holds across both processes under a concurrent burst
    tokens = [f"sim-super-mp{i}~tokms=15" for i in range(3)]
    _accounts(*[(t, 40) for t in tokens])
    sim.sim.inflight = HighWater(sim.sim.inflight)
    _wait_listed(g1, g2)

    async def burst():
        return await asyncio.gather(*[_chat((g1 if i % 2 else g2).url) for i in range(12)])

    results = asyncio.run(burst())
    ok = [r for r in results if isinstance(r, str)]
    limited = [r for r in results if not isinstance(r, str)]
    assert ok, "no request succeeded"
    assert all("busy" in str(r) or "No available account" in str(r) for r in limited), limited
    assert len(sim.sim.requests(endpoint="chat")) == len(ok)
    assert max(sim.sim.inflight.peak[t] for t in tokens) == 1, dict(sim.sim.inflight.peak)

    # 2. a 429 seen by g1 stops g2 from choosing that account for that mode at once
    best, other = "sim-super-mpbest", "sim-super-mpother"
    _accounts((best, 49), (other, 48))  # both outscore the burst accounts (≤ 40 left)
    sim.sim.queue(best, ["rl"], endpoint="chat")  # the next chat call on `best` answers 429
    time.sleep(1.0)  # settle: both processes poll the accounts stamp every 0.2 s
    n0 = len(sim.sim.requests(endpoint="chat"))
    first = asyncio.run(_chat(g1.url))  # g1: best → 429 → retried on other
    assert isinstance(first, str), first
    chats = sim.sim.requests(endpoint="chat")[n0:]
    assert [c["status"] for c in chats] == [429, 200]  # (a rejected call is logged without its token)
    assert chats[1]["token"] == other
    # g2 has never seen the 429 and the database still says `best` has 49 left (writes held back)
    assert Account.objects.get(token_last4=best[-4:]).quotas["auto"]["remaining"] == 49
    for _ in range(2):
        assert isinstance(asyncio.run(_chat(g2.url)), str)
    chats = sim.sim.requests(endpoint="chat")[n0:]
    # had g2 picked `best` (its scripted 429 is used up) the simulator would have served it: token=best
    assert [(c["status"], c["token"]) for c in chats[1:]] == [(200, other)] * 3, "g2 chose the rate-limited account"
    # the cooldown is per (account, mode): fast on the same account stays open
    from accounts.inflight import RedisSlots

    slots = RedisSlots(settings.REDIS_URL)
    best_id = Account.objects.get(token_last4=best[-4:]).id
    assert slots.sync_client().pttl(slots.k_cooldown(best_id, "auto")) > 0
    assert slots.sync_client().pttl(slots.k_cooldown(best_id, "fast")) < 0
