"""Request heads against a real `serve` (uvicorn's h11 parser with a cap, see serve.MAX_HEAD_BYTES):
an oversize head is refused and the connection closed instead of being buffered without bound, and a
head that does not arrive within SERVER_HEAD_TIMEOUT_SECONDS closes the connection (grok2api/httpproto.py)."""
from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import httpx
import pytest

from grok2api.management.commands.serve import MAX_HEAD_BYTES

HEAD_TIMEOUT = 2


@pytest.fixture(scope="module")
def gateway(request, django_db_setup, tmp_path_factory):
    from grok2api.testing.fixtures import GatewayFactory

    factory = GatewayFactory(tmp_path_factory.mktemp("heads"))
    yield factory({"GROK_APP_API_KEY": "sk-heads", "SERVER_HEAD_TIMEOUT_SECONDS": str(HEAD_TIMEOUT)})
    factory.stop_all()


def _connect(gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", urlparse(gateway.url).port), timeout=30)


def test_it_answers_431_to_a_head_of_64_one_megabyte_lines_and_closes_the_connection(gateway):
    sock = _connect(gateway)
    answer = b""
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        line = b"X-Big-%d: " + b"a" * (1024 * 1024) + b"\r\n"
        for i in range(64):
            sock.sendall(line.replace(b"%d", str(i).encode()))
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused and closed before all of it was sent
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"connection: close" in answer.lower()


def test_a_head_under_the_cap_is_served(gateway):
    headers = {f"X-Pad-{i}": "p" * 1000 for i in range((MAX_HEAD_BYTES // 1100) - 4)}
    assert httpx.get(gateway.url + "/healthz", headers=headers).json() == {"status": "ok"}


def test_a_connection_that_never_finishes_its_head_holds_at_most_the_cap(gateway):
    sock = _connect(gateway)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"s" * (MAX_HEAD_BYTES + 1))
        answer = sock.recv(65536)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 431 ")  # over the cap without ever ending the line: refused too


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """Send `trickle` a byte at a time every 0.25 s; True once the server has closed the connection."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.25)
    i = 0
    while time.monotonic() < deadline:
        try:
            if trickle:
                sock.sendall(trickle[i % len(trickle):i % len(trickle) + 1])
                i += 1
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


def test_a_head_sent_a_byte_at_a_time_is_cut_off_at_the_head_deadline(gateway):
    sock = _connect(gateway)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert _closed_within(sock, HEAD_TIMEOUT * 5, trickle=b"X-Slow: still-coming\r\n")
    finally:
        sock.close()


def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline(gateway):
    sock = _connect(gateway)
    try:
        assert _closed_within(sock, HEAD_TIMEOUT * 5)
    finally:
        sock.close()


def test_a_head_that_arrives_in_time_after_a_pause_is_served(gateway):
    sock = _connect(gateway)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(HEAD_TIMEOUT / 4)
        sock.sendall(b"Host: 127.0.0.1\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        sock.close()
