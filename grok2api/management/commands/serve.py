"""`manage.py serve`: the production entry point (`make run`, the Docker image). A launcher:

1. applies pending migrations, creates the first admin (`ensure_admin`), seeds the runtime config;
2. refuses to start an open API on a non-loopback address (`api_exposure_check`);
3. when no Redis broker is configured (zero-setup), starts `celery -A grok2api worker -B` with
   grok2api.schedule.ManagedScheduler (django-celery-beat's DatabaseScheduler keeping the managed
   rows) on the filesystem broker as a child process (`--no-worker` skips it; with Redis run `worker`
   and `beat` as their own services, or pass `--worker`);
4. runs uvicorn on SERVER_HOST:SERVER_PORT (`uvicorn_config`): one worker in this process, or with
   SERVER_WORKERS > 1 that many uvicorn workers under gunicorn, each on its own SO_REUSEPORT
   socket so that the kernel spreads the connections over them (grok2api/serveworkers.py says why).

SIGTERM / Ctrl-C: the server stops accepting at once, gives open streams SHUTDOWN_GRACE_SECONDS
(gateway/sse.py ends the ones still running with the family's error event), then serve stops
the Celery child (SIGTERM, then SIGKILL after STOP_GRACE_SECONDS). The Celery child also gets
SIGTERM if serve itself dies (Linux parent-death signal), and serve stops if that child exits.
"""
from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
from urllib.parse import urlparse

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from uvicorn import Server

from core.metrics import metrics_multiproc_setup

STOP_GRACE_SECONDS = 15.0
LISTEN_BACKLOG = 2048
APP = "grok2api.asgi:application"
METRICS_READY_ENV = "GROK2API_METRICS_DIR_READY"  # set by serve before it starts itself again (metrics_env_first)
# h11's cap on a request head still being received (a bigger one is answered 431 and the connection
# closed, grok2api/httpproto.py). httptools, uvicorn's other parser, has no cap: 64 header lines of 1 MB
# were accepted.
MAX_HEAD_BYTES = 64 * 1024


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def api_exposure_check(*, host: str) -> None:
    """Refuse to serve an open /v1 (no client key) on an address other machines can reach, unless
    ALLOW_OPEN_API says the operator means it: anyone who can connect would spend their accounts."""
    from gateway.auth import api_open

    if is_loopback(host) or settings.ALLOW_OPEN_API or not api_open():
        return
    raise CommandError(
        f"refusing to serve /v1 without an API key on {host}: set app.api_key (GROK_APP_API_KEY) or create an API key "
        "in the admin, bind 127.0.0.1, or set ALLOW_OPEN_API=true to serve it open", returncode=2)


def allowed_hosts_extend() -> list[str]:
    """Without an ALLOWED_HOSTS variable, Django answers the loopback names and the host of
    app.app_url (the public address clients use). app.app_url is runtime config, read here once:
    after changing it, restart serve (or set ALLOWED_HOSTS). The workers read the list from the
    environment, so it is put there too."""
    from core.config import config

    if os.environ.get("ALLOWED_HOSTS", "").strip():
        return settings.ALLOWED_HOSTS
    public = urlparse(config().get("app.app_url") or "").hostname
    hosts = list(settings.ALLOWED_HOSTS)
    if public:
        public = f"[{public}]" if ":" in public else public
        if public not in hosts:
            hosts.append(public)
    settings.ALLOWED_HOSTS = hosts
    os.environ["ALLOWED_HOSTS"] = ",".join(hosts)
    return hosts


def uvicorn_config(*, host: str, port: int, workers: int, level: str):
    """The uvicorn configuration `serve` runs (docs/deployment in README: why each value)."""
    import uvicorn

    from grok2api.httpproto import HeadTimeoutH11Protocol

    return uvicorn.Config(
        APP, host=host, port=port, workers=workers,
        loop="uvloop",
        # h11 caps a head's size; our subclass adds the deadline uvicorn lacks (grok2api/httpproto.py)
        http=HeadTimeoutH11Protocol, h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        lifespan="on",  # start-up warms the snapshots; a failing warm-up stops the server
        # Each request task starts from an empty context. Without it asyncio can hand one request's
        # context variables to the next (cpython issue 140947): asgiref's record of a finished
        # sync-to-async bridge then reached a later request, whose first sync call failed with
        # "CurrentThreadExecutor already quit or is broken".
        reset_contextvars=True,
        limit_concurrency=settings.SERVER_MAX_CONNECTIONS,
        timeout_keep_alive=5,
        # uvicorn cancels what is left a moment after the streams were ended at the grace
        timeout_graceful_shutdown=settings.SHUTDOWN_GRACE_SECONDS + 2,
        log_level=level.lower(), access_log=level == "DEBUG",
    )


def listen_socket(*, host: str, port: int) -> socket.socket:
    """The listening socket uvicorn serves on, opened here so that connections made while the workers
    warm up wait in the backlog instead of being refused, and a busy port is one line."""
    try:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        sock = socket.create_server((host.strip("[]"), port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        busy = " (another server is running there: stop it, or pass --port)" if exc.errno == errno.EADDRINUSE else ""
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{busy}", returncode=1) from None
    sock.set_inheritable(True)  # uvicorn's worker processes take it over
    return sock


class Command(BaseCommand):
    help = "Migrate, create the first admin, seed the config, then run uvicorn (+ an embedded Celery worker)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=None, help="bind address (default SERVER_HOST)")
        parser.add_argument("--port", type=int, default=None, help="port (default SERVER_PORT)")
        parser.add_argument("--workers", type=int, default=None, help="server worker processes (default SERVER_WORKERS)")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--no-worker", action="store_true", help="do not start the embedded Celery worker")
        group.add_argument("--worker", action="store_true", help="start the embedded Celery worker even with a Redis broker")

    def handle(self, *args, **opts) -> None:
        self.metrics_env_first()
        host = opts["host"] or settings.SERVER_HOST
        port = opts["port"] if opts["port"] is not None else settings.SERVER_PORT
        workers = opts["workers"] if opts["workers"] is not None else settings.SERVER_WORKERS
        if not 1 <= port <= 65535:
            raise CommandError(f"--port: expected 1-65535, got {port}", returncode=2)
        if not 1 <= workers <= 64:
            raise CommandError(f"--workers: expected 1-64, got {workers}", returncode=2)
        self.prepare(verbosity=opts["verbosity"])
        api_exposure_check(host=host)
        allowed_hosts_extend()
        connections.close_all()
        embedded = opts["worker"] or (not opts["no_worker"] and settings.CELERY_BROKER_URL.startswith("filesystem"))
        sys.exit(self.run(host=host, port=port, workers=workers, embedded_worker=embedded))

    def metrics_env_first(self) -> None:
        """prometheus-client chooses between in-process values and per-process files once, when it
        is first imported, from PROMETHEUS_MULTIPROC_DIR; Django's start-up has imported it by now.
        So with /metrics enabled, serve empties DATA_DIR/metrics, sets the variable and starts itself
        again (exec, same pid and arguments): the server — this process with one worker, gunicorn's
        forked workers with several — then writes the files /metrics adds up."""
        if not settings.METRICS_TOKEN or os.environ.get(METRICS_READY_ENV):
            return
        path = metrics_multiproc_setup()
        os.environ[METRICS_READY_ENV] = str(path)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

    def prepare(self, *, verbosity: int) -> None:
        from core.config import config_seed
        from grok2api.bootstrap import admin_ensure

        call_command("migrate", interactive=False, verbosity=max(0, verbosity - 1))
        admin_ensure()
        if config_seed():
            self.stdout.write("grok2api: runtime config seeded from config.defaults.toml")
        connections.close_all()  # the server opens its own

    def run(self, *, host: str, port: int, workers: int, embedded_worker: bool) -> int:
        level = settings.LOGGING["root"]["level"]
        config = uvicorn_config(host=host, port=port, workers=workers, level=level)
        sock = listen_socket(host=host, port=port)
        celery = self.celery_start(level) if embedded_worker else None
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.stdout.write(
            f"grok2api: serving on http://{shown}:{bound_port} (uvicorn, {workers} worker{'s' if workers > 1 else ''}"
            + (" under gunicorn)" if workers > 1 else ")")
            + (f", embedded Celery worker + beat (pid {celery.pid})" if celery else "")
            + f"; admin at http://{shown}:{bound_port}/admin/"
        )
        self.stdout.flush()
        # uvicorn puts back the handlers it found and re-raises the signal it stopped on: these
        # make that a no-op, so the Celery child is stopped below instead of serve dying at once.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        signal.signal(signal.SIGINT, lambda signum, frame: None)
        stopping = threading.Event()
        if celery is not None:
            threading.Thread(target=self._watch, args=(celery, stopping), daemon=True, name="celery-watch").start()
        self.celery_died = False
        try:
            if workers > 1:
                # gunicorn's workers bind their own sockets: this one only checked that the port is free
                # (and chose it for --port 0), so it is closed before they start
                sock.close()
                code = self._run_workers(host=host, port=bound_port, workers=workers, level=level)
            else:
                server = Server(config)
                server.run(sockets=[sock])
                code = 0 if server.started else 3  # 3: start-up failed, as uvicorn's CLI
        finally:
            stopping.set()
            sock.close()
            if celery is not None:
                self.celery_stop(celery)
        return 1 if self.celery_died else code

    def _run_workers(self, *, host: str, port: int, workers: int, level: str) -> int:
        from grok2api.serveworkers import ServeApplication

        app = ServeApplication(host=host, port=port, workers=workers, level=level,
                               graceful_seconds=settings.SHUTDOWN_GRACE_SECONDS + 2, backlog=LISTEN_BACKLOG)
        try:
            app.run()
        except SystemExit as stop:  # gunicorn's master leaves through sys.exit
            return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        return 0

    def celery_start(self, level: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "grok2api", "worker", "-B",
             "--scheduler", "grok2api.schedule:ManagedScheduler", "--loglevel", level, "-n", "embedded@%h"],
            cwd=settings.BASE_DIR, preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C reaches serve only; serve stops Celery after the server
        )

    def _watch(self, celery: subprocess.Popen, stopping: threading.Event) -> None:
        code = celery.wait()
        if not stopping.is_set():
            self.celery_died = True
            self.stderr.write(f"grok2api: the embedded Celery worker exited with code {code}; stopping")
            os.kill(os.getpid(), signal.SIGTERM)  # the server stops as on Ctrl-C

    def celery_stop(self, celery: subprocess.Popen) -> int:
        if celery.poll() is None:
            celery.send_signal(signal.SIGTERM)  # warm shutdown: its pool and beat stop with it
            try:
                celery.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.stderr.write(f"grok2api: Celery did not stop within {STOP_GRACE_SECONDS:.0f}s; killing it")
                celery.kill()
                celery.wait()
        return celery.returncode
