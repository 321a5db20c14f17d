"""Shared in-flight slots and cooldowns: the in-process backend always, the Redis one on real Redis
(REDIS_URL set, as in the PostgreSQL + Redis test run)."""
import asyncio
import time

import pytest
from django.conf import settings

from accounts import inflight


def test_local_slots_cap_release_and_cooldown():
    slots = inflight.LocalSlots()

    async def main():
        got = await slots.acquire([1, 2], "auto", 1, "l1")
        assert got.index == 0
        got = await slots.acquire([1, 2], "auto", 1, "l2")
        assert (got.index, got.busy) == (1, {1})
        got = await slots.acquire([1, 2], "auto", 1, "l3")
        assert got.index is None and got.busy == {1, 2}
        slots.release_nowait(1, "l1", ("auto", time.time() + 60))
        got = await slots.acquire([1], "auto", 1, "l4")
        assert got.index is None and 1 in got.cooldowns
        got = await slots.acquire([1], "fast", 1, "l5")  # cooldown is per mode
        assert got.index == 0

    asyncio.run(main())


redis_only = pytest.mark.skipif(not getattr(settings, "REDIS_URL", None), reason="needs REDIS_URL (real Redis)")


@pytest.fixture
def two_processes():
    """Two backends on the same Redis, as two server processes would have."""
    a, b = inflight.RedisSlots(settings.REDIS_URL), inflight.RedisSlots(settings.REDIS_URL)
    client = a.sync_client()
    for key in client.scan_iter(a.prefix + "*"):
        client.delete(key)
    yield a, b
    a.close()
    b.close()
    for key in client.scan_iter(a.prefix + "*"):
        client.delete(key)


@redis_only
def test_redis_slots_enforce_the_cap_across_processes(two_processes):
    a, b = two_processes

    async def main():
        got = await a.acquire([101, 102], "auto", 1, "a:1")
        assert got.index == 0
        got = await b.acquire([101, 102], "auto", 1, "b:1")
        assert got.index == 1 and got.busy == {101}
        got = await b.acquire([101, 102], "auto", 1, "b:2")
        assert got.index is None and got.busy == {101, 102}
        await a.release(101, "a:1")
        got = await b.acquire([101, 102], "auto", 1, "b:3")
        assert got.index == 0

    asyncio.run(main())
    assert a.count_sync(101) == 1 and a.count_sync(102) == 1


@redis_only
def test_redis_concurrent_acquires_never_overshoot(two_processes):
    a, b = two_processes

    async def main():
        results = await asyncio.gather(*[(a if i % 2 else b).acquire([201], "auto", 3, f"x:{i}") for i in range(40)])
        return sum(r.index is not None for r in results)

    assert asyncio.run(main()) == 3
    assert a.count_sync(201) == 3


@redis_only
def test_a_cooldown_published_by_one_process_stops_the_other(two_processes):
    a, b = two_processes

    async def main():
        got = await a.acquire([301, 302], "auto", 8, "a:1")
        assert got.index == 0
        await a.release(301, "a:1", ("auto", time.time() + 120))
        got = await b.acquire([301, 302], "auto", 8, "b:1")
        assert got.index == 1
        assert 110 < got.cooldowns[301] - time.time() <= 120
        got = await b.acquire([301], "fast", 8, "b:2")
        assert got.index == 0  # other modes of the same account are unaffected
        # a shorter cooldown never shortens a longer one
        await a.release(301, "none", ("auto", time.time() + 5))
        got = await b.acquire([301], "auto", 8, "b:3")
        assert got.cooldowns[301] - time.time() > 100

    asyncio.run(main())


@redis_only
def test_a_lease_is_renewed_while_its_request_lives_and_expires_once_its_process_stops(two_processes):
    a, b = two_processes
    short = inflight.RedisSlots(settings.REDIS_URL, lease_ms=1000)  # renewed every 1/3 s

    async def main():
        assert (await short.acquire([401], "auto", 1, "live:1")).index == 0
        await asyncio.sleep(2.5)  # more than two leases: only the renewals keep it
        assert (await b.acquire([401], "auto", 1, "b:1")).index is None
        assert short.live_count() == 1
        short.close()  # as if the process had crashed: nothing renews, nothing releases
        await asyncio.sleep(1.5)
        assert (await b.acquire([401], "auto", 1, "b:2")).index == 0

    asyncio.run(main())


@redis_only
def test_a_released_lease_is_not_renewed_back(two_processes):
    a, _ = two_processes
    slots = inflight.RedisSlots(settings.REDIS_URL, lease_ms=1000)

    async def main():
        assert (await slots.acquire([601], "auto", 1, "r:1")).index == 0
        assert slots.renew_now() == 1
        # the release lands in Redis while the renewer still holds the lease in its list
        a.sync_client().zrem(slots.k_inflight(601), "r:1")
        assert slots.renew_now() == 0
        await slots.release(601, "r:1")
        assert slots.live_count() == 0

    asyncio.run(main())
    assert a.count_sync(601) == 0
    slots.close()


@redis_only
def test_release_from_sync_code_uses_a_blocking_call(two_processes):
    a, _ = two_processes

    async def take():
        return await a.acquire([501], "auto", 1, "s:1")

    assert asyncio.run(take()).index == 0
    a.release_nowait(501, "s:1", None)
    assert a.count_sync(501) == 0
