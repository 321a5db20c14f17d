"""Two `manage.py serve` processes on real PostgreSQL + Redis enforce one key's limits together.

A burst of concurrent requests of one key, split evenly over both processes:
- with the shared Redis counters, exactly `requests_per_minute` are admitted in all;
- with KEY_LIMITS_SHARED=false (per-process counters) each process admits its own quota, so the
  key gets more than its limit: the test proves it can tell the difference.
And concurrently held slow streams never exceed `max_concurrent_requests` across both.
"""
from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from django.conf import settings
from django.db import connection, transaction

from gateway.models import ApiKey
from core.crypto import hash_api_key
from core.snapshots import stamp_bump

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not getattr(settings, "REDIS_URL", None), reason="needs real Redis (REDIS_URL) and PostgreSQL"),
]

RPM = 6
BURST = 10  # per process: more than RPM each, so per-process counters let 2 × RPM through


@pytest.fixture(autouse=True)
def _fresh_key_counters():
    """The test database restarts its ids every run; counters left in Redis by an earlier run
    under this database's prefix would land on the new keys."""
    import redis

    from gateway.limits import _RedisCounters, key_limits_reset

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=_RedisCounters(settings.REDIS_URL).prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    key_limits_reset()


def _keys(**limits) -> tuple[str, str]:
    """A limited key and an unlimited probe key, written in one transaction and one stamp: a process
    that accepts the probe has loaded the limited key too (same snapshot load)."""
    limited, probe = "sk-lim-" + secrets.token_hex(8), "sk-probe-" + secrets.token_hex(8)
    with transaction.atomic():
        ApiKey.objects.create(label="limited", key_hash=hash_api_key(limited), prefix=limited[:12], **limits)
        ApiKey.objects.create(label="probe", key_hash=hash_api_key(probe), prefix=probe[:12])
        stamp_bump("api_keys")
    return limited, probe


def _wait_accepted(gateways, key: str) -> None:
    import time

    deadline = time.monotonic() + 20
    for g in gateways:
        while httpx.get(g.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code != 200:
            assert time.monotonic() < deadline, f"{g.url} never accepted the key"
            time.sleep(0.1)


def _gateways(gateway_factory, sim, *, shared: bool):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    env = {**sim.upstream_env(), "GROK_APP_API_KEY": "sk-admin-unused", "REDIS_URL": settings.REDIS_URL,
           "KEY_LIMITS_SHARED": "true" if shared else "false"}
    return gateway_factory(env), gateway_factory(env)


async def _burst(gateways, key: str, n_each: int, path: str = "/v1/models") -> list[int]:
    async with httpx.AsyncClient(timeout=30) as client:
        calls = [client.get(g.url + path, headers={"Authorization": f"Bearer {key}"}) for g in gateways for _ in range(n_each)]
        return [r.status_code for r in await asyncio.gather(*calls)]


def test_two_processes_admit_exactly_the_per_minute_limit_through_redis(sim, gateway_factory):
    gateways = _gateways(gateway_factory, sim, shared=True)
    limited, probe = _keys(requests_per_minute=RPM)
    _wait_accepted(gateways, probe)
    statuses = asyncio.run(_burst(gateways, limited, BURST))
    assert statuses.count(200) == RPM and statuses.count(429) == 2 * BURST - RPM, statuses


def test_per_process_counters_let_the_key_exceed_its_limit_across_two_processes(sim, gateway_factory):
    # The same burst with the shared counters disabled: what the test above would see without Redis.
    gateways = _gateways(gateway_factory, sim, shared=False)
    limited, probe = _keys(requests_per_minute=RPM)
    _wait_accepted(gateways, probe)
    statuses = asyncio.run(_burst(gateways, limited, BURST))
    assert statuses.count(200) == 2 * RPM, statuses  # over the key's limit: each process counted alone


def test_two_processes_never_hold_more_slots_than_the_concurrency_limit(sim, gateway_factory):
    import time

    gateways = _gateways(gateway_factory, sim, shared=True)
    limited, probe = _keys(max_concurrent_requests=2)
    from accounts.maintenance import account_import

    account_import(tokens="sim-super-klconc~stall@2=20000", pool="super", probe_after=False)
    stamp_bump("accounts")
    _wait_accepted(gateways, probe)
    deadline = time.monotonic() + 20
    for g in gateways:  # both processes serve the model before the burst
        while not any(m["id"] == "grok-4.20-fast" for m in httpx.get(
                g.url + "/v1/models", headers={"Authorization": f"Bearer {probe}"}).json()["data"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)

    async def run():
        body = {"model": "grok-4.20-fast", "stream": True, "messages": [{"role": "user", "content": "Gardens #sim:len=25"}]}
        async with httpx.AsyncClient(timeout=60) as client:
            async def open_stream(g):
                request = client.build_request("POST", g.url + "/v1/chat/completions", json=body,
                                               headers={"Authorization": f"Bearer {limited}"})
                return await client.send(request, stream=True)

            # two streams held open (one per process), then more attempts on both while they are
            responses = [await open_stream(g) for g in gateways]
            assert [r.status_code for r in responses] == [200, 200]
            more = await asyncio.gather(*[client.get(g.url + "/v1/models", headers={"Authorization": f"Bearer {limited}"})
                                          for g in gateways for _ in range(4)])
            for r in responses:
                await r.aclose()
            return more

    more = asyncio.run(run())
    assert [r.status_code for r in more] == [429] * 8
    assert all("concurrent requests limit of 2" in r.json()["error"]["message"] for r in more)
