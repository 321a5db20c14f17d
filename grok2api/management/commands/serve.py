"""`manage.py serve`: the production entry point (`make run`, the Docker image).

1. applies pending migrations, creates the first admin (`ensure_admin`), seeds the runtime config;
2. starts the ASGI server SERVER_IMPL (`--server`): uvicorn (the default) or granian, both serving
   `grok2api.asgi:application` on SERVER_HOST:SERVER_PORT with SERVER_WORKERS worker processes,
   uvloop, HTTP/1.1, the lifespan protocol on (startup warms the snapshots), access log only at
   LOG_LEVEL=DEBUG, 10 s for open requests to finish at stop; the workers get the C allocator
   WORKER_MALLOC chose for them (`worker_malloc_env`). uvicorn runs as one process per worker
   (grok2api/serve_worker.py), each on its own SO_REUSEPORT listening socket opened here
   (`listen_sockets`), so the kernel spreads connections evenly; a worker that dies after running
   RESPAWN_MIN_UPTIME is started again on its socket;
3. when no Redis broker is configured (zero-setup), also starts `celery -A grok2api worker -B`
   with grok2api.schedule.ManagedScheduler (django-celery-beat's DatabaseScheduler keeping the
   managed rows) on the filesystem broker (`--no-worker` skips
   it; with Redis, run `worker` and `beat` as their own services, or pass `--worker`).

SIGINT (Ctrl-C) or SIGTERM stops every child: SIGTERM to each, a grace period, then SIGKILL;
then whatever is left in each child's process group (Celery's pool and embedded beat, the server's
workers) is terminated too. If a child exits on its own, the others are stopped and serve exits
with a non-zero code, except a uvicorn worker that had run RESPAWN_MIN_UPTIME: that one is restarted. Children also get SIGTERM if serve itself dies (Linux parent-death signal).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from grok2api.envcheck import SERVER_IMPLS
from grok2api.metrics import metrics_multiproc_setup

STOP_GRACE_SECONDS = 15.0
# A uvicorn worker that exits sooner than this after its start is not restarted: its start-up is
# failing (bad settings, a database that is down), and serve stops with it instead of looping.
RESPAWN_MIN_UPTIME = 10.0
LISTEN_BACKLOG = 2048  # uvicorn's default

# jemalloc for the workers (WORKER_MALLOC=jemalloc): dirty pages go back to the OS after 1 s instead
# of 10 s, without the MADV_FREE stage that leaves them counted in RSS (docs/benchmarks.md, lane 5).
JEMALLOC_CONF = "dirty_decay_ms:1000,muzzy_decay_ms:0"


def worker_malloc_resolve(mode: str) -> str:
    """The allocator WORKER_MALLOC names; `auto` (the default) is jemalloc when libjemalloc is installed
    (the Docker image has it), else pymalloc."""
    if mode == "auto":
        return "jemalloc" if ctypes.util.find_library("jemalloc") else "pymalloc"
    return mode


def worker_malloc_env(mode: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the server workers' allocator (WORKER_MALLOC; grok2api/memory.py says why).

    pymalloc: CPython's default (after a burst the RSS stays at the burst's high-water mark);
    malloc: PYTHONMALLOC=malloc, glibc for every object, so the idle release's malloc_trim returns
    the burst's pages (+7 to +15 % CPU per request); jemalloc: PYTHONMALLOC=malloc with libjemalloc
    preloaded (Debian: apt-get install libjemalloc2), which returns them by itself at pymalloc's
    speed. An existing MALLOC_CONF or LD_PRELOAD is kept. `mode` is already resolved (not `auto`).
    """
    environ = os.environ if environ is None else environ
    if mode == "pymalloc":
        return {}
    if mode == "malloc":
        return {"PYTHONMALLOC": "malloc"}
    if mode == "jemalloc":
        lib = ctypes.util.find_library("jemalloc")
        if not lib:
            raise CommandError("WORKER_MALLOC=jemalloc: libjemalloc is not installed (Debian/Ubuntu: apt-get install "
                               "libjemalloc2)", returncode=2)
        preload = " ".join(p for p in (environ.get("LD_PRELOAD", "").strip(), lib) if p)
        return {"PYTHONMALLOC": "malloc", "LD_PRELOAD": preload, "MALLOC_CONF": environ.get("MALLOC_CONF") or JEMALLOC_CONF}
    raise CommandError(f"WORKER_MALLOC: expected auto, pymalloc, malloc or jemalloc, got {mode!r}", returncode=2)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: Ctrl-C still reaches the whole process group


class Command(BaseCommand):
    help = ("Migrate, create the first admin, seed the config, then run uvicorn or granian "
            "(+ an embedded Celery worker on the filesystem broker).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=None, help="bind address (default SERVER_HOST)")
        parser.add_argument("--port", type=int, default=None, help="port (default SERVER_PORT)")
        parser.add_argument("--workers", type=int, default=None, help="server worker processes (default SERVER_WORKERS)")
        parser.add_argument("--server", choices=SERVER_IMPLS, default=None, help="ASGI server (default SERVER_IMPL)")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--no-worker", action="store_true", help="do not start the embedded Celery worker")
        group.add_argument("--worker", action="store_true", help="start the embedded Celery worker even with a Redis broker")

    def handle(self, *args, **opts) -> None:
        host = opts["host"] or settings.SERVER_HOST
        port = opts["port"] if opts["port"] is not None else settings.SERVER_PORT
        workers = opts["workers"] if opts["workers"] is not None else settings.SERVER_WORKERS
        server = opts["server"] or settings.SERVER_IMPL
        if not 1 <= port <= 65535:
            raise CommandError(f"--port: expected 1-65535, got {port}", returncode=2)
        if not 1 <= workers <= 64:
            raise CommandError(f"--workers: expected 1-64, got {workers}", returncode=2)

        malloc = worker_malloc_resolve(settings.WORKER_MALLOC)
        web_env = worker_malloc_env(malloc)
        if settings.WORKER_MALLOC == "auto":
            hint = "" if malloc == "jemalloc" else " (libjemalloc not found: RSS stays at the peak after bursts; apt-get install libjemalloc2)"
            self.stdout.write(f"grok2api: worker allocator {malloc} (WORKER_MALLOC=auto){hint}")
        self.prepare(verbosity=opts["verbosity"])
        embedded = opts["worker"] or (not opts["no_worker"] and settings.CELERY_BROKER_URL.startswith("filesystem"))
        sys.exit(self.supervise(host=host, port=port, workers=workers, embedded_worker=embedded, server=server,
                                web_env=web_env))

    def prepare(self, *, verbosity: int) -> None:
        from accounts.config import config_seed
        from grok2api.bootstrap import admin_ensure

        call_command("migrate", interactive=False, verbosity=max(0, verbosity - 1))
        admin_ensure()
        if config_seed():
            self.stdout.write("grok2api: runtime config seeded from config.defaults.toml")
        connections.close_all()  # the children open their own
        metrics_multiproc_setup()  # before any child starts: they all count into DATA_DIR/metrics

    def supervise(self, *, host: str, port: int, workers: int, embedded_worker: bool, server: str = SERVER_IMPLS[0],
                  web_env: dict[str, str] | None = None) -> int:
        level = logging_level()
        sockets: list[socket.socket] = []
        # name -> (argv, fds to pass, environment overrides)
        commands: dict[str, tuple[list[str], tuple[int, ...], dict[str, str]]] = {}
        if server == "uvicorn":
            sockets = listen_sockets(host, port, workers)
            for i, sock in enumerate(sockets, 1):
                commands[f"web-{i}"] = (uvicorn_worker_argv(fd=sock.fileno(), level=level), (sock.fileno(),), web_env or {})
        else:
            commands["web"] = (server_argv(server, host=host, port=port, workers=workers, level=level), (), web_env or {})
        if embedded_worker:
            commands["worker"] = ([
                sys.executable, "-m", "celery", "-A", "grok2api", "worker", "-B",
                "--scheduler", "grok2api.schedule:ManagedScheduler",
                "--loglevel", level, "-n", "embedded@%h",
            ], (), {})
        stop_requested: list[int] = []

        def on_signal(signum, frame) -> None:
            stop_requested.append(signum)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        def spawn(name: str) -> subprocess.Popen:
            argv, fds, overrides = commands[name]
            # Own process group per child: at stop, whatever it forked (Celery's pool and embedded
            # beat, granian's workers) can be swept even if the child exits without reaping it.
            env = {**os.environ, **overrides} if overrides else None
            return subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, pass_fds=fds, preexec_fn=_die_with_parent,
                                    start_new_session=True)

        children: dict[str, subprocess.Popen] = {}
        started: dict[str, float] = {}
        for name in commands:
            children[name] = spawn(name)
            started[name] = time.monotonic()
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.stdout.write(
            f"grok2api: serving on http://{shown}:{port} ({server}, {workers} worker{'s' if workers > 1 else ''})"
            + (", embedded Celery worker + beat" if embedded_worker else "")
            + f"; admin at http://{shown}:{port}/admin/  pids: "
            + ", ".join(f"{n.split('-')[0]}={p.pid}" for n, p in children.items())
        )
        self.stdout.flush()

        exit_code = 0
        try:
            while not stop_requested:
                for name, child in children.items():
                    code = child.poll()
                    if code is None:
                        continue
                    if name.startswith("web-") and time.monotonic() - started[name] >= RESPAWN_MIN_UPTIME:
                        self.stderr.write(f"grok2api: {name} (pid {child.pid}) exited with code {code}; starting it again")
                        _sweep_group(child.pid)
                        children[name] = spawn(name)
                        started[name] = time.monotonic()
                        continue
                    self.stderr.write(f"grok2api: {name} exited with code {code}; stopping")
                    exit_code = code or 1
                    break
                else:
                    time.sleep(0.2)
                    continue
                break
            self.stop(children)
        finally:
            for sock in sockets:
                sock.close()
        return exit_code

    def stop(self, children: dict[str, subprocess.Popen]) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, child in children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"grok2api: {name} did not stop within {STOP_GRACE_SECONDS:.0f}s; killing it")
                child.kill()
                child.wait()
        for name, child in children.items():
            _sweep_group(child.pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _sweep_group(pgid: int, grace: float = 3.0) -> None:
    """Terminate what is left in a child's process group (e.g. an embedded beat process that
    outlived its worker), SIGKILL after `grace` seconds."""
    if not _group_alive(pgid):
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def listen_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """Listening sockets on host:port for `count` uvicorn workers, by position.

    On Linux each worker gets its own socket with SO_REUSEPORT: the kernel picks the socket of each
    new connection by its address hash, so connections spread evenly over the workers. Elsewhere (no
    SO_REUSEPORT, or one that does not balance) one socket is shared by all, as uvicorn's --workers
    does. The sockets stay open here, so a restarted worker takes over its socket's queue.
    """
    reuse_port = count > 1 and sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise CommandError(f"--host: cannot resolve {host!r} ({exc})", returncode=2) from None
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if reuse_port else 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", returncode=1) from None
    return sockets if reuse_port else sockets * count


def uvicorn_worker_argv(*, fd: int, level: str) -> list[str]:
    """One uvicorn worker on the inherited socket `fd` (grok2api/serve_worker.py)."""
    return [sys.executable, "-m", "grok2api.serve_worker", "--fd", str(fd), "--log-level", level.lower(),
            *(["--access-log"] if level == "DEBUG" else [])]


def server_argv(server: str, *, host: str, port: int, workers: int, level: str) -> list[str]:
    """The web child's command line for a server that runs its own workers (granian), with the
    contract uvicorn_worker_argv also keeps: the lifespan protocol on (start-up warms the snapshots;
    `lifespan.startup.failed` stops the server, and `serve` with it), uvloop, HTTP/1.1 only, access
    log at DEBUG only, 10 s for open requests at stop (serve's own grace is 15 s)."""
    app = "grok2api.asgi:application"
    access = level == "DEBUG"
    if server == "granian":
        # `asgi` (not `asginl`) is the interface with lifespan. HTTP/2 stays off: over h2 a body has
        # no Transfer-Encoding header, and grok2api.asgi caps unsized bodies by that header.
        return [
            sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--http", "1",
            "--host", host, "--port", str(port), "--workers", str(workers),
            "--workers-kill-timeout", "10",
            "--log-level", level.lower(), "--access-log" if access else "--no-access-log",
            app,
        ]
    raise CommandError(f"--server: expected one of {', '.join(SERVER_IMPLS)}, got {server!r}", returncode=2)


def logging_level() -> str:
    return settings.LOGGING["root"]["level"]
