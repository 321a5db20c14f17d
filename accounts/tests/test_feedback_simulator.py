"""The reaction matrix end to end: lease → GrokClient against the simulator on a real socket →
account_report → batched write, one test per row the simulator can script (docs/upstream-protocol.md §11.4)."""
import asyncio
import time

import pytest

from accounts import feedback, lease as leasing, writer
from accounts.models import Account
from core.models import OperatorAlert
from grokweb.errors import RateLimited
from grokweb.registry import BY_ID
from grokweb.classify import UpstreamError, UpstreamKind

pytestmark = pytest.mark.django_db(transaction=True)

AUTO = BY_ID["grok-4.20-auto"]


@pytest.fixture
def upstream(sim, monkeypatch, set_config):
    """Point the upstream base URLs at the simulator (the GROK_UPSTREAM_* environment overrides)."""
    for name, value in sim.upstream_env().items():
        monkeypatch.setenv(name, value)
    set_config()
    return sim


async def _call(lease) -> UpstreamError | None:
    from grokweb.client import GrokClient
    from grokweb.payloads import chat_payload

    client = GrokClient(token=lease.account.token, user_id=lease.account.user_id)
    try:
        async with client.chat_stream(payload=chat_payload(message="Say hello", mode=lease.mode), mode=lease.mode) as events:
            async for _ in events:
                pass
    except UpstreamError as exc:
        return exc
    return None


def run_once(model=AUTO):
    async def main():
        lease = await leasing.account_lease(model=model)
        outcome = await _call(lease)
        leasing.account_report(lease=lease, outcome=outcome)
        return lease, outcome

    return asyncio.run(main())


def quota(remaining, total=50):
    return {"remaining": remaining, "total": total, "window_seconds": 7200, "reset_at": None, "synced_at": time.time(), "source": 1}


def test_success_charges_the_mode_and_restores_health(upstream, make_account):
    a = make_account("sim-super-ok1", quotas={"auto": quota(20)}, health=0.5)
    lease, outcome = run_once()
    assert outcome is None and lease.account.id == a.id
    writer.account_flush()
    row = Account.objects.get()
    assert (row.use_count, row.quotas["auto"]["remaining"], row.quotas["auto"]["source"]) == (1, 19, 2)
    assert row.health == pytest.approx(0.62)
    assert len(upstream.sim.requests(token="sim-super-ok1", endpoint="chat")) == 1


def test_rate_limited_account_is_skipped_for_that_mode(upstream, make_account, set_config):
    set_config(features__auto_chat_mode_fallback="false")
    limited = make_account("sim-super-a~rl", quotas={"auto": quota(40)})
    other = make_account("sim-super-b", quotas={"auto": quota(5)})
    lease, outcome = run_once()
    assert lease.account.id == limited.id and outcome.kind is UpstreamKind.RATE_LIMITED
    lease2, outcome2 = run_once()
    assert lease2.account.id == other.id and outcome2 is None
    writer.account_flush()
    row = Account.objects.get(id=limited.id)
    assert row.quotas["auto"]["remaining"] == 0 and row.quotas["auto"]["reset_at"] > time.time()
    assert row.last_fail_reason == "rate_limited" and row.health == pytest.approx(0.45)


@pytest.mark.parametrize(
    "token,kind,state_reason",
    [
        ("sim-basic-x~expired", UpstreamKind.AUTH_INVALID, "invalid_credentials"),
        ("sim-super-e~expired403", UpstreamKind.AUTH_INVALID, "invalid_credentials"),
        ("sim-super-y~blocked", UpstreamKind.BLOCKED, "blocked"),
        ("sim-super-m~emaildomain", UpstreamKind.BLOCKED, "blocked"),
    ],
)
def test_dead_credentials_expire_the_account(upstream, make_account, token, kind, state_reason):
    pool = token.split("-")[1]
    make_account(token, pool=pool)
    model = BY_ID["grok-4.20-fast"]
    lease, outcome = run_once(model)
    assert outcome.kind is kind
    assert feedback.account_retry_allowed(error=outcome, attempt=1)
    with pytest.raises(RateLimited):
        run_once(model)
    writer.account_flush()
    row = Account.objects.get()
    assert (row.status, row.state_reason) == ("expired", state_reason)
    assert "grok-4.20-fast" not in {m.id for m in leasing.accounts_available_models()}


@pytest.mark.parametrize("token,kind", [("sim-super-z~antibot", UpstreamKind.ANTI_BOT), ("sim-super-c~cf", UpstreamKind.CLOUDFLARE)])
def test_anti_bot_and_cloudflare_alert_the_operator_and_keep_the_account(upstream, make_account, token, kind):
    a = make_account(token)
    lease, outcome = run_once()
    assert outcome.kind is kind and not feedback.account_retry_allowed(error=outcome, attempt=1)
    lease2, _ = run_once()  # still selectable: not the account's fault
    assert lease2.account.id == a.id
    writer.account_flush()
    row = Account.objects.get()
    assert row.status == "active" and row.fail_count == 2 and row.last_fail_reason == kind.value
    alert = OperatorAlert.objects.get(resolved=False)
    assert alert.kind == kind.value and alert.count == 2 and alert.endpoint == "/rest/app-chat/conversations/new"


@pytest.mark.parametrize("status,retry", [(503, True), (500, False)])
def test_upstream_5xx_costs_health_and_retries_only_on_listed_codes(upstream, make_account, set_config, status, retry):
    set_config(retry__on_codes="429,401,503")
    make_account(f"sim-super-h~http={status}")
    lease, outcome = run_once()
    assert outcome.kind is UpstreamKind.UPSTREAM_5XX and outcome.upstream_status == status
    assert feedback.account_retry_allowed(error=outcome, attempt=1) is retry
    writer.account_flush()
    row = Account.objects.get()
    assert row.health == pytest.approx(0.75) and row.fail_count == 1 and row.status == "active"


def test_bad_request_leaves_the_account_alone(upstream, make_account):
    make_account("sim-super-q~http=400")
    lease, outcome = run_once()
    assert outcome.kind is UpstreamKind.BAD_REQUEST
    writer.account_flush()
    row = Account.objects.get()
    assert (row.health, row.fail_count, row.status) == (1.0, 0, "active")


def test_a_truncated_stream_counts_a_failure(upstream, make_account):
    make_account("sim-super-t~truncate@3")
    lease, outcome = run_once()
    assert outcome is not None and outcome.kind in (UpstreamKind.TRUNCATED, UpstreamKind.TRANSPORT, UpstreamKind.PROTOCOL)
    writer.account_flush()
    assert Account.objects.get().fail_count == 1
