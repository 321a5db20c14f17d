"""Fixtures for the account pool tests."""
import pytest


@pytest.fixture(autouse=True)
def _pool_state(monkeypatch):
    """Fresh process-local pool state per test; feedback is flushed explicitly (no writer thread)."""
    from accounts import inflight, lease, writer

    monkeypatch.setattr(writer.flusher, "autostart", False)
    lease._reset_state_for_tests()
    inflight.slots_reset()
    _clear_shared_slots()
    yield
    lease._reset_state_for_tests()
    inflight.slots_reset()


@pytest.fixture
def make_account(db):
    from django.db import transaction

    from accounts.models import Account
    from core.snapshots import stamp_bump

    def create(token, pool="super", *, quotas=None, status="active", health=1.0, **fields):
        account = Account(pool=pool, status=status, health=health, quotas=quotas or {}, **fields)
        account.set_token(token)
        with transaction.atomic():
            account.save()
            stamp_bump("accounts")
        return account

    return create


def _clear_shared_slots():
    """Leases a previous test (or run, on the same test database name) left in Redis must not count."""
    from django.conf import settings

    from accounts import inflight

    if not getattr(settings, "REDIS_URL", None):
        return
    backend = inflight.RedisSlots(settings.REDIS_URL)
    client = backend.sync_client()
    keys = list(client.scan_iter(backend.prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()
