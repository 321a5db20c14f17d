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
        await key_limits_release(grant=grant)
        await key_limits_release(grant=grant)  # a second release changes nothing
        await key_limits_acquire(key_id=KEY, limits=limits)

    asyncio.run(run())


def test_tokens_of_an_ended_answer_count_against_the_budgets_of_the_next_request():
    limits = KeyLimits(monthly_tokens=100)

    async def run():
        grant = await key_limits_acquire(key_id=KEY, limits=limits)
        key_tokens_add(grant=grant, tokens=60)
        await asyncio.sleep(0.05)  # the Redis write is a task of its own
        grant = await key_limits_acquire(key_id=KEY, limits=limits)  # 60 < 100: admitted
        key_tokens_add(grant=grant, tokens=40)
        await asyncio.sleep(0.05)
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
