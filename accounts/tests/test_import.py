"""account_import and the import/export/setup commands."""
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import maintenance
from accounts.models import Account
from grokweb.errors import InvalidRequest

pytestmark = pytest.mark.django_db

FILE = (
    b"\xef\xbb\xbf# exported 2026-11-26\n"
    b"sso=sim-super-alpha\n"
    b"\n"
    b"  sim-super-beta  \n"
    b"\x00\x01\x02\xff binary\n"
    b"sim-super-alpha\n"
    b"sim-super-\xe2\x80\x8bgamma\n"
    b"tiny\n"
)


def test_it_imports_valid_lines_and_reports_the_rest_by_line_number():
    report = maintenance.account_import(tokens=FILE, pool="super", tags=["batch1"], probe_after=False)
    assert [(line, last4, pool) for line, _, last4, pool in report.imported] == [(2, "lpha", "super"), (4, "beta", "super"), (7, "amma", "super")]
    assert report.duplicates == [(6, "same token as line 2")]
    assert [line for line, _ in report.invalid] == [5, 8]
    tokens = sorted(a.token for a in Account.objects.all())
    assert tokens == ["sim-super-alpha", "sim-super-beta", "sim-super-gamma"]
    assert all(a.tags == ["batch1"] and a.pool == "super" for a in Account.objects.all())


def test_it_skips_tokens_already_stored():
    maintenance.account_import(tokens="sim-super-alpha\n", pool="super", probe_after=False)
    report = maintenance.account_import(tokens="sim-super-alpha\nsim-super-delta\n", pool="basic", probe_after=False)
    assert report.duplicates == [(1, "already stored")]
    assert [line for line, *_ in report.imported] == [2]
    assert Account.objects.count() == 2


def test_dry_run_writes_nothing():
    report = maintenance.account_import(tokens=FILE, pool="heavy", dry_run=True)
    assert len(report.imported) == 3 and report.summary().startswith("would import 3")
    assert Account.objects.count() == 0


def test_a_crash_mid_import_leaves_nothing_half_imported(monkeypatch):
    original = Account.save
    calls = {"n": 0}

    def failing_save(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Account, "save", failing_save)
    with pytest.raises(RuntimeError):
        maintenance.account_import(tokens="sim-super-one1\nsim-super-two2\nsim-super-three\n", pool="super", probe_after=False)
    monkeypatch.setattr(Account, "save", original)
    assert Account.objects.count() == 0


def test_it_rejects_an_unknown_pool():
    with pytest.raises(InvalidRequest) as info:
        maintenance.account_import(tokens="sim-super-x1234", pool="platinum")
    assert info.value.param == "pool"


def test_tokens_are_encrypted_at_rest():
    maintenance.account_import(tokens="sim-super-secret-value", pool="super", probe_after=False)
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT token FROM accounts_account")
        (raw,) = cur.fetchone()
    assert "sim-super-secret-value" not in raw


def test_import_command_prints_the_report(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_bytes(FILE)
    out = io.StringIO()
    call_command("import_accounts", str(path), "--pool", "super", "--tags", "a,b", "--no-probe", stdout=out)
    text = out.getvalue()
    assert "imported 3, duplicate 1, invalid 2" in text
    assert "line 5: invalid (binary data" in text and "line 6: duplicate" in text and "line 8: invalid (too short" in text
    assert Account.objects.filter(tags=["a", "b"]).count() == 3
    with pytest.raises(CommandError):
        call_command("import_accounts", str(tmp_path / "missing.txt"), stdout=io.StringIO())


def test_import_command_reports_and_skips_a_line_that_is_not_a_token(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("sim-super-real1\nnot a token!!\n")
    out = io.StringIO()
    call_command("import_accounts", str(path), "--pool", "super", "--no-probe", stdout=out)
    assert "imported 1, duplicate 0, invalid 1" in out.getvalue()
    assert "line 2: invalid (not a session token" in out.getvalue()
    assert list(Account.objects.values_list("token", flat=True)) == ["sim-super-real1"]


def test_export_masks_tokens_unless_asked():
    maintenance.account_import(tokens="sim-super-exported1\n", pool="super", probe_after=False)
    out = io.StringIO()
    call_command("export_accounts", stdout=out)
    records = json.loads(out.getvalue())
    assert records[0]["token"].endswith("ted1") and "sim-super" not in out.getvalue()
    out = io.StringIO()
    call_command("export_accounts", "--include-secrets", "--format", "tokens", stdout=out)
    assert out.getvalue().strip() == "sim-super-exported1"
    with pytest.raises(CommandError):
        call_command("export_accounts", "--format", "tokens", stdout=io.StringIO())


def test_setup_periodic_tasks_is_idempotent_and_the_runtime_config_wins_over_edits():
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    call_command("setup_periodic_tasks", stdout=io.StringIO())
    out = io.StringIO()
    call_command("setup_periodic_tasks", stdout=out)
    assert "already match" in out.getvalue()
    tasks = {t.name: t for t in PeriodicTask.objects.filter(task="accounts.tasks.quota_refresh")}
    assert set(tasks) == {"accounts: quota refresh basic", "accounts: quota refresh super", "accounts: quota refresh heavy"}
    assert tasks["accounts: quota refresh basic"].interval.every == 86400
    assert json.loads(tasks["accounts: quota refresh super"].kwargs) == {"pool": "super"}
    # a managed row edited behind the config's back (admin shows it read-only) is put back
    edited = tasks["accounts: quota refresh super"]
    edited.interval = IntervalSchedule.objects.create(every=600, period=IntervalSchedule.SECONDS)
    edited.save()
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    assert PeriodicTask.objects.get(name="accounts: quota refresh super").interval.every == 7200
