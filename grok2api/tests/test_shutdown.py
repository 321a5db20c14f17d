"""SIGTERM to a real `serve` process with streams open (grok2api/asgi.py's stop hook, gateway/sse.py's
cut): new connections are refused at once, and every stream still running when
SHUTDOWN_GRACE_SECONDS is over ends with its family's error event before the process exits."""
from __future__ import annotations

import signal
import socket
import time
import uuid
from urllib.parse import urlparse

import httpx
import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

KEY = "sk-shutdown-test"
FAST = "grok-4.20-fast"


def _account(token: str) -> None:
    from django.db import transaction

    from accounts.models import Account
    from core.snapshots import stamp_bump

    account = Account(pool="super")
    account.set_token(token)
    with transaction.atomic():
        account.save()
        stamp_bump("accounts")


def _open_stream(port: int, path: str, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def _read_until(sock: socket.socket, marker: bytes, seen: bytes = b"") -> bytes:
    while marker not in seen:
        chunk = sock.recv(65536)
        if not chunk:
            break
        seen += chunk
    return seen


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True


@pytest.mark.parametrize(("workers", "stop_signal"), [(1, signal.SIGTERM), (2, signal.SIGTERM), (2, signal.SIGINT)],
                         ids=["uvicorn-sigterm", "gunicorn-workers-sigterm", "gunicorn-workers-ctrl-c"])
def test_sigterm_refuses_new_connections_and_ends_open_streams_with_the_family_error(gateway_factory, simulator_server,
                                                                                     workers, stop_signal):
    # the account exists before the workers start, so every worker's pool snapshot has it (with two
    # workers, the readiness poll below reaches only one of them)
    _account(f"sim-super-drain{uuid.uuid4().hex[:8]}~tokms=300")  # ~300 ms per token: the answers take ~30 s
    gateway = gateway_factory({"GROK_APP_API_KEY": KEY, "SHUTDOWN_GRACE_SECONDS": "2", **simulator_server.upstream_env()},
                              workers=workers)
    deadline = time.monotonic() + 20
    while not any(m["id"] == FAST for m in httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]):
        assert time.monotonic() < deadline, "the gateway did not load the account"
        time.sleep(0.1)
    port = urlparse(gateway.url).port
    prompt = "Talk slowly #sim:len=100"
    chat = _open_stream(port, "/v1/chat/completions",
                        ('{"model":"%s","stream":true,"messages":[{"role":"user","content":"%s"}]}' % (FAST, prompt)).encode())
    messages = _open_stream(port, "/v1/messages",
                            ('{"model":"%s","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"%s"}]}'
                             % (FAST, prompt)).encode())
    chat_seen = _read_until(chat, b'"content"')
    messages_seen = _read_until(messages, b"content_block_delta")
    assert b"200 OK" in chat_seen and b"200 OK" in messages_seen

    gateway.process.send_signal(stop_signal)
    deadline = time.monotonic() + 10
    while not _refused(port):
        assert time.monotonic() < deadline, f"the server still accepts connections after {stop_signal.name}"
        time.sleep(0.05)

    chat_seen = _read_until(chat, b"\r\n0\r\n\r\n", chat_seen)
    messages_seen = _read_until(messages, b"\r\n0\r\n\r\n", messages_seen)
    chat.close()
    messages.close()
    assert b'"code":"server_shutting_down"' in chat_seen
    assert chat_seen.index(b"server_shutting_down") < chat_seen.rindex(b"data: [DONE]")
    assert b"event: error" in messages_seen and b'"type":"overloaded_error"' in messages_seen
    assert b"message_stop" not in messages_seen
    assert gateway.stop() == 0
