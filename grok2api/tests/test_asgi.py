"""The one request pipeline (grok2api/asgi.py: Django's ASGI handler behind the body cap, /static/
in front of it): what /v1 sends on the wire and the family envelopes of its errors."""
from __future__ import annotations

import asyncio
import json
import socket
from urllib.parse import urlparse

import httpx
import pytest

from grok2api.asgi import application


def _raw(url: str, request: bytes) -> tuple[bytes, bytes]:
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=20) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.lower(), body


@pytest.fixture(scope="module")
def keyed_gateway(request, django_db_setup, tmp_path_factory):
    from grok2api.testing.fixtures import GatewayFactory

    factory = GatewayFactory(tmp_path_factory.mktemp("pipeline"))
    yield factory({"GROK_APP_API_KEY": "sk-lane"})
    factory.stop_all()


def test_a_v1_answer_carries_its_length_and_errors_keep_the_envelope(keyed_gateway):
    gateway = keyed_gateway
    host = urlparse(gateway.url).netloc

    head, body = _raw(gateway.url, f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer sk-lane\r\n"
                                   "Connection: close\r\n\r\n".encode())
    assert head.startswith(b"http/1.1 200")
    assert f"content-length: {len(body)}".encode() in head and b"transfer-encoding" not in head
    assert json.loads(body)["object"] == "list"

    head, body = _raw(gateway.url, f"GET /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    assert head.startswith(b"http/1.1 405") and b"allow: post" in head
    assert json.loads(body)["error"]["code"] == "method_not_allowed"

    head, body = _raw(gateway.url, f"GET /v1/models/a/b/c HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    assert head.startswith(b"http/1.1 404") and json.loads(body)["error"]["code"] == "not_found"

    head, body = _raw(gateway.url, f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n"
                                   "Connection: close\r\n\r\n{}".encode())
    assert head.startswith(b"http/1.1 401") and json.loads(body)["type"] == "error"


@pytest.mark.parametrize("path", ["/v1/", "/v1/no/such/route"])
def test_it_answers_every_unknown_v1_path_in_json(keyed_gateway, path):
    response = httpx.get(keyed_gateway.url + path)
    assert response.status_code == 404 and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    anthropic = httpx.get(keyed_gateway.url + "/v1/messages/nope")
    assert anthropic.status_code == 404 and anthropic.json()["type"] == "error"


def test_it_serves_static_files_in_front_of_django(keyed_gateway):
    response = httpx.get(keyed_gateway.url + "/static/admin/css/base.css")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")
    assert httpx.get(keyed_gateway.url + "/static/no-such-file.css").status_code == 404


async def _call(path: str, *, method: str = "GET", body: bytes = b"", disconnect_when_done: bool = False) -> list[dict]:
    """One request through the ASGI application. `disconnect_when_done`: the next receive after the
    response ends gets `http.disconnect`, as uvicorn answers it; otherwise it never returns."""
    sent: list[dict] = []
    complete = asyncio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        if disconnect_when_done:
            await complete.wait()
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            complete.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    await application(scope, receive, send)
    return sent


@pytest.mark.django_db(transaction=True)
async def test_a_finished_request_leaves_no_reference_cycle_behind():
    """Uvicorn answers the handler's disconnect listener with `http.disconnect` once the response is
    complete; Django's own listener raised then, and the exception kept the request's objects in a
    cycle until a full garbage collection (grok2api/asgi.py)."""
    import gc

    from django.core.handlers.asgi import ASGIRequest

    async def one_request() -> list[dict]:
        sent = await _call("/v1/models", disconnect_when_done=True)
        await asyncio.sleep(0)  # let the listener's task finish
        return sent

    await one_request()  # warm: imports, snapshots
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            sent = await one_request()
            assert sent[0]["type"] == "http.response.start" and sent[-1].get("more_body", False) is False
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, ASGIRequest)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


@pytest.mark.django_db(transaction=True)
async def test_an_error_escaping_a_view_is_a_500_in_the_family_envelope(monkeypatch):
    from gateway import services

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "messages_count_tokens", broken)
    # A body the request schema accepts (gateway/schemas/), so the view runs and the service raises.
    body = b'{"model": "grok-4.20-fast", "messages": [{"role": "user", "content": "hi"}]}'
    sent = await _call("/v1/messages/count_tokens", method="POST", body=body)
    assert sent[0]["status"] == 500
    error = json.loads(sent[1]["body"])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    # every error message ends with the request id (gateway/requestid.py)
    assert error["error"]["message"].startswith("Internal error: RuntimeError (request id: req_")


def test_a_wrong_host_gets_a_json_400_on_v1_and_djangos_page_elsewhere(keyed_gateway):
    gateway = keyed_gateway
    head, body = _raw(gateway.url, b"GET /v1/models HTTP/1.1\r\nHost: attacker.example\r\nAuthorization: Bearer sk-lane\r\n"
                                   b"Connection: close\r\n\r\n")
    assert head.startswith(b"http/1.1 400") and b"content-type: application/json" in head
    assert "attacker.example" in json.loads(body)["error"]["message"]
    head, body = _raw(gateway.url, b"POST /v1/messages HTTP/1.1\r\nHost: attacker.example\r\nContent-Length: 2\r\n"
                                   b"Connection: close\r\n\r\n{}")
    assert head.startswith(b"http/1.1 400") and json.loads(body)["type"] == "error"
    head, _ = _raw(gateway.url, b"GET /admin/login/ HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"http/1.1 400")
    for host in (b"localhost", b"127.0.0.1", b"localhost:8000"):
        head, _ = _raw(gateway.url, b"GET /v1/models HTTP/1.1\r\nHost: " + host + b"\r\nAuthorization: Bearer sk-lane\r\n"
                                    b"Connection: close\r\n\r\n")
        assert head.startswith(b"http/1.1 200"), host


@pytest.mark.django_db(transaction=True)
def test_the_host_of_app_url_is_allowed_too(gateway_factory):
    gateway = gateway_factory({"GROK_APP_APP_URL": "https://grok.example.test/base"})
    head, _ = _raw(gateway.url, b"GET /healthz HTTP/1.1\r\nHost: grok.example.test\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"http/1.1 200")
    head, _ = _raw(gateway.url, b"GET /healthz HTTP/1.1\r\nHost: other.example.test\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"http/1.1 400")
