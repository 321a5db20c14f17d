"""grok2api/memory.py: requests counted through the ASGI wrapper, the idle release (once per quiet
spell after traffic, never with a request in flight), the release itself, the task's lifecycle."""
from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from grok2api import memory


@pytest.fixture(autouse=True)
def _fresh_activity(monkeypatch):
    monkeypatch.setattr(memory, "activity", memory.Activity())


class Recorder:
    def __init__(self) -> None:
        self.releases = 0

    async def release(self) -> dict:
        self.releases += 1
        return {}


def keeper(rec: Recorder, *, idle_seconds: float = 10.0, tick: float = 5.0) -> memory.Housekeeper:
    return memory.Housekeeper(idle_seconds=idle_seconds, tick=tick, on_release=rec.release)


async def _ok_app(scope, receive, send):
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def serve_one(app, gate: asyncio.Event | None = None) -> None:
    async def receive():
        if gate is not None:
            await gate.wait()
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    await app({"type": "http", "path": "/"}, receive, send)


async def test_the_wrapper_counts_http_requests_in_flight_and_finished():
    seen_inflight = []

    async def app(scope, receive, send):
        seen_inflight.append(memory.activity.inflight)
        await _ok_app(scope, receive, send)

    tracked = memory.track_requests(app)
    gate = asyncio.Event()
    task = asyncio.create_task(serve_one(tracked, gate))
    await asyncio.sleep(0)
    assert (memory.activity.inflight, memory.activity.finished) == (1, 0)
    gate.set()
    await task
    assert (memory.activity.inflight, memory.activity.finished, seen_inflight) == (0, 1, [1])


async def test_the_wrapper_ignores_lifespan_but_counts_websocket_sessions():
    calls = []

    async def app(scope, receive, send):
        calls.append((scope["type"], memory.activity.inflight))

    tracked = memory.track_requests(app)
    for kind in ("lifespan", "websocket"):
        await tracked({"type": kind}, None, None)
    assert calls == [("lifespan", 0), ("websocket", 1)] and memory.activity.finished == 1


async def test_a_request_that_fails_is_no_longer_counted_in_flight():
    async def app(scope, receive, send):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await serve_one(memory.track_requests(app))
    assert (memory.activity.inflight, memory.activity.finished) == (0, 1)


async def test_memory_is_released_once_after_the_idle_time_that_follows_traffic():
    rec = Recorder()
    hk = keeper(rec, idle_seconds=10.0, tick=5.0)
    for _ in range(4):
        await hk.step()
    assert rec.releases == 0  # no request served yet: nothing to give back
    await serve_one(memory.track_requests(_ok_app))
    assert await hk.step() is False  # traffic since the last tick
    assert await hk.step() is False  # quiet for one tick (5 s)
    assert await hk.step() is True  # quiet for 10 s
    for _ in range(5):
        await hk.step()
    assert rec.releases == 1  # not again without new traffic


async def test_no_release_while_a_request_is_in_flight():
    rec = Recorder()
    hk = keeper(rec, idle_seconds=10.0, tick=5.0)
    gate = asyncio.Event()
    task = asyncio.create_task(serve_one(memory.track_requests(_ok_app), gate))
    await asyncio.sleep(0)
    for _ in range(6):
        assert await hk.step() is False
    gate.set()
    await task
    results = [await hk.step() for _ in range(4)]
    assert results == [False, False, True, False] and rec.releases == 1


async def test_a_zero_idle_setting_starts_no_housekeeping(monkeypatch):
    memory.stop()
    monkeypatch.setenv("MEMORY_RELEASE_IDLE_SECONDS", "0")
    assert memory.start() is None


async def test_release_collects_cyclic_garbage_and_trims_the_c_heap():
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    probe = weakref.ref(a)
    gc.disable()
    try:
        del a, b
        assert probe() is not None  # only the cycle collector can free it
        done = await memory.release()
    finally:
        gc.enable()
    assert probe() is None and done["collected"] >= 2
    if memory._malloc_trim is not None:  # glibc
        assert done["trimmed"] in (True, False)


async def test_release_closes_the_pooled_upstream_clients_so_the_next_request_builds_new_ones():
    from grokweb.egress import DIRECT
    from grokweb.tests._config import make_cfg
    from grokweb.transport import upstream_client

    client = await upstream_client(egress=DIRECT, cfg=make_cfg())
    done = await memory.release()
    assert done["upstream_clients_closed"] >= 1 and client.is_closed
    assert await upstream_client(egress=DIRECT, cfg=make_cfg()) is not client


async def test_start_runs_one_housekeeping_task_per_worker_and_stop_cancels_it():
    memory.stop()
    task = memory.start()
    try:
        assert memory.start() is task and not task.done()
    finally:
        memory.stop()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_the_idle_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("MEMORY_RELEASE_IDLE_SECONDS", "45")
    assert memory.idle_seconds_setting() == 45.0
    monkeypatch.setenv("MEMORY_RELEASE_IDLE_SECONDS", "")
    assert memory.idle_seconds_setting() == memory.DEFAULT_IDLE_SECONDS


@pytest.mark.django_db
async def test_the_asgi_application_counts_its_http_requests():
    from grok2api.asgi import application

    sent: list[dict] = []
    inbox = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():  # the body, then nothing until the client goes away (ASGI)
        if inbox:
            return inbox.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/v1/models", "raw_path": b"/v1/models", "query_string": b"",
             "headers": [], "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1)}
    await application(scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[-1]["type"] == "http.response.body"
    assert (memory.activity.started, memory.activity.finished) == (1, 1)


LIFESPAN_PROBE = """
import asyncio, gc, json, sys
from grok2api import asgi

async def main():
    before = {"frozen": gc.get_freeze_count(), "switch": sys.getswitchinterval()}
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive():
        return inbox.pop(0)

    async def send(message):
        sent.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            before["after_frozen"] = gc.get_freeze_count()
            before["after_switch"] = sys.getswitchinterval()

    await asgi.application({"type": "lifespan"}, receive, send)
    before["sent"] = sent
    print(json.dumps(before))

asyncio.run(main())
"""


def test_worker_start_up_freezes_its_objects_and_leaves_the_gil_switch_interval_alone(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "DATA_DIR": str(tmp_path), "LOG_FILE_ENABLED": "false"}
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=Path(__file__).resolve().parents[2],
                   env=env, check=True, timeout=120)
    proc = subprocess.run([sys.executable, "-c", LIFESPAN_PROBE], cwd=Path(__file__).resolve().parents[2],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["sent"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert out["frozen"] == 0 and out["switch"] == 0.005  # CPython's defaults before
    # gc.freeze() keeps no memory back, but a full collection over the start-up objects was the
    # TTFT p99 of bench lane 3 (docs/benchmarks.md): they are frozen once the warm-up is done
    assert out["after_frozen"] > 10_000
    assert out["after_switch"] == 0.005
