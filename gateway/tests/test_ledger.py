"""Usage ledger retention (gateway/ledger.py): hourly rollups and pruning of raw rows, on a fixed clock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from accounts.models import Account
from gateway.ledger import usage_prune, usage_rollup
from gateway.models import ApiKey, UsageHourly, UsageRecord

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=timezone.utc)


def _row(at: datetime, *, model="grok-4.20-auto", key=None, account=None, status="ok", prompt=10, completion=5):
    return UsageRecord.objects.create(
        created_at=at, api_key=key, api_key_label=key.label if key else "app.api_key", endpoint="chat.completions",
        model=model, account=account, status=status, prompt_tokens=prompt, completion_tokens=completion,
    )


def _table() -> set[tuple]:
    return set(UsageHourly.objects.values_list(
        "hour", "api_key_id", "model", "account_id", "requests", "errors", "prompt_tokens", "completion_tokens"))


@pytest.fixture
def refs():
    key = ApiKey.objects.create(label="ci", key_hash="a" * 64, prefix="sk-ci")
    account = Account(pool="super")
    account.set_token("sim-super-ledger")
    account.save()
    return key, account


def test_it_rolls_usage_up_per_hour_key_model_and_account(refs):
    key, account = refs
    h11 = datetime(2026, 3, 10, 11, tzinfo=timezone.utc)
    h12 = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
    _row(h11 + timedelta(minutes=1), key=key, account=account, prompt=10, completion=5)
    _row(h11 + timedelta(minutes=59, seconds=59), key=key, account=account, status="error", prompt=7, completion=0)
    _row(h11 + timedelta(minutes=30), model="grok-4.20-fast", key=key, account=account, prompt=1, completion=1)
    _row(h12 + timedelta(minutes=5), key=None, account=account, prompt=3, completion=4)

    usage_rollup(now=NOW)

    assert _table() == {
        (h11, key.id, "grok-4.20-auto", account.id, 2, 1, 17, 5),
        (h11, key.id, "grok-4.20-fast", account.id, 1, 0, 1, 1),
        (h12, None, "grok-4.20-auto", account.id, 1, 0, 3, 4),
    }


def test_a_rerun_recomputes_whole_hours_and_picks_up_late_rows(refs):
    key, account = refs
    h12 = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
    _row(h12 + timedelta(minutes=1), key=key, account=account)
    usage_rollup(now=NOW)
    first = _table()
    usage_rollup(now=NOW)
    assert _table() == first  # idempotent: no double counting

    _row(h12 + timedelta(minutes=20), key=key, account=account, prompt=1, completion=1)
    usage_rollup(now=NOW + timedelta(minutes=10))
    assert _table() == {(h12, key.id, "grok-4.20-auto", account.id, 2, 0, 11, 6)}


def test_it_prunes_raw_rows_past_the_retention_at_an_hour_boundary_and_keeps_their_rollups(refs, set_config):
    key, account = refs
    set_config(**{"usage.raw_retention_days": 2})
    cutoff = datetime(2026, 3, 8, 12, tzinfo=timezone.utc)  # NOW − 2 days, floored to the hour
    _row(cutoff - timedelta(days=3), key=key, account=account, prompt=100, completion=50)
    _row(cutoff - timedelta(seconds=1), key=key, account=account)
    kept_same_hour = _row(cutoff, key=key, account=account)
    kept = _row(cutoff + timedelta(minutes=45), key=key, account=account)

    assert usage_prune(now=NOW) == 2  # no rollup ran before: prune rolls those hours up itself

    assert set(UsageRecord.objects.values_list("id", flat=True)) == {kept_same_hour.id, kept.id}
    old_hour = datetime(2026, 3, 5, 12, tzinfo=timezone.utc)
    edge_hour = datetime(2026, 3, 8, 11, tzinfo=timezone.utc)
    assert _table() == {
        (old_hour, key.id, "grok-4.20-auto", account.id, 1, 0, 100, 50),
        (edge_hour, key.id, "grok-4.20-auto", account.id, 1, 0, 10, 5),
    }

    usage_rollup(now=NOW)  # later runs never touch hours whose raw rows are gone
    assert (old_hour, key.id, "grok-4.20-auto", account.id, 1, 0, 100, 50) in _table()
    assert (cutoff, key.id, "grok-4.20-auto", account.id, 2, 0, 20, 10) in _table()


def test_a_retention_of_zero_keeps_raw_rows_forever(refs, set_config):
    key, account = refs
    set_config(**{"usage.raw_retention_days": 0})
    _row(NOW - timedelta(days=400), key=key, account=account)
    assert usage_prune(now=NOW) == 0
    assert UsageRecord.objects.count() == 1


def test_rollups_outlive_a_deleted_key_and_account(refs):
    key, account = refs
    _row(NOW - timedelta(minutes=10), key=key, account=account)
    usage_rollup(now=NOW)
    key.delete()
    account.delete()
    row = UsageHourly.objects.get()
    assert (row.api_key_id, row.account_id, row.api_key_label, row.requests) == (None, None, "ci", 1)


def test_the_chart_series_covers_the_last_24_hours_per_model_with_zeros_between(refs):
    from gateway.ledger import usage_hourly_series

    key, account = refs
    h12 = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
    _row(h12 + timedelta(minutes=1), key=key, account=account, prompt=10, completion=5)
    _row(h12 + timedelta(minutes=2), key=None, account=account, status="error", prompt=1, completion=0)
    _row(h12 - timedelta(hours=3), model="grok-4.20-fast", key=key, account=account, prompt=2, completion=2)
    _row(h12 - timedelta(hours=30), key=key, account=account)  # older than the window
    usage_rollup(now=NOW)

    series = usage_hourly_series(now=NOW, hours=24)

    assert series["hours"][0] == "13:00" and series["hours"][-1] == "12:00" and len(series["hours"]) == 24
    assert list(series["models"]) == ["grok-4.20-auto", "grok-4.20-fast"]
    auto = series["models"]["grok-4.20-auto"]
    assert auto["requests"] == [0] * 23 + [2]
    assert auto["tokens"] == [0] * 23 + [16]
    assert auto["errors"] == [0] * 23 + [1]
    assert series["models"]["grok-4.20-fast"]["requests"] == [0] * 20 + [1, 0, 0, 0]
