"""Lease / report on the request path (accounts/lease.py) with the in-process backend, persisted by the batched writer
(accounts/writer.py); maintenance and the snapshot seen through the pool."""
import asyncio
import time

import pytest

from accounts import feedback, lease as leasing, maintenance, snapshot, writer
from accounts.models import Account
from core.models import OperatorAlert
from grokweb.errors import RateLimited
from grokweb.registry import BY_ID
from grokweb.classify import UpstreamError, UpstreamKind

pytestmark = pytest.mark.django_db(transaction=True)

AUTO = BY_ID["grok-4.20-auto"]
FAST = BY_ID["grok-4.20-fast"]


def lease(model=AUTO, exclude=frozenset()):
    return asyncio.run(leasing.account_lease(model=model, exclude=exclude))


def err(kind, status=None, **kw):
    return UpstreamError(f"upstream said {kind}", kind=kind, upstream_status=status, endpoint="/rest/app-chat/conversations/new", **kw)


def quota(remaining, total=50, window=7200, reset_at=None, source=1):
    return {"remaining": remaining, "total": total, "window_seconds": window, "reset_at": reset_at, "synced_at": time.time(), "source": source}


def test_it_leases_the_account_with_most_quota_and_records_success(make_account):
    make_account("sim-super-low", quotas={"auto": quota(3)})
    best = make_account("sim-super-high", quotas={"auto": quota(30)})
    got = lease()
    assert (got.account.id, got.mode, got.pool) == (best.id, "auto", "super")
    assert got.account.token == "sim-super-high"
    leasing.account_report(lease=got, outcome=None)
    assert leasing._local_inflight == {}
    assert writer.account_flush() == 1
    row = Account.objects.get(id=best.id)
    assert row.use_count == 1 and row.last_use_at is not None
    assert row.quotas["auto"]["remaining"] == 29 and row.quotas["auto"]["source"] == 2
    assert row.health == 1.0


def test_report_is_idempotent(make_account):
    make_account("sim-super-once", quotas={"auto": quota(30)})
    got = lease()
    leasing.account_report(lease=got, outcome=None)
    leasing.account_report(lease=got, outcome=None)
    writer.account_flush()
    assert Account.objects.get().use_count == 1


def test_it_answers_429_naming_exhausted_pools_and_the_earliest_reset(make_account, set_config):
    set_config(features__auto_chat_mode_fallback="false")
    reset = time.time() + 1800
    make_account("sim-super-empty", quotas={"auto": quota(0, reset_at=reset)})
    make_account("sim-heavy-empty", pool="heavy", quotas={"auto": quota(0, total=150, reset_at=reset + 60)})
    with pytest.raises(RateLimited) as info:
        lease()
    message = info.value.message
    assert message.startswith("No available account for model grok-4.20-auto: pools heavy, super exhausted for mode auto")
    assert "earliest reset " + leasing._iso(reset) in message
    assert info.value.status == 429


def test_it_falls_back_to_fast_and_sends_the_selected_mode(make_account, set_config):
    set_config(features__auto_chat_mode_fallback="true")
    make_account("sim-super-fb", quotas={"auto": quota(0, reset_at=time.time() + 900), "fast": quota(5, total=140)})
    got = lease()
    assert got.mode == "fast" and got.fallback
    leasing.account_release(lease=got)


def test_it_never_exceeds_max_inflight_per_account(make_account, set_config):
    set_config(account__selection__max_inflight=1)
    a = make_account("sim-super-cap-a", quotas={"auto": quota(30)})
    b = make_account("sim-super-cap-b", quotas={"auto": quota(20)})
    first, second = lease(), lease()
    assert {first.account.id, second.account.id} == {a.id, b.id}
    with pytest.raises(RateLimited) as info:
        lease()
    assert "busy" in info.value.message and "max_inflight = 1" in info.value.message
    leasing.account_report(lease=first, outcome=None)
    third = lease()
    assert third.account.id == first.account.id


def test_it_excludes_accounts_already_tried(make_account):
    a = make_account("sim-super-try-a", quotas={"auto": quota(30)})
    b = make_account("sim-super-try-b", quotas={"auto": quota(2)})
    got = lease(exclude=frozenset({a.id}))
    assert got.account.id == b.id


def test_rate_limited_exhausts_the_mode_at_once_and_persists_it(make_account, set_config):
    set_config(features__auto_chat_mode_fallback="false")
    a = make_account("sim-super-rl-a", quotas={"auto": quota(30), "fast": quota(100, total=140)})
    b = make_account("sim-super-rl-b", quotas={"auto": quota(2), "fast": quota(1, total=140)})
    got = lease()
    assert got.account.id == a.id
    leasing.account_report(lease=got, outcome=err(UpstreamKind.RATE_LIMITED, 429))
    # this process stops choosing it for auto before anything is written
    assert lease().account.id == b.id
    # but fast on the same account is unaffected (cooldowns are per mode)
    assert lease(FAST).account.id == a.id
    writer.account_flush()
    row = Account.objects.get(id=a.id)
    assert row.quotas["auto"]["remaining"] == 0 and row.quotas["auto"]["reset_at"] > time.time() + 7000
    assert row.health == pytest.approx(0.45) and row.fail_count == 1 and row.last_fail_reason == "rate_limited"
    assert row.ext["cooldowns"]["auto"] == pytest.approx(row.quotas["auto"]["reset_at"])
    assert row.quotas["fast"]["remaining"] == 100


def test_rate_limited_keeps_an_existing_future_reset(make_account):
    reset = time.time() + 600
    make_account("sim-super-keep", quotas={"auto": quota(5, reset_at=reset)})
    got = lease()
    leasing.account_report(lease=got, outcome=err(UpstreamKind.QUOTA_EXHAUSTED))
    writer.account_flush()
    assert Account.objects.get().quotas["auto"]["reset_at"] == pytest.approx(reset)


def test_random_strategy_cools_the_account_for_the_pool_interval(make_account, set_config):
    set_config(account__refresh__enabled="false", account__refresh__super_interval_sec=3600)
    make_account("sim-super-random", quotas={"auto": quota(30)})
    got = lease()
    leasing.account_report(lease=got, outcome=err(UpstreamKind.RATE_LIMITED, 429))
    writer.account_flush()
    row = Account.objects.get()
    assert 3500 < row.cooling_until.timestamp() - time.time() <= 3600
    with pytest.raises(RateLimited):
        lease(FAST)  # random strategy: the whole account cools


@pytest.mark.parametrize(
    "kind,status,state_reason",
    [(UpstreamKind.AUTH_INVALID, 401, "invalid_credentials"), (UpstreamKind.BLOCKED, 403, "blocked")],
)
def test_invalid_credentials_and_blocks_expire_the_account(make_account, kind, status, state_reason):
    a = make_account("sim-super-dead", quotas={"auto": quota(30)})
    b = make_account("sim-super-alive", quotas={"auto": quota(1)})
    got = lease()
    leasing.account_report(lease=got, outcome=err(kind, status, detail="User is blocked: abuse" if kind is UpstreamKind.BLOCKED else ""))
    assert lease().account.id == b.id
    writer.account_flush()
    row = Account.objects.get(id=a.id)
    assert (row.status, row.state_reason) == ("expired", state_reason)
    assert row.ext["expired_at"] and row.ext["expired_reason"]


def test_a_plain_401_expires_the_account_in_memory_only(make_account):
    a = make_account("sim-super-suspect", quotas={"auto": quota(30)})
    got = lease()
    leasing.account_report(lease=got, outcome=err(UpstreamKind.AUTH_SUSPECT, 401))
    with pytest.raises(RateLimited):
        lease()
    writer.account_flush()
    row = Account.objects.get(id=a.id)
    assert row.status == "active" and row.health == pytest.approx(0.55) and row.fail_count == 1
    # the next record sync (snapshot reload) brings it back
    snapshot.pool_snapshot_reload()
    assert lease().account.id == a.id


@pytest.mark.parametrize("kind", [UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE])
def test_anti_bot_and_cloudflare_raise_an_operator_alert_and_keep_the_account(make_account, kind):
    a = make_account("sim-super-ab", quotas={"auto": quota(30)})
    for _ in range(2):
        got = lease()
        assert got.account.id == a.id
        got.egress = "direct"
        leasing.account_report(lease=got, outcome=err(kind, 403))
    writer.account_flush()
    row = Account.objects.get(id=a.id)
    assert row.status == "active" and row.fail_count == 2 and row.last_fail_reason == kind.value and row.health == 1.0
    alert = OperatorAlert.objects.get(resolved=False)
    assert (alert.kind, alert.endpoint, alert.egress, alert.count) == (kind.value, "/rest/app-chat/conversations/new", "direct", 2)
    assert alert.hint
    # another occurrence later upserts the same open alert
    got = lease()
    got.egress = "direct"
    leasing.account_report(lease=got, outcome=err(kind, 403))
    writer.account_flush()
    assert OperatorAlert.objects.get(resolved=False).count == 3


@pytest.mark.parametrize("kind", [UpstreamKind.MODERATED, UpstreamKind.BAD_REQUEST])
def test_moderation_and_bad_requests_leave_the_account_alone(make_account, kind):
    make_account("sim-super-mod", quotas={"auto": quota(30)})
    got = lease()
    leasing.account_report(lease=got, outcome=err(kind, 400))
    writer.account_flush()
    row = Account.objects.get()
    assert (row.health, row.fail_count, row.use_count, row.quotas["auto"]["remaining"]) == (1.0, 0, 0, 30)


@pytest.mark.parametrize(
    "kind,status,health",
    [
        (UpstreamKind.FORBIDDEN_OTHER, 403, 0.25),
        (UpstreamKind.UPSTREAM_5XX, 503, 0.75),
        (UpstreamKind.TRANSPORT, None, 0.75),
        (UpstreamKind.TIMEOUT, None, 0.75),
        (UpstreamKind.TRUNCATED, None, 1.0),
    ],
)
def test_failures_cost_health(make_account, kind, status, health):
    make_account("sim-super-hp", quotas={"auto": quota(30)})
    got = lease()
    leasing.account_report(lease=got, outcome=err(kind, status))
    writer.account_flush()
    row = Account.objects.get()
    assert row.health == pytest.approx(health) and row.fail_count == 1 and row.status == "active"


def test_health_has_a_floor_and_success_restores_it(make_account):
    make_account("sim-super-floor", quotas={"auto": quota(30)}, health=0.06)
    got = lease()
    leasing.account_report(lease=got, outcome=err(UpstreamKind.FORBIDDEN_OTHER, 403))
    got = lease()
    leasing.account_report(lease=got, outcome=None)
    writer.account_flush()
    assert Account.objects.get().health == pytest.approx(0.05 + 0.12)


def test_retry_rules_follow_the_matrix_and_the_config(set_config):
    set_config(retry__max_retries=1, retry__on_codes="429,401,503")
    allowed = feedback.account_retry_allowed
    assert allowed(error=err(UpstreamKind.RATE_LIMITED, 429), attempt=1)
    assert not allowed(error=err(UpstreamKind.RATE_LIMITED, 429), attempt=2)  # cap: max_retries + 1 attempts
    assert not allowed(error=err(UpstreamKind.RATE_LIMITED, 429), attempt=1, answer_started=True)
    assert allowed(error=err(UpstreamKind.UPSTREAM_5XX, 503), attempt=1)
    assert not allowed(error=err(UpstreamKind.UPSTREAM_5XX, 502), attempt=1)
    assert allowed(error=err(UpstreamKind.BLOCKED, 403), attempt=1)
    assert allowed(error=err(UpstreamKind.TRANSPORT), attempt=1)
    for kind in (UpstreamKind.ANTI_BOT, UpstreamKind.CLOUDFLARE, UpstreamKind.MODERATED, UpstreamKind.BAD_REQUEST, UpstreamKind.FORBIDDEN_OTHER):
        assert not allowed(error=err(kind, 403), attempt=1), kind
    assert not allowed(error=RateLimited("none"), attempt=1)
    # the keyword aliases (outcome=, attempts=)
    assert allowed(outcome=err(UpstreamKind.TIMEOUT), attempts=1)
    set_config(retry__on_codes="503")
    assert not allowed(error=err(UpstreamKind.RATE_LIMITED, 429), attempt=1)
    assert allowed(error=err(UpstreamKind.RATE_LIMITED), attempt=1)  # in-band, no HTTP status
    set_config(retry__max_retries=3, retry__on_codes="429,401,503")
    assert allowed(error=err(UpstreamKind.RATE_LIMITED, 429), attempt=3)


def test_available_models_follow_usable_accounts(make_account):
    assert leasing.accounts_available_models() == []
    make_account("sim-basic-only", pool="basic", quotas={"fast": quota(30, total=30)})
    ids = {m.id for m in leasing.accounts_available_models()}
    assert "grok-4.20-fast" in ids and "grok-4.20-0309-non-reasoning" in ids and "grok-imagine-image-lite" in ids
    assert "grok-4.20-auto" not in ids and "grok-4.20-heavy" not in ids
    heavy = make_account("sim-heavy-only", pool="heavy", status="expired")
    assert "grok-4.20-heavy" not in {m.id for m in leasing.accounts_available_models()}
    maintenance.account_enable(account=heavy)
    assert "grok-4.20-heavy" in {m.id for m in leasing.accounts_available_models()}


def test_disable_enable_delete_and_set_pool_take_effect_in_the_pool(make_account):
    a = make_account("sim-super-maint", quotas={"auto": quota(30)})
    maintenance.account_disable(account=a, reason="operator test")
    with pytest.raises(RateLimited):
        lease()
    assert Account.objects.get().state_reason == "operator test"
    maintenance.account_enable(account=a.id)
    assert lease().account.id == a.id
    maintenance.account_set_pool(account=a, pool="basic")
    with pytest.raises(RateLimited):
        lease()
    maintenance.account_delete(account=a, reason="gone")
    row = Account.objects.get()
    assert row.deleted_at is not None
    assert a.id not in snapshot.pool_snapshot().accounts


def test_large_pools_reload_only_changed_rows(make_account, monkeypatch):
    monkeypatch.setattr(snapshot, "FULL_RELOAD_MAX_ACCOUNTS", 0)
    a = make_account("sim-super-inc-a", quotas={"auto": quota(30)})
    b = make_account("sim-super-inc-b", quotas={"auto": quota(20)})
    first = snapshot.pool_snapshot()
    assert set(first.accounts) == {a.id, b.id}
    maintenance.account_disable(account=a, reason="incremental")
    snap = snapshot.pool_snapshot()
    assert snap is first  # patched in place, not rebuilt
    assert lease().account.id == b.id
    c = make_account("sim-super-inc-c", quotas={"auto": quota(40)})
    assert snapshot.pool_snapshot() is first and lease().account.id == c.id
    Account.objects.filter(id=b.id).delete()  # a hard delete leaves no updated_at trace: the count check catches it
    from core.snapshots import stamp_bump

    full_before = snapshot._load_state.full_at
    stamp_bump("accounts")
    snap = snapshot.pool_snapshot()
    # rebuilt in full, adopted by the live object (feedback reported meanwhile is not orphaned)
    assert snapshot._load_state.full_at > full_before and set(snap.accounts) == {a.id, c.id}


def test_an_unreachable_redis_is_a_clear_503(make_account, monkeypatch):
    from accounts import inflight
    from grokweb.errors import ServiceUnavailable

    make_account("sim-super-noredis", quotas={"auto": quota(30)})
    monkeypatch.setattr(inflight, "_backend", inflight.RedisSlots("redis://127.0.0.1:1/0"))
    with pytest.raises(ServiceUnavailable) as info:
        lease()
    assert info.value.status == 503 and "Redis" in info.value.message
