"""Helpers for the /v1 end-to-end tests: the real `serve` process (gateway_server) talking to the
simulator on a real socket (simulator_server), driven with the official SDKs.

Each test creates its own accounts (unique sim tokens, so simulator quotas never leak between
tests) and its own API key in the test database; the server process sees them through its
snapshot poller, so `ready()` waits (bounded) until the server lists the model.
"""
from __future__ import annotations

import os
import secrets
import time
import uuid

import anthropic
import httpx
import openai
import pytest
from django.db import transaction

from accounts.models import Account
from gateway.models import ApiKey
from core.crypto import hash_api_key
from core.snapshots import stamp_bump

# Servers started by the gateway fixtures inherit this: usage rows land ~0.1 s after a request
# instead of ~1 s, so they are written while the test still runs, not during the next test's
# table flush (which on PostgreSQL can deadlock with a concurrent insert).
os.environ.setdefault("USAGE_FLUSH_INTERVAL", "0.1")


def bump(name: str) -> None:
    """stamp_bump with a version no earlier test can have used.

    Transactional tests truncate VersionStamp between tests, so plain stamp_bump() restarts at 1
    and the server's poller (which compares versions) could miss a change that lands on the same
    number the previous test ended with."""
    from core.models import VersionStamp

    stamp_bump(name)
    VersionStamp.objects.filter(name=name).update(version=time.time_ns() // 1000)


def wait_until(predicate, *, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Env:
    """One test's view of the live gateway: a key, accounts, SDK clients, the simulator."""

    def __init__(self, gateway, simulator):
        self.gateway = gateway
        self.simulator = simulator
        self.base = gateway.url.rstrip("/")
        self.key = gateway.api_key  # the server's app.api_key; own_key() makes a per-test ApiKey row
        self.key_row: ApiKey | None = None
        self.tag = uuid.uuid4().hex[:8]
        self.account_ids: list[int] = []
        self._unsaved: list[Account] = []

    def own_key(self, *, allowed_models: list[str] | None = None) -> ApiKey:
        """Switch to a fresh ApiKey row (optionally model-limited) once the server accepts it."""
        key = "sk-test-" + secrets.token_hex(12)
        self.key_row = ApiKey.objects.create(label="tests", key_hash=hash_api_key(key), prefix=key[:12],
                                             allowed_models=allowed_models or [])
        bump("api_keys")
        self.key = key
        wait_until(lambda: httpx.get(self.base + "/v1/models", headers={"Authorization": f"Bearer {key}"},
                                     timeout=10).status_code == 200, what="the new API key to be accepted")
        return self.key_row

    @property
    def sim(self):
        return self.simulator.sim

    def token(self, tier: str, label: str, *directives: str) -> str:
        return f"sim-{tier}-{label}{self.tag}" + "".join(f"~{d}" for d in directives)

    def account(self, tier: str, label: str, *directives: str, pool: str | None = None) -> str:
        """An account for this test, saved by the next `ready()`: all of a test's accounts are
        committed in one transaction, so the server's pool never holds some of them without the
        rest (a test with a spare account would otherwise race the poller between two saves)."""
        token = self.token(tier, label, *directives)
        acc = Account(pool=pool or tier)
        acc.set_token(token)
        self._unsaved.append(acc)
        return token

    def _save_accounts(self) -> None:
        if not self._unsaved:
            return
        with transaction.atomic():
            for acc in self._unsaved:
                acc.save()
                self.account_ids.append(acc.id)
        self._unsaved.clear()
        bump("accounts")

    def usage_rows(self, **filters) -> list:
        """This test's ledger rows (the server flushes about once a second, so wait for them)."""
        from gateway.models import UsageRecord

        return list(UsageRecord.objects.filter(account_id__in=self.account_ids, **filters).order_by("id"))

    def reset_simulator(self) -> None:
        """Fresh simulator counters: the same request now produces the same canned answer again."""
        self.simulator.reset()

    def http(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30, **kw)

    def openai(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=kw.pop("api_key", self.key), max_retries=0, timeout=30, **kw)

    def anthropic(self, **kw) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.base, api_key=kw.pop("api_key", self.key), max_retries=0, timeout=30, **kw)

    def ready(self, model: str) -> None:
        """Save the accounts made since the last call, then wait until the server's snapshots know
        the key and an account that serves `model`."""
        self._save_accounts()
        def listed():
            r = httpx.get(self.base + "/v1/models", headers={"Authorization": f"Bearer {self.key}"}, timeout=10)
            return r.status_code == 200 and any(m["id"] == model for m in r.json()["data"])

        wait_until(listed, what=f"{model} to be served")

    def open_streams(self) -> int:
        """Upstream chat streams the simulator is still serving (answered 200, not yet closed)."""
        return sum(1 for e in self.sim.requests(endpoint="chat") if e.get("status") == 200 and "closed_at" not in e)

    def set_config(self, values: dict) -> None:
        """Save runtime config in the test DB; the server reloads it through its snapshot poller."""
        from core.config import config_save

        config_save(values=values)
        bump("config")

    def chat_requests(self, token: str | None = None) -> list[dict]:
        return self.sim.requests(token=token, endpoint="chat") if token else self.sim.requests(endpoint="chat")


@pytest.fixture(scope="session", autouse=True)
def _fresh_pool_keys(django_db_setup):
    """The test database is recreated every run, so its account ids restart at 1; cooldowns and
    in-flight slots that an earlier run left in Redis under this database's pool prefix would
    land on the new accounts with the same ids. Drop them once per session."""
    from django.conf import settings

    if not getattr(settings, "REDIS_URL", None):
        return
    import redis

    from accounts.inflight import _prefix

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=_prefix() + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def env(gateway_server, sim) -> Env:
    """A clean slate: wait until the server has dropped every account of earlier tests."""
    for name in ("accounts", "api_keys", "config"):
        bump(name)
    e = Env(gateway_server, sim)
    wait_until(lambda: httpx.get(e.base + "/v1/models", headers={"Authorization": f"Bearer {e.key}"}, timeout=10)
               .json()["data"] == [], what="the server to forget earlier tests' accounts")
    return e
