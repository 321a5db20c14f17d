"""Errors outside any route still speak the client's envelope: unknown paths, wrong methods,
bodies over MAX_BODY_MB (declared, chunked, or caught by Django's own limit)."""
from __future__ import annotations

import json
import select
import socket
from urllib.parse import urlparse

import pytest


def _raw_post(url: str, path: str, head: str, body_chunks) -> tuple[int, dict]:
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=20) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: application/json\r\nConnection: close\r\n{head}\r\n".encode())
        data = b""
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
                # Stop sending once the server has answered (it may close early, as for a 413).
                if select.select([sock], [], [], 0)[0]:
                    break
            while chunk := sock.recv(65536):
                data += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
        if not data:
            pytest.fail("the server closed the connection without an answer")
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head_bytes.lower():
        decoded, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        body = decoded
    return int(head_bytes.split(b" ")[1]), json.loads(body)


def _chunked(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        piece = b"x" * min(size, total - sent)
        sent += len(piece)
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.mark.django_db(transaction=True)
def test_a_body_over_the_cap_is_refused_before_it_is_read(gateway_factory):
    gateway = gateway_factory({"MAX_BODY_MB": "1"})
    two_mb = 2 * 1024 * 1024

    status, body = _raw_post(gateway.url, "/v1/chat/completions", "Transfer-Encoding: chunked\r\n", _chunked(two_mb))
    assert status == 413 and body["error"]["code"] == "request_too_large"
    assert "1 MB" in body["error"]["message"]

    status, body = _raw_post(gateway.url, "/v1/messages", "Transfer-Encoding: chunked\r\n", _chunked(two_mb))
    assert status == 413 and body == {"type": "error", "error": {"type": "request_too_large", "message": body["error"]["message"]}}

    status, body = _raw_post(gateway.url, "/v1/responses", f"Content-Length: {two_mb}\r\n", [b"{"])
    assert status == 413 and body["error"]["type"] == "invalid_request_error"

    # Under the cap the request reaches the route (which rejects the non-JSON body on its own).
    status, body = _raw_post(gateway.url, "/v1/chat/completions", "Transfer-Encoding: chunked\r\n", _chunked(512 * 1024))
    assert status == 400 and "error" in body


@pytest.mark.django_db
def test_djangos_own_body_limit_is_rendered_as_413(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    big = json.dumps({"model": "grok-4.20-auto", "messages": [{"role": "user", "content": "x" * 4096}]})
    response = client.post("/v1/chat/completions", data=big, content_type="application/json")
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    response = client.post("/v1/messages", data=big, content_type="application/json")
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"


@pytest.mark.django_db
def test_unknown_paths_and_methods_answer_in_the_envelope(client):
    missing = client.get("/v1/no/such/route")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed" and "POST" in wrong["Allow"]
    anthropic = client.delete("/v1/messages")
    assert anthropic.status_code == 405 and anthropic.json()["type"] == "error"
