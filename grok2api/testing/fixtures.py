"""Pytest fixtures for the gateway under test: a real `manage.py serve` process on a real socket.

`gateway_factory(env=None, *, workers=1, embedded_worker=False) -> Gateway` starts
`manage.py serve --no-worker` (or with the embedded Celery worker) on a free loopback port, on
the SAME database as the pytest test database (SQLite: ACCOUNT_LOCAL_PATH=<test db file>;
PostgreSQL/MySQL: DATABASE_URL naming the test database), with the test process's SECRET_KEY
(so encrypted tokens written by the test decrypt in the server), a private DATA_DIR,
SNAPSHOT_POLLER=1 and SNAPSHOT_POLL_INTERVAL=0.2 (rows a test writes are seen within ~0.2 s),
and waits for GET /healthz. Tests that use it need `@pytest.mark.django_db(transaction=True)`
(rows must be committed for the server to see them); the factory requests `transactional_db`
itself. Every gateway started is stopped at teardown.

`gateway_server` (session scope) is one such gateway with GROK_APP_API_KEY=sk-test-gateway and,
when the `simulator_server` fixture exists, the simulator's `upstream_env()` (GROK_UPSTREAM_*
pointing at it).

`Gateway`: `.url` ("http://127.0.0.1:PORT"), `.env` (the extra environment given to it, incl.
the database variables), `.api_key` (GROK_APP_API_KEY or None), `.process`, `.log_path`,
`.data_dir`, `.log()` (the server's stdout+stderr so far), `.stop(timeout=20) -> int` (SIGTERM,
wait, SIGKILL if needed; returns the exit code). When a test that used a gateway fails, the tail
of its log is attached to the report ("gateway log" section).

On PostgreSQL the flush after a transactional test is retried when it loses a deadlock against
a running gateway's background writes.

Autouse: every test starts with all in-memory snapshots marked stale (a snapshot loaded inside
a previous test's rolled-back transaction must not leak into the next test).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

BASE_DIR = Path(__file__).resolve().parent.parent.parent
TEST_GATEWAY_KEY = "sk-test-gateway"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_env() -> dict[str, str]:
    """Environment that points a child process at the database this test process uses."""
    from django.db import connection

    cfg = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"ACCOUNT_STORAGE": "local", "ACCOUNT_LOCAL_PATH": str(cfg["NAME"]), "DATABASE_URL": ""}
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    user = quote(cfg.get("USER") or "", safe="")
    password = quote(cfg.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = cfg.get("HOST") or "localhost"
    port = f":{cfg['PORT']}" if cfg.get("PORT") else ""
    return {"ACCOUNT_STORAGE": "local", "DATABASE_URL": f"{scheme}://{auth}{host}{port}/{quote(cfg['NAME'], safe='')}"}


@dataclass
class Gateway:
    url: str
    env: dict[str, str]
    process: subprocess.Popen
    log_path: Path
    data_dir: Path
    api_key: str | None = None
    _stopped: int | None = field(default=None, repr=False)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int:
        if self._stopped is not None:
            return self._stopped
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stopped = self.process.returncode
        return self._stopped


class GatewayFactory:
    def __init__(self, tmp_root: Path) -> None:
        self.tmp_root = tmp_root
        self.started: list[Gateway] = []

    def __call__(self, env: dict[str, str] | None = None, *, workers: int = 1, embedded_worker: bool = False) -> Gateway:
        from django.conf import settings

        port = free_port()
        data_dir = Path(tempfile.mkdtemp(prefix="gateway-", dir=self.tmp_root))
        extra = {
            **database_env(),
            "DATA_DIR": str(data_dir),
            "LOG_DIR": str(data_dir / "logs"),
            "LOG_FILE_ENABLED": "false",
            "SECRET_KEY": settings.SECRET_KEY,
            "SNAPSHOT_POLLER": "1",
            "SNAPSHOT_POLL_INTERVAL": "0.2",
            "ADMIN_USERNAME": "admin",
            "ADMIN_PASSWORD": "test-admin-password",
            **({"GROK2API_ENCRYPTION_KEY": settings.ENCRYPTION_KEY} if settings.ENCRYPTION_KEY else {}),
            **(env or {}),
        }
        child_env = {**os.environ, **extra}
        child_env.pop("PYTEST_CURRENT_TEST", None)
        if not child_env.get("DATABASE_URL"):
            child_env.pop("DATABASE_URL", None)
        log_path = data_dir / "serve.log"
        argv = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                "--worker" if embedded_worker else "--no-worker"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, cwd=BASE_DIR, env=child_env, stdout=log, stderr=subprocess.STDOUT)
        gateway = Gateway(url=f"http://127.0.0.1:{port}", env=extra, process=process, log_path=log_path,
                          data_dir=data_dir, api_key=extra.get("GROK_APP_API_KEY"))
        self.started.append(gateway)
        self._wait_ready(gateway)
        return gateway

    @staticmethod
    def _wait_ready(gateway: Gateway) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if gateway.process.poll() is not None:
                pytest.fail(f"manage.py serve exited with {gateway.process.returncode} before answering /healthz; log:\n{gateway.log()}")
            try:
                if httpx.get(gateway.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        gateway.stop()
        pytest.fail(f"manage.py serve did not answer /healthz within {START_TIMEOUT:.0f}s; log:\n{gateway.log()}")

    def stop_all(self) -> None:
        for gateway in self.started:
            gateway.stop()


def _flush_retrying_deadlocks() -> None:
    """pytest-django empties the database after a transactional test with TRUNCATE. A running
    gateway (session-scoped `gateway_server`) may be writing batched usage/account rows at that
    moment; on PostgreSQL the two can deadlock and the database aborts one of them. When the
    TRUNCATE is the victim, try again instead of failing the next test with leftover rows."""
    from django.db import OperationalError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown
    if getattr(original, "_retries_deadlocks", False):
        return

    def teardown(self):
        for attempt in range(5):
            try:
                return original(self)
            except Exception as exc:  # CommandError wrapping OperationalError("deadlock detected")
                cause = exc.__cause__ or exc.__context__
                if attempt == 4 or not isinstance(cause, OperationalError) or "deadlock" not in str(cause):
                    raise
                time.sleep(0.2)

    teardown._retries_deadlocks = True
    TransactionTestCase._fixture_teardown = teardown


def pytest_configure(config) -> None:
    _flush_retrying_deadlocks()


@pytest.fixture(autouse=True)
def _fresh_snapshots():
    """In-memory snapshots outlive a test's rolled-back transaction: start every test stale."""
    from core.snapshots import _registry

    for snap in list(_registry.values()):
        snap.invalidate()
    yield


def _remember(request, factory: GatewayFactory) -> None:
    request.node.__dict__.setdefault("_gateway_factories", []).append(factory)


@pytest.fixture
def gateway_factory(request, transactional_db, tmp_path):
    factory = GatewayFactory(tmp_path)
    _remember(request, factory)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def gateway_server(request, django_db_setup, tmp_path_factory):
    env = {"GROK_APP_API_KEY": TEST_GATEWAY_KEY}
    try:
        simulator = request.getfixturevalue("simulator_server")
    except pytest.FixtureLookupError:
        simulator = None
    if simulator is not None and hasattr(simulator, "upstream_env"):
        env.update(simulator.upstream_env())
    factory = GatewayFactory(tmp_path_factory.mktemp("gateway-server"))
    gateway = factory(env)
    yield gateway
    factory.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    gateways = [g for f in item.__dict__.get("_gateway_factories", []) for g in f.started]
    if "gateway_server" in getattr(item, "funcargs", {}):
        gateways.append(item.funcargs["gateway_server"])
    for gateway in {id(g): g for g in gateways}.values():
        tail = gateway.log()[-8000:]
        report.sections.append((f"gateway log ({gateway.url})", tail))


@pytest.fixture
def set_config(monkeypatch):
    """Override runtime config keys in this process through their GROK_* environment variables.

    `set_config(chat__timeout=5)` or `set_config(**{"chat.timeout": 5})`; undone after the test.
    """
    from core.config import config_snapshot, env_name

    def apply(**values):
        for key, value in values.items():
            monkeypatch.setenv(env_name(key.replace("__", ".")), str(value))
        config_snapshot().invalidate()

    yield apply
    config_snapshot().invalidate()
