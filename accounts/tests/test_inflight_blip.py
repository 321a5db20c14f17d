"""A Redis blip while a stream ends does not leave the account's slot held.

A real `manage.py serve` talks to the real Redis through a TCP proxy the test cuts while a stream
is ending: the release cannot reach Redis at that moment. With max_inflight=1 the next request
used to get 429 "every account … is busy" for 30 minutes; now the release is retried once Redis
answers again, and a release that is never delivered ends with the lease.
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from accounts.inflight import RedisSlots
from accounts.models import Account
from accounts.tests.tcpproxy import TcpProxy
from media.tests.e2e import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not getattr(settings, "REDIS_URL", None), reason="needs real Redis (REDIS_URL)"),
]

KEY = "sk-pool-blip"
TOKEN = "sim-super-blip~tokms=40"
BLIP_SECONDS = 8.0  # longer than redis-py's own reconnect attempts (10 retries, backoff capped at 1 s)


@pytest.fixture
def redis_proxy():
    url = urlsplit(settings.REDIS_URL)
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 6379)
    yield proxy, url._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
    proxy.close()


def _account() -> Account:
    from accounts.maintenance import account_import
    from core.snapshots import stamp_bump

    account_import(tokens=TOKEN, pool="super", probe_after=False)
    Account.objects.filter(token_last4=TOKEN[-4:]).update(quotas={
        "auto": {"remaining": 40, "total": 50, "window_seconds": 7200, "reset_at": None, "synced_at": time.time(), "source": 1},
    })
    stamp_bump("accounts")
    return Account.objects.get(token_last4=TOKEN[-4:])


def test_a_stream_ending_during_a_redis_blip_does_not_keep_its_slot(sim, gateway_factory, redis_proxy):
    from openai import OpenAI

    proxy, proxied_url = redis_proxy
    account = _account()
    gateway = gateway_factory({
        **sim.upstream_env(),
        "GROK_APP_API_KEY": KEY,
        "REDIS_URL": proxied_url,
        "GROK_ACCOUNT_SELECTION_MAX_INFLIGHT": "1",
        "GROK_FEATURES_AUTO_CHAT_MODE_FALLBACK": "false",
        "GROK_ACCOUNT_REFRESH_ENABLED": "false",  # no after-use probe: this test is about the slot only
    })
    direct = RedisSlots(settings.REDIS_URL)  # looks at the real Redis, past the proxy
    client = OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "Tell me a long story"}]

    stream = client.chat.completions.create(model="grok-4.20-auto", messages=messages, stream=True)
    first = next(iter(stream))
    assert first.choices is not None
    assert direct.count_sync(account.id) == 1  # the slot is held while the stream runs
    proxy.cut()
    try:
        text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
        assert text  # the stream itself does not need Redis and ends normally
        time.sleep(BLIP_SECONDS)  # the outage lasts past the release and redis-py's own reconnects
    finally:
        proxy.restore()

    # The retried release lands once Redis answers: well within the 60 s lease, so it is the
    # release that frees the slot, not its expiry.
    wait_until(lambda: direct.count_sync(account.id) == 0, timeout=20, interval=0.2,
               what="the slot to be released after Redis came back")
    done = client.chat.completions.create(model="grok-4.20-auto", messages=messages)
    assert done.choices[0].message.content


def test_a_release_that_never_arrives_ends_with_the_lease(sim, gateway_factory, redis_proxy):
    from openai import OpenAI

    proxy, proxied_url = redis_proxy
    account = _account()
    gateway = gateway_factory({
        **sim.upstream_env(),
        "GROK_APP_API_KEY": KEY,
        "REDIS_URL": proxied_url,
        "GROK_ACCOUNT_SELECTION_MAX_INFLIGHT": "1",
        "GROK_FEATURES_AUTO_CHAT_MODE_FALLBACK": "false",
        "GROK_ACCOUNT_REFRESH_ENABLED": "false",
        "POOL_SLOT_LEASE_SECONDS": "3",
    })
    direct = RedisSlots(settings.REDIS_URL)
    client = OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
    stream = client.chat.completions.create(model="grok-4.20-auto", messages=[{"role": "user", "content": "Hi"}], stream=True)
    next(iter(stream))
    proxy.cut()
    try:
        for _ in stream:
            pass
        # Redis stays away past the lease: the release's retries give up, nothing renews the entry.
        wait_until(lambda: "failed after retries" in gateway.log(), timeout=30, interval=0.2,
                   what="the gateway to give up releasing")
    finally:
        proxy.restore()
    assert direct.count_sync(account.id) == 0  # expired on its own, not 30 minutes later
    done = client.chat.completions.create(model="grok-4.20-auto", messages=[{"role": "user", "content": "Hi"}])
    assert done.choices[0].message.content
