"""A snapshot reload racing the request path's feedback and the batched writer never forgets an
effect (accounts/snapshot.py, accounts/writer.py): an account just expired stays expired."""
import asyncio
import threading
import time

import pytest
from django.db import connection, connections

from accounts import lease as leasing, snapshot, writer
from grokweb.classify import UpstreamError, UpstreamKind
from grokweb.errors import RateLimited
from grokweb.registry import BY_ID

pytestmark = pytest.mark.django_db(transaction=True)

AUTO = BY_ID["grok-4.20-auto"]


def _quota(remaining):
    return {"auto": {"remaining": remaining, "total": 50, "window_seconds": 7200, "reset_at": None, "synced_at": time.time(), "source": 1}}


def _expire(got):
    dead = UpstreamError("upstream said no", kind=UpstreamKind.AUTH_INVALID, upstream_status=401, endpoint="/rest/app-chat/conversations/new")
    leasing.account_report(lease=got, outcome=dead)


def test_feedback_reported_while_a_reload_builds_is_kept(make_account, monkeypatch):
    a = make_account("sim-super-racing", quotas=_quota(30))
    got = asyncio.run(leasing.account_lease(model=AUTO, exclude=frozenset()))
    assert got.account.id == a.id
    build = snapshot._views
    reported = []

    def build_while_feedback_arrives(rows, pending, *, now):
        views = build(rows, pending, now=now)  # the rows and pending list were read before the report
        if not reported:
            _expire(got)  # lands on the live snapshot, after the reload read its inputs
            reported.append(True)
        return views

    monkeypatch.setattr(snapshot, "_views", build_while_feedback_arrives)
    snap = snapshot.pool_snapshot_reload()
    assert reported
    assert snap.accounts[a.id].status == "expired"
    with pytest.raises(RateLimited):
        asyncio.run(leasing.account_lease(model=AUTO, exclude=frozenset()))
    writer.account_flush()
    monkeypatch.setattr(snapshot, "_views", build)
    assert snapshot.pool_snapshot_reload().accounts[a.id].status == "expired"  # from the row now, applied once


def test_a_reload_during_a_flush_sees_the_batch_once(make_account):
    """The flush has taken its batch off the pending list but not committed it: a reload then must
    wait, or it sees the effect in neither place. A row lock held elsewhere holds the flush there."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): holds the flush on a row lock")
    a = make_account("sim-super-flushing", quotas=_quota(30))
    snapshot.pool_snapshot_reload()
    got = asyncio.run(leasing.account_lease(model=AUTO, exclude=frozenset()))
    _expire(got)
    fails_before = snapshot.pool_snapshot().accounts[a.id].fail_count

    other = connections.create_connection("default")
    other.set_autocommit(False)
    with other.cursor() as cur:
        cur.execute("SELECT id FROM accounts_account WHERE id = %s FOR UPDATE", [a.id])
    results = {}

    def run(name, fn):
        try:
            results[name] = fn()
        finally:
            connections.close_all()

    flush = threading.Thread(target=run, args=("flush", writer.account_flush))
    flush.start()
    deadline = time.monotonic() + 10
    while not writer.flusher.settled().locked() or writer.flusher.pending_snapshot()[0]:
        assert time.monotonic() < deadline, "the flush never took its batch"
        time.sleep(0.01)
    reload = threading.Thread(target=run, args=("reload", snapshot._load))
    reload.start()
    reload.join(0.5)  # before the fix it finished here, with the account active
    other.commit()
    other.close()
    flush.join(10)
    reload.join(10)
    assert results["flush"] == 1
    view = results["reload"].accounts[a.id]
    assert view.status == "expired"
    assert view.fail_count == fails_before  # the batch counted once: from the row, not again from the list
