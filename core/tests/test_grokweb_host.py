"""The core lends the Grok Web client its settings and egress (grokweb/host.py, installed by
grok2api/apps.py): a client built without `cfg=` reads the runtime config in force, and an
untrusted fetch without `allowlist=` uses `security.fetch_allowlist` — against the simulator and a
real origin server on 127.0.0.1."""
from __future__ import annotations

import asyncio

import pytest

from core.config import config_snapshot
from grokweb.client import GrokClient
from grokweb.events import Completed
from grokweb.tests.test_client import collect
from grokweb.tests.test_fetch_untrusted import PNG, server  # noqa: F401  (fixture)
from grokweb.transport import FetchRefused, fetch_untrusted


@pytest.mark.django_db(transaction=True)
async def test_the_allowlist_comes_from_runtime_config(server, monkeypatch):
    base, _ = server
    monkeypatch.setenv("GROK_SECURITY_FETCH_ALLOWLIST", "127.0.0.1/32")
    config_snapshot().refresh_now()
    try:
        assert (await fetch_untrusted(f"{base}/img.png", max_bytes=1000)).data == PNG
        monkeypatch.setenv("GROK_SECURITY_FETCH_ALLOWLIST", "")
        config_snapshot().refresh_now()
        with pytest.raises(FetchRefused):
            await fetch_untrusted(f"{base}/img.png", max_bytes=1000)
    finally:
        monkeypatch.delenv("GROK_SECURITY_FETCH_ALLOWLIST")
        config_snapshot().refresh_now()


@pytest.mark.django_db(transaction=True)
async def test_the_client_reads_base_urls_from_the_runtime_config(sim, monkeypatch):
    for name, value in sim.upstream_env().items():
        monkeypatch.setenv(name, value)
    await asyncio.to_thread(config_snapshot().refresh_now)
    try:
        client = GrokClient(token="sim-super-a")
        assert client.web_base == sim.url
        events = await collect(client, client.build_chat_payload(message="hi", mode="fast"))
        assert isinstance(events[-1], Completed)
    finally:
        for name in sim.upstream_env():
            monkeypatch.delenv(name)
        await asyncio.to_thread(config_snapshot().refresh_now)
