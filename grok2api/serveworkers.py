"""Several uvicorn workers under gunicorn, each on its own listening socket (`SERVER_WORKERS` > 1).

Why not uvicorn's own `--workers`: its supervisor binds one socket and every worker waits on it,
and the worker that wakes first takes all the connections queued at that moment. Measured with
`python -m bench.profile --no-spy --workers 2 --concurrency 16 --pace 0.0277` (docs/benchmarks.md):
one worker held every connection (CPU 0.00 / 0.99 cores) while the machine had a core to spare,
so a second worker added nothing. gunicorn's `reuse_port` has each worker bind its own
`SO_REUSEPORT` socket after it starts, and the kernel spreads new connections over the workers'
sockets; a worker that dies takes its socket with it, so no connection waits on a socket nobody
serves, and gunicorn starts a new one.

The server stays uvicorn: `ServeWorker` is uvicorn-worker's `UvicornWorker` (by uvicorn's
maintainers) with the settings `serve` gives uvicorn when it runs alone (`uvicorn_kwargs`: the h11
protocol with the head deadline, the head cap, lifespan, fresh context variables per request, the
concurrency limit, keep-alive and graceful shutdown timeouts), so one worker behaves the same
under either launcher.

Stopping: SIGTERM and Ctrl-C (SIGINT) both stop gracefully — gunicorn sends SIGTERM to the
workers, each closes its socket at once (new connections are refused), its open streams get
SHUTDOWN_GRACE_SECONDS (grok2api/asgi.py), and gunicorn kills what is left after
`graceful_timeout`. (gunicorn's own SIGINT is a quick shutdown; `serve` documents one behaviour.)
"""
from __future__ import annotations

import math
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from uvicorn_worker import UvicornWorker


def uvicorn_kwargs() -> dict[str, Any]:
    """The uvicorn settings of `serve` (grok2api/management/commands/serve.py), without the address
    and the worker count, which gunicorn owns here."""
    from django.conf import settings

    from grok2api.management.commands.serve import uvicorn_config

    config = uvicorn_config(host="127.0.0.1", port=0, workers=1, level=settings.LOGGING["root"]["level"])
    names = ("loop", "http", "h11_max_incomplete_event_size", "lifespan", "reset_contextvars", "limit_concurrency",
             "timeout_keep_alive", "timeout_graceful_shutdown", "log_level", "access_log")
    return {name: getattr(config, name) for name in names}


class ServeWorker(UvicornWorker):
    """uvicorn in a gunicorn worker process, configured like `serve`'s single uvicorn."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.CONFIG_KWARGS = uvicorn_kwargs()  # read by UvicornWorker.__init__
        super().__init__(*args, **kwargs)


class GracefulArbiter(Arbiter):
    """gunicorn's master, with Ctrl-C stopping as gracefully as SIGTERM does."""

    def handle_int(self) -> None:
        self.handle_term()


class ServeApplication(BaseApplication):
    """The gunicorn application `serve` runs: its settings come from here, never from a
    gunicorn.conf.py or GUNICORN_CMD_ARGS in the environment."""

    def __init__(self, *, host: str, port: int, workers: int, level: str, graceful_seconds: float,
                 backlog: int) -> None:
        self.options = {
            "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
            "workers": workers,
            "worker_class": f"{ServeWorker.__module__}.{ServeWorker.__qualname__}",
            "reuse_port": True,
            "graceful_timeout": math.ceil(graceful_seconds),
            "backlog": backlog,
            "loglevel": level.lower(),
            "accesslog": None,
            "proc_name": "grok2api",
            "control_socket_disable": True,  # no runtime control socket: serve is restarted, not steered
        }
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self):
        from grok2api.asgi import application

        return application

    def run(self) -> None:
        GracefulArbiter(self).run()
