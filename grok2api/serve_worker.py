"""One uvicorn worker process on a listening socket it inherits (started by `manage.py serve`).

    python -m grok2api.serve_worker --fd N [--log-level info] [--access-log]

Serves `grok2api.asgi:application` over HTTP/1.1 (httptools) on uvloop, with the lifespan protocol
on and 10 s for open requests at SIGTERM/SIGINT: the contract of `serve`'s uvicorn command line,
without uvicorn's own multi-process supervisor. `serve` starts one of these per SERVER_WORKERS,
each on its own SO_REUSEPORT socket, so the kernel spreads new connections over the workers
(uvicorn's `--workers` shares one socket, and the worker that wakes first takes the whole accept
queue: 15 of 16 connections on one of two workers in docs/benchmarks.md, lane 2).
Exit code 3 when the application's start-up failed (as uvicorn's CLI).
"""
from __future__ import annotations

import argparse
import socket
import sys

STARTUP_FAILURE = 3
APP = "grok2api.asgi:application"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grok2api.serve_worker")
    ap.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--access-log", action="store_true")
    args = ap.parse_args(argv)

    import uvicorn

    # socket(fileno=...) reads family and type from the descriptor (uvicorn's own --fd assumes AF_UNIX,
    # and uvloop would then serve TCP connections as Unix ones).
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(
        APP, loop="uvloop", http="httptools", lifespan="on", timeout_graceful_shutdown=10,
        log_level=args.log_level, access_log=args.access_log,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
