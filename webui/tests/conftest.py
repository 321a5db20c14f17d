"""Fixtures of the web page tests: runtime config through GROK_* variables, accounts, pool state."""
from __future__ import annotations

import pytest


@pytest.fixture
def make_account():
    """Create an account row (committed when the test is transactional) and bump the pool stamp."""
    from django.db import transaction

    from accounts.models import Account
    from core.snapshots import stamp_bump

    def create(token, pool="super", **fields):
        account = Account(pool=pool, **fields)
        account.set_token(token)
        with transaction.atomic():
            account.save()
            stamp_bump("accounts")
        return account

    return create


@pytest.fixture
def pool_state(monkeypatch):
    """Fresh process-local pool state (in-flight slots, learned cooldowns) for in-process tests."""
    from accounts import inflight, lease, refresh, writer

    monkeypatch.setattr(writer.flusher, "autostart", False)
    monkeypatch.setattr(refresh, "refresh_in_background", _schedule_closing)
    lease._reset_state_for_tests()
    inflight.slots_reset()
    yield
    lease._reset_state_for_tests()
    inflight.slots_reset()


def _schedule_closing(fn, *args) -> None:
    """The pool's background triggers (quota refreshes) run on a thread that closes its database
    connection afterwards: executor threads would otherwise keep PostgreSQL sessions open past
    the test database's teardown."""
    import threading

    from django.db import connections

    def run() -> None:
        try:
            fn(*args)
        except Exception:  # the pool logs its own trigger failures; a test must not hang on one
            pass
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=10)
