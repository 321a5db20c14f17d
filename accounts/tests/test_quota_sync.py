"""Quota sync against the simulator's rate-limits endpoint: windows, tier detection, failures."""
import asyncio
import io
import socket
import time

import pytest
from django.core.management import call_command

from accounts import lease as leasing, maintenance
from accounts.models import Account, TierChange
from accounts.quota import quota_refresh
from grokweb.registry import BY_ID

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def upstream(sim, monkeypatch, set_config):
    for name, value in sim.upstream_env().items():
        monkeypatch.setenv(name, value)
    set_config()
    return sim


@pytest.fixture
def dead_upstream(monkeypatch, set_config):
    """An upstream base URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GROK_UPSTREAM_WEB_BASE_URL", f"http://127.0.0.1:{port}")
    set_config()


def test_it_stores_real_windows_for_every_supported_mode(upstream, make_account):
    a = make_account("sim-super-sync1")
    upstream.sim.set_quota("sim-super-sync1", "auto", remaining=7)
    [result] = quota_refresh()
    assert result.ok, result.message
    row = Account.objects.get(id=a.id)
    assert set(row.quotas) == {"auto", "fast", "expert", "grok-420-computer-use-sa"}
    auto = row.quotas["auto"]
    assert (auto["remaining"], auto["total"], auto["window_seconds"], auto["source"], auto["stale"]) == (7, 50, 7200, 1, False)
    assert auto["synced_at"] == pytest.approx(time.time(), abs=30) and row.sync_count == 1 and row.last_sync_at
    assert {r["body"]["modelName"] for r in upstream.sim.requests(token="sim-super-sync1", endpoint="rate-limits")} >= {"auto", "fast", "expert"}


def test_import_with_pool_auto_detects_the_tier(upstream):
    report = maintenance.account_import(tokens="sim-basic-t1\nsim-super-t2\nsim-heavy-t3\n", pool="auto")
    assert [pool for *_, pool in report.imported] == ["basic", "super", "heavy"]
    pools = dict(Account.objects.values_list("token_last4", "pool"))
    assert pools == {"c-t1": "basic", "r-t2": "super", "y-t3": "heavy"}
    assert all(Account.objects.values_list("pool_detected", flat=True))
    heavy = Account.objects.get(token_last4="y-t3")
    assert heavy.quotas["auto"]["total"] == 150 and heavy.quotas["auto"]["source"] == 1
    history = {c.account.token_last4: (c.old, c.new, c.reason) for c in TierChange.objects.select_related("account")}
    assert history["r-t2"] == ("", "super", "import with pool auto: tier detected: super (auto 50/50, fast 140/140, heavy none)")
    assert history["c-t1"][:2] == ("", "basic") and history["y-t3"][:2] == ("", "heavy")


def test_import_with_pool_auto_reports_a_failed_probe_in_whole_sentences(upstream):
    report = maintenance.account_import(tokens="sim-super-dead1~expired\n", pool="auto")
    [(line, note)] = report.notes
    assert line == 1 and note.startswith("tier probe failed: auth_invalid (") and note.endswith("); stored as basic")
    inner = note.removeprefix("tier probe failed: auth_invalid (").removesuffix("); stored as basic")
    assert inner.endswith((".", "…")) and not inner.endswith(" ."), note  # before: "... The operator must import "
    assert "The operator must import a fresh SSO token" in inner or inner.endswith("…")


def test_a_detected_pool_is_reclassified_by_a_later_sync_but_an_explicit_one_is_not(upstream, make_account):
    detected = make_account("sim-basic-up1", pool="basic", pool_detected=True)
    explicit = make_account("sim-basic-up2", pool="basic")
    upstream.sim.set_tier("sim-basic-up1", "super")
    upstream.sim.set_tier("sim-basic-up2", "super")
    quota_refresh()
    assert Account.objects.get(id=detected.id).pool == "super"
    assert Account.objects.get(id=explicit.id).pool == "basic"
    [change] = TierChange.objects.all()
    assert (change.account_id, change.old, change.new) == (detected.id, "basic", "super")
    assert change.reason == "on-demand refresh of all accounts: auto 50/50, fast 140/140, heavy none"


@pytest.mark.parametrize("token,pool,mode", [
    ("sim-super-au1", "super", "expert"), ("sim-super-au2", "super", "fast"), ("sim-super-au3", "super", "grok-420-computer-use-sa"),
    ("sim-heavy-au4", "heavy", "fast"), ("sim-heavy-au5", "heavy", "expert"),
])
def test_an_after_use_probe_updates_its_window_and_keeps_the_tier(upstream, make_account, token, pool, mode):
    a = make_account(token, pool=pool, pool_detected=True)
    upstream.sim.set_quota(token, mode, remaining=3)
    [result] = quota_refresh(account_ids=[a.id], modes=[mode])  # what the after-use probe runs
    assert result.ok, result.message
    row = Account.objects.get(id=a.id)
    assert row.pool == pool and row.pool_detected
    assert set(row.quotas) == {mode} and row.quotas[mode]["remaining"] == 3 and row.quotas[mode]["source"] == 1
    assert not TierChange.objects.exists()


def test_a_refresh_moves_a_tier_only_on_a_full_probe_and_records_it(upstream, make_account):
    a = make_account("sim-super-sch1", pool="super", pool_detected=True)
    upstream.sim.set_tier("sim-super-sch1", "heavy")  # upgraded upstream
    quota_refresh(account_ids=[a.id], modes=["auto", "fast", "expert"])  # heavy not probed: no evidence
    assert Account.objects.get(id=a.id).pool == "super" and not TierChange.objects.exists()
    quota_refresh(pool="super")
    assert Account.objects.get(id=a.id).pool == "heavy"
    [change] = TierChange.objects.all()
    assert (change.old, change.new) == ("super", "heavy")
    assert change.reason == "scheduled refresh of pool super: auto 150/150, fast 400/400, heavy 20/20"


def test_sync_errors_feed_the_reaction_matrix(upstream, make_account):
    blocked = make_account("sim-super-sb~blocked")
    expired = make_account("sim-super-se~expired")
    fine = make_account("sim-super-sf")
    results = {r.account_id: r for r in quota_refresh()}
    assert not results[blocked.id].ok and results[fine.id].ok
    assert Account.objects.get(id=blocked.id).state_reason == "blocked"
    assert Account.objects.get(id=expired.id).status == "expired"
    assert Account.objects.get(id=expired.id).state_reason == "invalid_credentials"
    assert Account.objects.get(id=fine.id).status == "active"


def test_a_failed_sync_marks_windows_stale_and_never_leaves_the_pool_stuck(dead_upstream, make_account, set_config):
    set_config(features__auto_chat_mode_fallback="false")
    now = time.time()
    exhausted = {"remaining": 0, "total": 50, "window_seconds": 7200, "reset_at": now - 5, "synced_at": now - 7300, "source": 1}
    partial = {"remaining": 10, "total": 140, "window_seconds": 86400, "reset_at": now + 600, "synced_at": now - 60, "source": 1}
    a = make_account("sim-super-stale", quotas={"auto": exhausted, "fast": partial})
    [result] = quota_refresh()
    assert not result.ok and "stale" in result.message
    row = Account.objects.get(id=a.id)
    assert (row.quotas["auto"]["remaining"], row.quotas["auto"]["stale"], row.quotas["auto"]["reset_at"]) == (50, True, None)
    assert (row.quotas["fast"]["remaining"], row.quotas["fast"]["source"], row.quotas["fast"]["stale"]) == (9, 2, True)
    assert row.status == "active"
    lease = asyncio.run(leasing.account_lease(model=BY_ID["grok-4.20-auto"]))
    assert lease.account.id == a.id and lease.mode == "auto"
    leasing.account_release(lease=lease)


def test_refresh_quotas_command_reports_each_account(upstream, make_account):
    a = make_account("sim-heavy-cmd", pool="heavy")
    out = io.StringIO()
    call_command("refresh_quotas", "--account", str(a.id), stdout=out)
    text = out.getvalue()
    assert f"#{a.id}" in text and "ok" in text and "heavy 20/20" in text and "1 account(s) probed, 0 failed" in text
    out = io.StringIO()
    call_command("refresh_quotas", "--pool", "basic", stdout=out)
    assert "0 account(s) probed" in out.getvalue()


def test_refresh_quotas_names_itself_in_the_tier_history(upstream, make_account):
    a = make_account("sim-basic-cmd2", pool="basic", pool_detected=True)
    upstream.sim.set_tier("sim-basic-cmd2", "heavy")
    call_command("refresh_quotas", "--mode", "fast", stdout=io.StringIO())  # partial: no change
    assert Account.objects.get(id=a.id).pool == "basic"
    call_command("refresh_quotas", "--pool", "basic", stdout=io.StringIO())
    assert Account.objects.get(id=a.id).pool == "heavy"
    [change] = TierChange.objects.all()
    assert change.reason == "manage.py refresh_quotas: auto 150/150, fast 400/400, heavy 20/20"


def test_an_explicit_refresh_revives_an_account_whose_credentials_work_again(upstream, make_account):
    a = make_account("sim-super-revive", status="expired", state_reason="invalid_credentials")
    assert quota_refresh() == []  # scheduled syncs skip expired accounts
    [result] = quota_refresh(account_ids=[a.id])
    assert result.ok
    row = Account.objects.get(id=a.id)
    assert (row.status, row.state_reason) == ("active", "")
