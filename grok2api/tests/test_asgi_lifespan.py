"""The lifespan shim of grok2api.asgi: start-up warms the snapshots, and a failing warm-up is
answered `lifespan.startup.failed` (not raised), so uvicorn and granian both stop instead of
serving with cold snapshots (granian serves on when a lifespan raises)."""
from __future__ import annotations

import asyncio

from grok2api import asgi


def _lifespan(*messages: dict) -> list[dict]:
    sent: list[dict] = []

    async def run() -> None:
        inbox: asyncio.Queue = asyncio.Queue()
        for message in messages:
            inbox.put_nowait(message)

        async def send(message: dict) -> None:
            sent.append(message)

        await asyncio.wait_for(asgi.application({"type": "lifespan"}, inbox.get, send), timeout=30)

    asyncio.run(run())
    return sent


def test_a_failing_warm_up_is_reported_as_startup_failed(monkeypatch):
    def broken() -> None:
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(asgi, "_warm", broken)
    sent = _lifespan({"type": "lifespan.startup"})
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "database unreachable" in sent[0]["message"]


def test_start_up_warms_then_both_phases_complete(monkeypatch):
    warmed = []
    monkeypatch.setattr(asgi, "_warm", lambda: warmed.append(True))
    sent = _lifespan({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert warmed == [True]
