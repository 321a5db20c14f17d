"""Chart data of the admin (gateway/charts.py) on a fixed clock, against the real database: what the
charts say, and that each chart costs a fixed number of queries whatever the number of rows."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Account
from gateway.charts import account_charts, key_charts, key_tokens_used, keys_budget_chart, pool_capacity
from gateway.ledger import usage_rollup
from gateway.models import ApiKey, UsageRecord

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=timezone.utc)


def _key(label: str, **limits) -> ApiKey:
    return ApiKey.objects.create(label=label, key_hash=hashlib.sha256(label.encode()).hexdigest(), prefix="sk-" + label[:4], **limits)


def _account(pool: str, quotas: dict, *, status: str = "active", name: str = "a") -> Account:
    account = Account(pool=pool, status=status, quotas=quotas)
    account.set_token(f"sim-{pool}-charts-{name}")
    account.save()
    return account


def _use(at: datetime, *, key=None, account=None, model="grok-4.20-auto", status="ok", prompt=100, completion=50):
    UsageRecord.objects.create(created_at=at, api_key=key, api_key_label=key.label if key else "", endpoint="chat",
                               model=model, account=account, status=status, prompt_tokens=prompt,
                               completion_tokens=completion)


def test_a_key_s_budgets_count_rolled_up_hours_and_the_raw_rows_since_the_newest_rollup():
    key = _key("budget", daily_token_budget=1000, monthly_token_budget=10_000, requests_per_minute=10,
               tokens_per_minute=600)
    other = _key("other")
    _use(datetime(2026, 3, 2, 9, tzinfo=timezone.utc), key=key)          # this month, not today
    _use(datetime(2026, 2, 28, 23, 59, tzinfo=timezone.utc), key=key)    # last month: not counted
    _use(datetime(2026, 3, 10, 1, 5, tzinfo=timezone.utc), key=key)      # today
    _use(datetime(2026, 3, 10, 1, 6, tzinfo=timezone.utc), key=other)
    usage_rollup(now=datetime(2026, 3, 10, 11, 0, tzinfo=timezone.utc))  # rolled up to the 11:00 hour
    _use(NOW - timedelta(seconds=30), key=key, prompt=200, completion=100)  # after the rollup, within the minute
    _use(NOW - timedelta(minutes=50), key=key)                              # the 11:00 hour, rollup since outdated

    used = key_tokens_used(now=NOW)
    assert used[key.pk] == {"day": 150 + 300 + 150, "month": 150 + 150 + 300 + 150}
    assert used[other.pk] == {"day": 150, "month": 150}

    rows = {r["label"]: r for r in key_charts(key=key, now=NOW)["limits"]}
    assert rows["requests, last minute"]["used"] == 1 and rows["requests, last minute"]["limit"] == 10
    assert rows["tokens, last minute"]["used"] == 300 and rows["tokens, last minute"]["percent"] == 50.0
    assert rows["tokens today (UTC)"]["used"] == 600 and rows["tokens today (UTC)"]["percent"] == 60.0
    assert rows["tokens this month (UTC)"]["note"] == "750 of 10,000 tokens"


def test_the_key_page_charts_its_limits_and_its_last_24_hours():
    key = _key("page", daily_token_budget=1000)
    _use(NOW - timedelta(hours=2), key=key, model="grok-4.20-fast")
    _use(NOW - timedelta(hours=2), key=key, model="grok-4.20-fast", status="error")
    _use(NOW - timedelta(hours=2), key=_key("someone-else"), model="grok-4.20-auto")
    usage_rollup(now=NOW)

    charts = {c["canvas"]: c for c in key_charts(key=key, now=NOW)["charts"]}
    assert list(charts) == ["key-limits", "key-usage-requests", "key-usage-tokens", "key-usage-errors"]
    assert charts["key-limits"]["labels"] == ["tokens today (UTC)"] and charts["key-limits"]["percent"]
    requests = charts["key-usage-requests"]
    assert len(requests["labels"]) == 24 and requests["labels"][-1] == "12:00" and requests["labels"][-3] == "10:00"
    assert [d["label"] for d in requests["datasets"]] == ["grok-4.20-fast"]  # the other key's model is not here
    assert requests["datasets"][0]["data"][-3] == 2
    assert charts["key-usage-errors"]["datasets"][0]["data"][-3] == 1
    assert charts["key-usage-tokens"]["datasets"][0]["data"][-3] == 300


def test_a_key_without_limits_or_traffic_has_nothing_to_chart():
    data = key_charts(key=_key("idle"), now=NOW)
    assert data["charts"] == [] and data["limits"] == [] and not data["usage"]


def test_the_fullest_keys_come_first_against_their_budgets():
    keys = [_key(f"k{i}", daily_token_budget=1000 * (i + 1)) for i in range(12)]
    monthly = _key("monthly-only", monthly_token_budget=300)
    _key("no-budget")
    for k in [*keys, monthly]:
        _use(NOW - timedelta(minutes=5), key=k)  # 150 tokens each
    with CaptureQueriesContext(connection) as queries:
        data = keys_budget_chart(now=NOW, top=10)
    assert len(queries) == 4  # keys, newest rollup hour, rollups, raw rows: not one per key
    assert [r["label"] for r in data["rows"]][:3] == ["monthly-only", "k0", "k1"]
    assert len(data["rows"]) == 10
    spec = data["charts"][0]
    assert spec["labels"][0] == "monthly-only" and spec["datasets"][0]["data"][0] is None  # no daily budget
    assert spec["datasets"][1]["data"][0] == 50.0 and spec["datasets"][0]["data"][1] == 15.0


def test_pool_capacity_sums_usable_accounts_per_mode_with_the_next_reset():
    epoch = NOW.timestamp()
    soon, later = epoch + 1800, epoch + 5400
    for i, reset in enumerate((later, soon)):
        _account("super", {"auto": {"remaining": 0, "total": 50, "reset_at": reset},
                           "fast": {"remaining": 100, "total": 140}}, name=str(i))
    _account("super", {"auto": {"remaining": 50, "total": 50}}, status="expired", name="x")  # not usable
    _account("basic", {}, name="b")  # never synced: the spec's default table
    with CaptureQueriesContext(connection) as queries:
        data = pool_capacity(now=NOW)
    assert len(queries) == 1
    rows = {r["label"]: r for r in data["rows"]}
    assert list(rows)[0] == "basic · fast"
    assert rows["basic · fast"]["remaining"] == 30 and rows["basic · fast"]["reset"] == ""
    auto = rows["super · auto"]
    assert (auto["remaining"], auto["total"], auto["accounts"], auto["exhausted"]) == (0, 100, 2, 2)
    assert auto["reset"] == "03-10 13:00 UTC (in 30 min)"
    assert rows["super · fast"]["remaining"] == 200
    assert rows["super · 4.3"]["remaining"] == 100  # default table for the mode no probe reported
    spec = data["charts"][0]
    assert [d["label"] for d in spec["datasets"]] == ["remaining", "used"]
    assert spec["datasets"][1]["data"][spec["labels"].index("super · auto")] == 100


def test_the_account_page_charts_its_quota_and_its_requests_and_errors():
    account = _account("super", {"auto": {"remaining": 0, "total": 50, "reset_at": NOW.timestamp() + 4000},
                                 "fast": {"remaining": 90, "total": 140}})
    _use(NOW - timedelta(minutes=10), account=account, status="error")
    _use(NOW - timedelta(minutes=10), account=_account("heavy", {}, name="other"))
    usage_rollup(now=NOW)
    data = account_charts(account=account, now=NOW)
    charts = {c["canvas"]: c for c in data["charts"]}
    assert list(charts) == ["account-quota", "account-usage-requests", "account-usage-errors"]
    quota = {r["label"]: r for r in data["quota"]}
    assert quota["auto"]["reset"] == "03-10 13:36 UTC (in 1 h 07 min)" and quota["fast"]["remaining"] == 90
    assert charts["account-usage-errors"]["datasets"][0]["data"][-1] == 1
    assert sum(charts["account-usage-requests"]["datasets"][0]["data"]) == 1  # the other account's row is not here
