"""The image wall's WebSocket (/webui/ws/imagine) through a real `serve` process, under each ASGI
server it can run (SERVER_IMPL): the upgrade reaches Channels, events arrive as they happen, and
the client's `stop` is answered. The consumer's own behaviour is tested in test_consumers.py."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.sync.client import connect

from grok2api.envcheck import SERVER_IMPLS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

API_KEY = "sk-wall-socket-test"
WAIT = 20  # seconds one event may take (upper bound only; the simulator answers at once)


def _receive_until(ws, predicate) -> list[dict]:
    seen = []
    for _ in range(200):
        event = json.loads(ws.recv(timeout=WAIT))
        seen.append(event)
        if predicate(event):
            return seen
    raise AssertionError(f"no matching event in {seen}")


@pytest.mark.parametrize("server", SERVER_IMPLS)
def test_the_wall_socket_streams_images_through_each_server(gateway_factory, simulator_server, make_account, server):
    simulator_server.reset()
    gateway = gateway_factory({"SERVER_IMPL": server, "GROK_APP_WEBUI_ENABLED": "true", "GROK_APP_API_KEY": API_KEY,
                               **simulator_server.upstream_env()})
    make_account(f"sim-super-wall{server}", pool="super")
    deadline = time.monotonic() + 15
    while not httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).json()["data"]:
        assert time.monotonic() < deadline, "the gateway did not load the account"
        time.sleep(0.1)

    with connect(gateway.url.replace("http://", "ws://") + "/webui/ws/imagine", open_timeout=WAIT) as ws:
        ws.send(json.dumps({"type": "start", "prompt": "a lighthouse at dusk", "model": "standard",
                            "aspect_ratio": "1:1", "count": 1, "rounds": 2}))
        events = _receive_until(ws, lambda e: e["type"] == "status" and e["status"] == "waiting")
        run_id = events[0]["run_id"]
        assert events[0] == {"type": "status", "status": "running", "run_id": run_id, "images": 0}
        images = [e for e in events if e["type"] == "image"]
        assert [e["seq"] for e in images] == [1, 2]  # the two rounds asked for, one image each
        assert all(e["src"].startswith("data:image/") for e in images)
        ws.send(json.dumps({"type": "stop"}))
        stopped = _receive_until(ws, lambda e: e["type"] == "status")
        assert stopped[-1] == {"type": "status", "status": "stopped", "run_id": run_id, "images": 2}
    assert [r for r in simulator_server.sim.requests() if r["path"] == "/ws/imagine/listen"]
