"""Run the simulator's ASGI app under uvicorn on a real socket, in a background thread or in the foreground.

``SimServer(sim).start()`` binds ``host:port`` (port 0 = a free port), sets the simulator's advertised URL
to the bound address and serves until ``stop()``. ``url`` is ``http://127.0.0.1:PORT``; ``foreign_url`` is
the same port under the host name ``localhost`` (a different origin for credential-scope tests).
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import uvicorn

from .asgi import SimDropped, create_app
from .core import Simulator


class _DropFilter(logging.Filter):
    """Simulated drops are deliberate: keep them out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimDropped)


def _install_filter() -> None:
    for name in ("uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropFilter) for f in logger.filters):
            logger.addFilter(_DropFilter())


def uvicorn_config(sim: Simulator, *, log_level: str = "warning", **kwargs) -> uvicorn.Config:
    _install_filter()
    return uvicorn.Config(create_app(sim), log_level=log_level, lifespan="off", access_log=False,
                          ws_ping_interval=None, timeout_keep_alive=30, **kwargs)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket with TCP_NODELAY, which accepted sockets inherit on Linux: without it the
    event loop's transports leave Nagle on and every second small write of a response waits for the
    client's delayed ACK (~40 ms per streamed line)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class SimServer:
    def __init__(self, sim: Simulator, *, host: str = "127.0.0.1", port: int = 0, set_advertised: bool = True) -> None:
        self.sim = sim
        self.host = host
        self._sock = bind_socket(host, port)
        self.port = self._sock.getsockname()[1]
        if set_advertised:
            sim.configure(advertised_url=self.url)
        self._server = uvicorn.Server(uvicorn_config(sim))
        self._thread: threading.Thread | None = None

    # -- addresses
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def foreign_url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def upstream_env(self) -> dict[str, str]:
        """GROK_UPSTREAM_* values pointing every upstream role at this server."""
        return {
            "GROK_UPSTREAM_WEB_BASE_URL": self.url,
            "GROK_UPSTREAM_ASSETS_BASE_URL": self.url,
            "GROK_UPSTREAM_WS_BASE_URL": self.ws_url,
            "GROK_UPSTREAM_IMAGINE_PUBLIC_BASE_URL": self.sim.advertised_url,
            "GROK_UPSTREAM_LIVEKIT_URL": self.sim.livekit_url(),
        }

    def reset(self, **knobs) -> Simulator:
        """Fresh simulator state (advertised URL kept); optional knobs applied after the reset."""
        self.sim.reset()
        if knobs:
            self.sim.configure(**knobs)
        return self.sim

    # -- lifecycle
    def start(self, timeout: float = 10.0) -> "SimServer":
        self._thread = threading.Thread(target=self._run, name=f"grok-sim-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("simulator server did not start")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._sock]))
        finally:
            loop.close()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
