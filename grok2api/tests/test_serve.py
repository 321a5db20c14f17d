"""`manage.py serve` on a real socket, under each ASGI server it can run (SERVER_IMPL): answers
/healthz, runs N workers, and SIGTERM / Ctrl-C stops every child process."""
from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from grok2api.envcheck import SERVER_IMPLS

# What each server logs per worker process it starts (the pid is the group).
WORKER_STARTED = {"uvicorn": r"Started server process \[(\d+)\]", "granian": r"Spawning worker-\d+ with PID: (\d+)"}
# What each server logs once it has stopped cleanly (uvicorn: after the lifespan shim answered shutdown).
LIFESPAN_SHUTDOWN = {"uvicorn": "Application shutdown complete", "granian": "Granian shutdown completed"}


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


def _group_members(pgids: set[int]) -> list[int]:
    """Live processes whose process group is one of `pgids` (serve starts each child in its own)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in pgids and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _wait_for(gateway, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in gateway.log():
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{gateway.log()}"
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", SERVER_IMPLS)
def test_serve_answers_on_a_real_socket_and_stops_every_child_on_sigterm(gateway_factory, server):
    gateway = gateway_factory({"SERVER_IMPL": server}, embedded_worker=True)
    assert f"({server}, 1 worker)" in gateway.log()
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["broker"]["ok"] is True

    pids = {name: int(pid) for name, pid in re.findall(r"(web|worker)=(\d+)", gateway.log())}
    assert set(pids) == {"web", "worker"}, gateway.log()
    _wait_for(gateway, "beat: Starting")  # the embedded beat is a grandchild: let it exist first
    descendants = _children_of(gateway.process.pid)
    assert set(pids.values()) <= descendants
    assert len(descendants) > 2  # Celery's pool / beat processes

    assert gateway.stop() == 0
    leftover = [pid for pid in descendants if _alive(pid)] + _group_members(set(pids.values()))
    assert leftover == [], gateway.log()
    assert LIFESPAN_SHUTDOWN[server] in gateway.log()
    # granian serves on without the lifespan when the app's lifespan raises; it says so in the log
    assert "Lifespan errored" not in gateway.log() and "lifespan startup failed" not in gateway.log()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", SERVER_IMPLS)
def test_serve_runs_several_workers(gateway_factory, server):
    gateway = gateway_factory({"SERVER_IMPL": server}, workers=2)
    assert httpx.get(gateway.url + "/readyz").status_code == 200

    def started() -> set[int]:
        return {int(p) for p in re.findall(WORKER_STARTED[server], gateway.log())}

    deadline = time.monotonic() + 30  # the second worker may log a moment after the first answers
    while len(started()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = started()
    tree = _children_of(gateway.process.pid)
    assert len(workers) == 2 and workers <= tree, gateway.log()  # supervisor -> server main -> 2 workers
    assert gateway.stop() == 0
    assert [pid for pid in tree if _alive(pid)] == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", SERVER_IMPLS)
def test_serve_stops_on_ctrl_c_too(gateway_factory, server):
    import signal

    gateway = gateway_factory(server=server)
    web = int(re.search(r"web=(\d+)", gateway.log()).group(1))
    gateway.process.send_signal(signal.SIGINT)
    assert gateway.process.wait(timeout=30) == 0
    assert not _alive(web) and _group_members({web}) == []


@pytest.mark.django_db(transaction=True)
def test_the_server_flag_overrides_server_impl(gateway_factory):
    gateway = gateway_factory({"SERVER_IMPL": "uvicorn"}, server="granian")
    assert "(granian, 1 worker)" in gateway.log() and "Starting granian" in gateway.log()
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_worker_malloc_pymalloc_leaves_the_environment_alone():
    from grok2api.management.commands.serve import worker_malloc_env

    assert worker_malloc_env("pymalloc", {"LD_PRELOAD": "x.so"}) == {}
    assert worker_malloc_env("malloc", {}) == {"PYTHONMALLOC": "malloc"}


def test_worker_malloc_auto_is_jemalloc_when_it_is_installed_else_pymalloc(monkeypatch):
    import ctypes.util

    from grok2api.management.commands import serve

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libjemalloc.so.2" if name == "jemalloc" else None)
    assert serve.worker_malloc_resolve("auto") == "jemalloc"
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert serve.worker_malloc_resolve("auto") == "pymalloc"
    assert serve.worker_malloc_resolve("malloc") == "malloc"


def test_worker_malloc_jemalloc_keeps_an_existing_preload_and_malloc_conf():
    import ctypes.util

    from grok2api.management.commands.serve import JEMALLOC_CONF, worker_malloc_env

    lib = ctypes.util.find_library("jemalloc")
    if not lib:
        pytest.skip("libjemalloc is not installed")
    env = worker_malloc_env("jemalloc", {"LD_PRELOAD": "libother.so"})
    assert env == {"PYTHONMALLOC": "malloc", "LD_PRELOAD": f"libother.so {lib}", "MALLOC_CONF": JEMALLOC_CONF}
    assert worker_malloc_env("jemalloc", {"MALLOC_CONF": "narenas:1"})["MALLOC_CONF"] == "narenas:1"


@pytest.mark.django_db(transaction=True)
def test_serve_starts_the_workers_with_the_allocator_of_worker_malloc(gateway_factory):
    import ctypes.util

    mode = "jemalloc" if ctypes.util.find_library("jemalloc") else "malloc"
    gateway = gateway_factory({"WORKER_MALLOC": mode})
    web = int(re.search(r"web=(\d+)", gateway.log()).group(1))
    assert httpx.get(gateway.url + "/healthz").status_code == 200
    assert _environ(web).get("PYTHONMALLOC") == "malloc"
    if mode == "jemalloc":
        assert "libjemalloc" in Path(f"/proc/{web}/maps").read_text()  # really loaded, not only named
    assert "PYTHONMALLOC" not in _environ(gateway.process.pid)  # only the web workers get it
    assert gateway.stop() == 0


def _established_per_pid(port: int, pids: list[int]) -> dict[int, int]:
    """Established TCP connections on local `port` held by each of `pids` (from /proc, no tools)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01 = ESTABLISHED
                inodes.add(fields[9])
    counts = {}
    for pid in pids:
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = fd.readlink().as_posix()
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts[pid] = held
    return counts


def test_listen_sockets_gives_each_worker_its_own_reuseport_socket_on_one_port():
    import socket

    from grok2api.management.commands.serve import listen_sockets

    sockets = listen_sockets("127.0.0.1", _free_port(), 3)
    try:
        assert len({s.fileno() for s in sockets}) == 3
        assert len({s.getsockname() for s in sockets}) == 1
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
    finally:
        for s in sockets:
            s.close()


def test_listen_sockets_shares_one_socket_without_reuseport(monkeypatch):
    from grok2api.management.commands import serve

    monkeypatch.setattr(serve.sys, "platform", "darwin")
    sockets = serve.listen_sockets("127.0.0.1", _free_port(), 2)
    try:
        assert sockets[0] is sockets[1]
    finally:
        sockets[0].close()


def test_listen_sockets_reports_a_port_in_use_as_a_command_error():
    import socket

    from django.core.management.base import CommandError

    from grok2api.management.commands.serve import listen_sockets

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(CommandError, match=r"cannot listen on 127\.0\.0\.1:\d+"):
            listen_sockets("127.0.0.1", taken.getsockname()[1], 2)
    finally:
        taken.close()


def test_listen_sockets_will_not_share_a_port_with_another_serve_of_several_workers():
    """SO_REUSEPORT on both sides would let a second serve split the first one's requests."""
    from django.core.management.base import CommandError

    from grok2api.management.commands.serve import listen_sockets

    first = listen_sockets("127.0.0.1", 0, 1)[0]
    port = first.getsockname()[1]
    first.close()
    first = listen_sockets("127.0.0.1", port, 2)  # what a running `serve --workers 2` holds
    try:
        with pytest.raises(CommandError, match=rf"cannot listen on 127\.0\.0\.1:{port}: .*another server is running"):
            listen_sockets("127.0.0.1", port, 2)
    finally:
        for sock in set(first):
            sock.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_uvicorn_workers_share_a_burst_of_new_connections(gateway_factory):
    """All connections opened at once: with one shared socket the first worker to wake accepted
    nearly all of them (15 of 16 measured); with a socket per worker the kernel spreads them."""
    import socket

    gateway = gateway_factory({"SERVER_IMPL": "uvicorn"}, workers=2)
    pids = [int(p) for p in re.findall(r"web=(\d+)", gateway.log())]
    assert len(pids) == 2, gateway.log()
    port = int(gateway.url.rsplit(":", 1)[1])
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
    try:
        for c in conns:  # one request each, so every connection is accepted and held by a worker
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for c in conns:
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
        counts = _established_per_pid(port, pids)
        assert sum(counts.values()) == 32, counts
        # binomial(32, 1/2): fewer than 4 on one side has probability ~2e-6
        assert min(counts.values()) >= 4, counts
    finally:
        for c in conns:
            c.close()
    assert gateway.stop() == 0


@pytest.mark.django_db(transaction=True)
def test_a_uvicorn_worker_that_dies_after_start_up_is_started_again(gateway_factory):
    import os
    import signal

    from grok2api.management.commands.serve import RESPAWN_MIN_UPTIME

    gateway = gateway_factory({"SERVER_IMPL": "uvicorn"}, workers=2)
    first, second = [int(p) for p in re.findall(r"web=(\d+)", gateway.log())]
    time.sleep(RESPAWN_MIN_UPTIME + 0.5)
    os.kill(first, signal.SIGKILL)
    _wait_for(gateway, "web-1 (pid %d) exited with code -9; starting it again" % first)
    deadline = time.monotonic() + 30
    while len(re.findall(WORKER_STARTED["uvicorn"], gateway.log())) < 3:
        assert time.monotonic() < deadline, gateway.log()
        time.sleep(0.1)
    for _ in range(8):  # both sockets answer again (the restarted worker took over its queue)
        assert httpx.get(gateway.url + "/healthz", headers={"Connection": "close"}).status_code == 200
    assert _alive(second) and gateway.process.poll() is None
    assert gateway.stop() == 0
