"""`manage.py serve` on a real socket: a launcher around uvicorn that answers /healthz, runs N
uvicorn workers under gunicorn with the connections spread over them, and stops every child
process on SIGTERM / Ctrl-C."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

# What uvicorn logs per worker process it starts, and once it stopped cleanly (after the lifespan).
WORKER_STARTED = r"Started server process \[(\d+)\]"
LIFESPAN_SHUTDOWN = "Application shutdown complete"


def _children_of(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc), e.g. uvicorn, celery, its pool and beat."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _left_alive(pids, timeout: float = 15.0) -> list[int]:
    """`pids` still alive once they had `timeout` seconds to go (a grandchild such as
    multiprocessing's resource tracker exits a moment after its parent)."""
    deadline = time.monotonic() + timeout
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def _wait_for(gateway, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in gateway.log():
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{gateway.log()}"
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_serve_answers_on_a_real_socket_and_stops_every_child_on_sigterm(gateway_factory):
    gateway = gateway_factory(embedded_worker=True)
    assert "(uvicorn, 1 worker)" in gateway.log()
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["broker"]["ok"] is True

    celery = int(re.search(r"embedded Celery worker \+ beat \(pid (\d+)\)", gateway.log()).group(1))
    _wait_for(gateway, "beat: Starting")  # the embedded beat is a grandchild: let it exist first
    deadline = time.monotonic() + 30  # Celery forks its pool processes on its own schedule
    descendants = _children_of(gateway.process.pid)
    while len(descendants) <= 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        descendants = _children_of(gateway.process.pid)
    assert celery in descendants
    assert len(descendants) > 2  # Celery's pool / beat processes

    assert gateway.stop() == 0
    assert _left_alive(descendants) == [], gateway.log()
    assert LIFESPAN_SHUTDOWN in gateway.log()


def _established_per_process(pids: set[int], port: int) -> dict[int, int]:
    """How many established TCP connections on local `port` each of `pids` holds (from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    held = {}
    for pid in pids:
        sockets = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                sockets.add(target[8:-1])
        held[pid] = len(sockets & inodes)
    return held


@pytest.mark.django_db(transaction=True)
def test_several_workers_share_the_connections(gateway_factory):
    # uvicorn's own supervisor had every worker wait on one socket: the first to wake took all the
    # queued connections (one worker held 16 of 16 in bench.profile). Each gunicorn worker has its
    # own SO_REUSEPORT socket and the kernel hashes connections over them: with 32 connections,
    # a worker holding fewer than 4 has a probability of about 3e-6.
    gateway = gateway_factory(workers=2)
    deadline = time.monotonic() + 30
    while len(set(re.findall(WORKER_STARTED, gateway.log()))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = {int(p) for p in re.findall(WORKER_STARTED, gateway.log())}
    assert len(workers) == 2, gateway.log()
    port = int(gateway.url.rsplit(":", 1)[1])
    held_open = []
    try:
        # a burst, as clients and load generators open them: all 32 wait in the kernel's accept
        # queue together before any worker accepts
        for _ in range(32):
            held_open.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for conn in held_open:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for conn in held_open:
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")  # served, and kept alive
        per_worker = _established_per_process(workers, port)
    finally:
        for conn in held_open:
            conn.close()
    assert sum(per_worker.values()) == 32, per_worker
    assert min(per_worker.values()) >= 4, per_worker


@pytest.mark.django_db(transaction=True)
def test_serve_runs_several_workers_under_gunicorn(gateway_factory):
    gateway = gateway_factory(workers=2)
    assert httpx.get(gateway.url + "/readyz").status_code == 200

    def started() -> set[int]:
        return {int(p) for p in re.findall(WORKER_STARTED, gateway.log())}

    deadline = time.monotonic() + 30  # the second worker may log a moment after the first answers
    while len(started()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = started()
    tree = _children_of(gateway.process.pid)
    assert len(workers) == 2 and workers <= tree, gateway.log()
    assert gateway.stop() == 0
    assert _left_alive(tree) == []


@pytest.mark.django_db(transaction=True)
def test_serve_stops_on_ctrl_c_too(gateway_factory):
    import signal

    gateway = gateway_factory(embedded_worker=True)
    descendants = _children_of(gateway.process.pid)
    gateway.process.send_signal(signal.SIGINT)
    assert gateway.process.wait(timeout=30) == 0
    assert _left_alive(descendants) == []


@pytest.mark.django_db(transaction=True)
def test_the_banner_names_the_address_actually_bound(gateway_factory):
    gateway = gateway_factory()
    assert f"grok2api: serving on {gateway.url} (uvicorn, 1 worker)" in gateway.log()


def _serve_once(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    from django.conf import settings

    from grok2api.testing.fixtures import database_env, free_port

    child = {**os.environ, **database_env(), "DATA_DIR": str(tmp_path), "LOG_FILE_ENABLED": "false",
             "SECRET_KEY": settings.SECRET_KEY, "ADMIN_PASSWORD": "test-admin-password", **env}
    if "GROK_APP_API_KEY" not in env:
        child.pop("GROK_APP_API_KEY", None)
    if not child.get("DATABASE_URL"):
        child.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "manage.py", "serve", "--port", str(free_port()), "--no-worker", *args],
                          cwd=settings.BASE_DIR, env=child, capture_output=True, text=True, timeout=120)


@pytest.mark.django_db(transaction=True)
def test_it_refuses_an_open_api_on_a_non_loopback_address(tmp_path):
    done = _serve_once(tmp_path, "--host", "0.0.0.0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ALLOW_OPEN_API=true" in lines[0] and "0.0.0.0" in lines[0], done.stderr


def test_the_open_api_check_passes_on_loopback_with_a_key_or_with_the_opt_in(settings, monkeypatch):
    from django.core.management.base import CommandError

    from gateway import auth
    from grok2api.management.commands.serve import api_exposure_check

    monkeypatch.setattr(auth, "api_open", lambda: True)
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        api_exposure_check(host=host)
    for host in ("0.0.0.0", "::", "192.168.1.5", "gateway.example"):
        with pytest.raises(CommandError):
            api_exposure_check(host=host)
    settings.ALLOW_OPEN_API = True
    api_exposure_check(host="0.0.0.0")
    settings.ALLOW_OPEN_API = False
    monkeypatch.setattr(auth, "api_open", lambda: False)
    api_exposure_check(host="0.0.0.0")
