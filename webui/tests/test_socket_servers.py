"""The image wall's WebSocket (/webui/ws/imagine) through a real `serve` process (uvicorn): the upgrade reaches Channels, events arrive as they happen, and
the client's `stop` is answered. The consumer's own behaviour is tested in test_consumers.py."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

API_KEY = "sk-wall-socket-test"
WAIT = 20  # seconds one event may take (upper bound only; the simulator answers at once)


def _sign_in(base: str, key: str) -> str:
    """Sign in at /webui/login (CSRF form) and return the Cookie header of the session."""
    with httpx.Client(base_url=base) as client:
        client.get("/webui/login")
        token = client.cookies["csrftoken"]
        signed = client.post("/webui/login", data={"key": key, "csrfmiddlewaretoken": token})
        assert signed.status_code == 302, signed.text
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def _receive_until(ws, predicate) -> list[dict]:
    seen = []
    for _ in range(200):
        event = json.loads(ws.recv(timeout=WAIT))
        seen.append(event)
        if predicate(event):
            return seen
    raise AssertionError(f"no matching event in {seen}")


def test_the_wall_socket_streams_images_through_the_server(gateway_factory, simulator_server, make_account):
    server = "uvicorn"
    simulator_server.reset()
    gateway = gateway_factory({"GROK_APP_WEBUI_ENABLED": "true", "GROK_APP_API_KEY": API_KEY,
                               **simulator_server.upstream_env()})
    make_account(f"sim-super-wall{server}", pool="super")
    deadline = time.monotonic() + 15
    while not httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).json()["data"]:
        assert time.monotonic() < deadline, "the gateway did not load the account"
        time.sleep(0.1)

    # no page key and /v1 needs one: the pages, the socket included, need a sign-in with the /v1 key
    with connect(gateway.url.replace("http://", "ws://") + "/webui/ws/imagine", open_timeout=WAIT) as ws:
        assert json.loads(ws.recv(timeout=WAIT))["type"] == "error"
        with pytest.raises(ConnectionClosedError) as refused:
            ws.recv(timeout=WAIT)
        assert refused.value.rcvd.code == 4401
    cookie = _sign_in(gateway.url, API_KEY)
    with connect(gateway.url.replace("http://", "ws://") + "/webui/ws/imagine", open_timeout=WAIT,
                 additional_headers={"Cookie": cookie}) as ws:
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
