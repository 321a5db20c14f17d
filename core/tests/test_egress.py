"""core/egress.py: the egress pool (direct, single proxy, proxy pool with Proxy rows), its
sticky choice and health feedback, and the rows written off the request path — with a real HTTP
forward proxy and the simulator on 127.0.0.1."""
from __future__ import annotations

import asyncio

import pytest

from core.egress import egress_candidates, egress_flush, egress_pick, proxies_snapshot
from grokweb.egress import DIRECT, FAIL_STREAK_DOWN, Egress, EgressConfigError, egress_report, egress_state_reset
from grokweb.tests._config import make_cfg
from grokweb.tests.test_transport import ForwardProxy, origin  # noqa: F401  (fixture)
from grokweb.transport import upstream_client


@pytest.fixture(autouse=True)
def _fresh_egress_state():
    egress_state_reset()
    yield
    egress_state_reset()


# --------------------------------------------------------------------------------------------
# egress choice


def test_direct_mode_has_no_proxy():
    assert egress_pick(cfg=make_cfg()) == DIRECT


def test_single_proxy_mode_uses_the_configured_url():
    cfg = make_cfg({"proxy.egress.mode": "single_proxy", "proxy.egress.proxy_url": "socks5://u:p@10.0.0.9:1080"})
    egress = egress_pick(cfg=cfg)
    assert egress.proxy_url == "socks5h://u:p@10.0.0.9:1080"
    assert egress.label == "socks5h://10.0.0.9:1080"


def test_single_proxy_mode_without_a_url_is_a_clear_error():
    with pytest.raises(EgressConfigError) as info:
        egress_pick(cfg=make_cfg({"proxy.egress.mode": "single_proxy"}))
    assert "proxy.egress.proxy_url" in info.value.message


def _pool_cfg(*urls):
    return make_cfg({"proxy.egress.mode": "proxy_pool", "proxy.egress.proxy_pool": list(urls)})


@pytest.mark.django_db
def test_pool_is_sticky_until_a_failure_rotates_it():
    cfg = _pool_cfg("http://p1:1", "http://p2:2", "http://p3:3")
    proxies_snapshot.refresh_now()
    first = egress_pick(cfg=cfg)
    assert first.proxy_url == "http://p1:1"
    egress_report(egress=first, ok=True)
    assert egress_pick(cfg=cfg) == first  # sticky
    egress_report(egress=first, ok=False, error="connect refused")
    second = egress_pick(cfg=cfg)
    assert second.proxy_url == "http://p2:2"
    assert egress_pick(cfg=cfg) == second


@pytest.mark.django_db
def test_a_proxy_failing_repeatedly_is_skipped_for_a_while():
    cfg = _pool_cfg("http://p1:1", "http://p2:2")
    proxies_snapshot.refresh_now()
    bad = Egress("http://p1:1", "p1")
    for _ in range(FAIL_STREAK_DOWN):
        egress_report(egress=bad, ok=False)
    choices = {egress_pick(cfg=cfg).proxy_url for _ in range(5)}
    assert choices == {"http://p2:2"}


@pytest.mark.django_db
def test_pool_includes_enabled_proxy_rows_and_feeds_back_their_health():
    from core.models import Proxy

    row = Proxy.objects.create(url="socks5://user:pw@10.9.9.9:1080", label="office")
    Proxy.objects.create(url="http://10.8.8.8:3128", label="disabled", enabled=False)
    proxies_snapshot.refresh_now()
    cfg = _pool_cfg("http://p1:1")
    candidates = egress_candidates(cfg=cfg)
    assert [c.proxy_url for c in candidates] == ["http://p1:1", "socks5h://user:pw@10.9.9.9:1080"]
    office = candidates[1]
    assert office.proxy_id == row.pk and office.label == "office"

    egress_report(egress=office, ok=True)
    for _ in range(FAIL_STREAK_DOWN):
        egress_report(egress=office, ok=False, error="proxy refused")
    row.refresh_from_db()
    assert (row.success_count, row.fail_count) == (0, 0)  # nothing written on the request path
    assert egress_flush() == 1
    row.refresh_from_db()
    assert (row.success_count, row.fail_count, row.healthy, row.last_error) == (1, 3, False, "proxy refused")
    assert row.last_used_at is not None and row.last_fail_at is not None
    assert egress_flush() == 0  # buffer drained


@pytest.mark.django_db
def test_empty_pool_is_a_clear_error():
    proxies_snapshot.refresh_now()
    with pytest.raises(EgressConfigError):
        egress_pick(cfg=_pool_cfg())


async def test_single_proxy_egress_really_routes_through_the_proxy(origin):
    proxy = ForwardProxy()
    proxy_url = await proxy.start()
    try:
        cfg = make_cfg({"proxy.egress.mode": "single_proxy", "proxy.egress.proxy_url": proxy_url})
        egress = egress_pick(cfg=cfg)
        client = await upstream_client(egress=egress, cfg=cfg)
        response = await client.get(f"http://127.0.0.1:{origin}/hello")
        assert response.text == "ok"
        assert proxy.requests == [f"GET http://127.0.0.1:{origin}/hello"]
    finally:
        await proxy.stop()


@pytest.mark.django_db(transaction=True)
async def test_a_failing_pool_proxy_is_classified_and_rotated_away(sim):
    import socket

    from grokweb.tests._config import sim_cfg
    from grokweb.client import GrokClient
    from grokweb.classify import UpstreamError, UpstreamKind

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}"
    dead.close()  # nothing listens there any more
    proxy = ForwardProxy()
    live_url = await proxy.start()
    try:
        await asyncio.to_thread(proxies_snapshot.refresh_now)
        cfg = sim_cfg(sim, **{"proxy.egress.mode": "proxy_pool", "proxy.egress.proxy_pool": [dead_url, live_url]})
        first = GrokClient(token="sim-super-a", cfg=cfg)
        assert first.egress.proxy_url == dead_url
        with pytest.raises(UpstreamError) as info:
            await first.rate_limits(mode="auto")
        assert info.value.kind is UpstreamKind.TRANSPORT and info.value.retry_elsewhere
        second = GrokClient(token="sim-super-a", cfg=cfg)
        assert second.egress.proxy_url == live_url
        assert (await second.rate_limits(mode="auto"))["totalQueries"] == 50
        assert proxy.requests == [f"POST {sim.url}/rest/rate-limits"]
        assert GrokClient(token="sim-super-a", cfg=cfg).egress.proxy_url == live_url  # sticky again
    finally:
        await proxy.stop()
