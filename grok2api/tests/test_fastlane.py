"""The /v1 data-plane lane (grok2api/fastlane.py): what it sends on the wire, its error envelopes,
and the keep-alive frames it writes into a stream's gaps."""
from __future__ import annotations

import asyncio
import json
import socket
from urllib.parse import urlparse

import pytest
from django.http import StreamingHttpResponse
from django.urls import ResolverMatch

from grok2api import fastlane
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


@pytest.mark.django_db(transaction=True)
def test_a_lane_answer_carries_its_length_and_errors_keep_the_envelope(gateway_factory):
    gateway = gateway_factory({"GROK_APP_API_KEY": "sk-lane"})
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


async def _call(path: str, *, method: str = "GET", body: bytes = b"") -> list[dict]:
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    await application(scope, receive, send)
    return sent


@pytest.mark.django_db(transaction=True)
async def test_an_error_escaping_a_view_is_a_500_in_the_family_envelope(monkeypatch):
    async def broken(request):
        raise RuntimeError("boom")

    monkeypatch.setitem(fastlane._views, "/v1/messages/count_tokens", ResolverMatch(broken, (), {}))
    sent = await _call("/v1/messages/count_tokens", method="POST", body=b"{}")
    assert sent[0]["status"] == 500
    request_id = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert json.loads(sent[1]["body"]) == {"type": "error", "error": {
        "type": "api_error", "message": f"Internal error: RuntimeError (request id: {request_id})"}}


async def test_keepalive_frames_fill_the_gaps_of_a_stream_and_never_follow_its_end():
    async def parts():
        yield b"data: 1\n\n"
        await asyncio.sleep(0.35)
        yield b"data: 2\n\n"
        yield b"data: 3\n\n"
        await asyncio.sleep(0.25)
        yield b"data: [DONE]\n\n"

    response = StreamingHttpResponse(parts(), content_type="text/event-stream")
    response.sse_keepalive = (0.1, b": ka\n\n")
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await fastlane._send_response(response, send)
    bodies = [m["body"] for m in sent[1:]]
    assert bodies[-1] == b"" and sent[-1].get("more_body", False) is False
    data = [b for b in bodies if b.startswith(b"data")]
    assert data == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", b"data: [DONE]\n\n"]
    first_gap = bodies[bodies.index(b"data: 1\n\n") + 1:bodies.index(b"data: 2\n\n")]
    second_gap = bodies[bodies.index(b"data: 3\n\n") + 1:bodies.index(b"data: [DONE]\n\n")]
    assert first_gap and set(first_gap) == {b": ka\n\n"} and 2 <= len(first_gap) <= 4
    assert second_gap and set(second_gap) == {b": ka\n\n"}
    assert bodies.index(b"data: 2\n\n") + 1 == bodies.index(b"data: 3\n\n")  # no frame between back-to-back parts
