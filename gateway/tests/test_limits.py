"""gateway/limits.py on its own: the counters (Redis when REDIS_URL is set, else per process) and the headers."""
from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime

import pytest
from django.conf import settings

from gateway.limits import Grant, KeyLimitReached, KeyLimits, key_limits_acquire, key_limits_headers, key_limits_release
from gateway.limits import key_limits_reset, key_tokens_add


@pytest.fixture(autouse=True)
def _fresh_backend(monkeypatch):
    monkeypatch.setenv("KEY_CONCURRENCY_TTL_SECONDS", "1")
    key_limits_reset()
    if getattr(settings, "REDIS_URL", None):
        import redis

        from gateway.limits import _RedisCounters

        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(match=_RedisCounters(settings.REDIS_URL).prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    yield
    key_limits_reset()


KEY = 987_654  # an id no test database row uses


def test_a_slot_never_released_expires_after_its_ttl():
    limits = KeyLimits(concurrent=1)

    async def run():
        await key_limits_acquire(key_id=KEY, limits=limits)  # never released: its process "died"
        with pytest.raises(KeyLimitReached) as info:
            await key_limits_acquire(key_id=KEY, limits=limits)
        assert str(info.value) == "concurrent requests limit of 1 reached for this key"
        await asyncio.sleep(1.2)  # KEY_CONCURRENCY_TTL_SECONDS=1
        grant = await key_limits_acquire(key_id=KEY, limits=limits)
        await _release(grant)
        assert key_limits_release(grant=grant) is None  # a second release changes nothing
        await key_limits_acquire(key_id=KEY, limits=limits)

    asyncio.run(run())


async def _release(grant) -> None:
    """Release a grant and wait until the release has reached the counters (on Redis it is a task)."""
    task = key_limits_release(grant=grant)
    if task is not None:
        await task


def test_tokens_of_an_ended_answer_count_against_the_budgets_of_the_next_request():
    limits = KeyLimits(monthly_tokens=100)

    async def run():
        grant = await key_limits_acquire(key_id=KEY, limits=limits)
        key_tokens_add(grant=grant, tokens=60)
        await _release(grant)  # the release carries the answer's tokens
        grant = await key_limits_acquire(key_id=KEY, limits=limits)  # 60 < 100: admitted
        key_tokens_add(grant=grant, tokens=40)
        await _release(grant)
        with pytest.raises(KeyLimitReached) as info:
            await key_limits_acquire(key_id=KEY, limits=limits)
        assert str(info.value) == "monthly token budget of 100 reached for this key"
        assert int(info.value.headers["retry-after"]) >= 1

    asyncio.run(run())


def test_headers_name_only_the_limits_the_key_has_in_each_familys_format():
    now = int(time.time() * 1000)
    grant = Grant(key_id=1, limits=KeyLimits(requests_per_minute=10), member="", now_ms=now, requests_used=3,
                  requests_oldest_ms=now - 20_000)
    openai = key_limits_headers(grant=grant, anthropic=False)
    assert openai == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "7",
                      "x-ratelimit-reset-requests": "40s"}
    grant.requests_oldest_ms = now
    assert key_limits_headers(grant=grant, anthropic=False)["x-ratelimit-reset-requests"] == "1m0s"
    anthropic = key_limits_headers(grant=grant, anthropic=True)
    assert set(anthropic) == {"anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
                              "anthropic-ratelimit-requests-reset"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", anthropic["anthropic-ratelimit-requests-reset"])
    reset = datetime.fromisoformat(anthropic["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00"))
    assert 59 <= reset.timestamp() - now / 1000 <= 61
    grant.limits = KeyLimits(daily_tokens=5, concurrent=2)
    assert key_limits_headers(grant=grant, anthropic=False) == {}


def test_it_refuses_with_a_503_when_redis_cannot_be_reached(settings):
    from grokweb.errors import ServiceUnavailable

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    key_limits_reset()

    async def run():
        with pytest.raises(ServiceUnavailable) as info:
            await key_limits_acquire(key_id=KEY, limits=KeyLimits(requests_per_minute=5))
        assert info.value.status == 503 and info.value.headers == {"retry-after": "1"}

    asyncio.run(run())


def test_the_end_of_a_request_frees_its_slot_and_counts_its_tokens_together():
    limits = KeyLimits(concurrent=1, tokens_per_minute=50)

    async def run():
        grant = await key_limits_acquire(key_id=KEY, limits=limits)
        key_tokens_add(grant=grant, tokens=30)  # recorded on the grant: not counted before the release
        with pytest.raises(KeyLimitReached, match="concurrent requests limit of 1"):
            await key_limits_acquire(key_id=KEY, limits=limits)
        await _release(grant)
        grant = await key_limits_acquire(key_id=KEY, limits=limits)  # the slot is free again...
        assert grant.tokens_used == 30  # ...and the tokens were counted by the same release
        key_tokens_add(grant=grant, tokens=30)
        await _release(grant)
        with pytest.raises(KeyLimitReached, match="tokens per minute limit of 50"):
            await key_limits_acquire(key_id=KEY, limits=limits)

    asyncio.run(run())


def test_tokens_recorded_after_the_release_still_count():
    limits = KeyLimits(daily_tokens=10)

    async def run():
        grant = await key_limits_acquire(key_id=KEY, limits=limits)
        await _release(grant)
        key_tokens_add(grant=grant, tokens=10)  # a late ledger entry: sent on its own
        await asyncio.gather(*[t for t in asyncio.all_tasks() if t is not asyncio.current_task()])
        with pytest.raises(KeyLimitReached, match="daily token budget of 10"):
            await key_limits_acquire(key_id=KEY, limits=limits)

    asyncio.run(run())


@pytest.mark.skipif(not getattr(settings, "REDIS_URL", None), reason="needs real Redis (REDIS_URL)")
def test_a_request_of_a_limited_key_costs_two_script_calls_on_redis_one_to_admit_one_to_end():
    """Counted by Redis itself (MONITOR): the admission, then one call that frees the slot and adds
    the tokens, not one call for each."""
    import threading
    import uuid

    import redis

    from gateway.limits import _RedisCounters

    key_prefix = _RedisCounters(settings.REDIS_URL).prefix + f"{KEY}:"
    stop = "stop-" + uuid.uuid4().hex
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with redis.Redis.from_url(settings.REDIS_URL).monitor() as m:
            ready.set()
            for cmd in m.listen():
                if stop in cmd["command"]:
                    return
                if key_prefix in cmd["command"] and cmd["command"].split()[0].upper() in ("EVAL", "EVALSHA"):
                    seen.append(cmd["command"])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(10)
    limits = KeyLimits(requests_per_minute=100, concurrent=5, tokens_per_minute=1000, daily_tokens=1000,
                       monthly_tokens=1000)

    async def run():
        grant = await key_limits_acquire(key_id=KEY, limits=limits)
        key_tokens_add(grant=grant, tokens=36)
        await _release(grant)

    asyncio.run(run())
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.echo(stop)
    client.close()
    watcher.join(10)
    assert len(seen) == 2, seen
    # the second names the slot (its member, 32 hex digits) and the 36 tokens
    assert re.search(r' [0-9a-f]{32} 36 ', seen[1]), seen[1]


@pytest.mark.skipif(not getattr(settings, "REDIS_URL", None), reason="needs real Redis (REDIS_URL)")
def test_a_release_that_cannot_reach_redis_leaves_the_slot_to_expire(settings, caplog):
    limits = KeyLimits(concurrent=1)
    reachable = settings.REDIS_URL

    async def run():
        grant = await key_limits_acquire(key_id=KEY, limits=limits)
        settings.REDIS_URL = "redis://127.0.0.1:1/0"  # Redis gone before the answer ended
        key_limits_reset()
        task = key_limits_release(grant=grant)
        await asyncio.wait([task])
        assert task.exception() is not None  # not raised into the request: logged
        settings.REDIS_URL = reachable
        key_limits_reset()
        with pytest.raises(KeyLimitReached, match="concurrent requests limit of 1"):
            await key_limits_acquire(key_id=KEY, limits=limits)
        await asyncio.sleep(1.2)  # KEY_CONCURRENCY_TTL_SECONDS=1
        await key_limits_acquire(key_id=KEY, limits=limits)

    asyncio.run(run())
    assert "the slot expires on its own" in caplog.text
