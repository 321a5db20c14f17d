"""Runtime configuration: precedence, validation, persistence, import/export, cross-process reload."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.core.management.base import CommandError

from core.config import (
    ConfigError,
    coerce,
    config,
    config_get,
    config_save,
    config_saved,
    config_seed,
    config_validate,
    defaults,
    env_name,
    env_overrides,
)
from core.models import RuntimeConfig, VersionStamp

BASE_DIR = Path(__file__).resolve().parents[2]

REFERENCE_CONFIG = """
[app]
app_key = "grok2api"
api_key = ["sk-one", "sk-two"]
app_url = "https://gw.example.com"

[features]
stream = false
dynamic_statsig = true
enable_nsfw = true

[proxy]
cf_cookies = "cf_clearance=legacy-wins"
user_agent = "Legacy UA/1.0"

[proxy.clearance]
mode = "flaresolverr"
cf_cookies = "cf_clearance=nested-loses"
flaresolverr_url = "http://flaresolverr:8191"

[retry]
retry_status_codes = [429, 503]

[nsfw]
timeout = 30

[batch]
nsfw_concurrency = 5
refresh_concurrency = 20
"""


def test_it_names_every_group_of_the_spec_and_the_upstream_keys():
    keys = set(defaults())
    for group in ("app.", "logging.", "features.", "proxy.egress.", "proxy.clearance.", "retry.", "account.refresh.",
                  "account.selection.", "cache.local.", "chat.", "image.", "video.", "voice.", "asset.", "batch.", "security."):
        assert any(k.startswith(group) for k in keys), group
    for key in ("web_base_url", "assets_base_url", "ws_base_url", "imagine_public_base_url", "livekit_url", "static_statsig_id"):
        assert f"upstream.{key}" in keys
    assert "security.fetch_allowlist" in keys
    assert env_name("proxy.egress.mode") == "GROK_PROXY_EGRESS_MODE"
    assert env_name("upstream.imagine_public_base_url") == "GROK_UPSTREAM_IMAGINE_PUBLIC_BASE_URL"


@pytest.mark.django_db
def test_it_applies_defaults_then_database_then_environment(monkeypatch):
    assert config_get("chat.timeout") == defaults()["chat.timeout"]
    assert config().sources["chat.timeout"] == "default"

    config_save(values={"chat.timeout": 90, "features.stream": True})
    assert config_get("chat.timeout") == 90
    assert config_get("features.stream") is True
    assert config().sources["chat.timeout"] == "database"

    monkeypatch.setenv("GROK_CHAT_TIMEOUT", "120")
    from core.config import config_snapshot

    config_snapshot().refresh_now()
    assert config_get("chat.timeout") == 120
    assert config().sources["chat.timeout"] == "environment"
    assert config_get("features.stream") is True  # the database still wins over the default
    assert config_saved()["chat.timeout"] == 90  # the environment never writes to the database


@pytest.mark.django_db
def test_it_seeds_the_row_from_the_defaults_file_once():
    assert config_seed() is True
    row = RuntimeConfig.objects.get(pk=1)
    assert row.data["chat"]["timeout"] == defaults()["chat.timeout"]
    assert row.data["proxy"]["egress"]["mode"] == "direct"
    config_save(values={"chat.timeout": 33})
    assert config_seed() is False
    assert config_saved()["chat.timeout"] == 33


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("proxy.egress.mode", "bogus", "expected one of direct, single_proxy, proxy_pool"),
        ("chat.timeout", "soon", "expected an integer"),
        ("chat.timeout", 0, "at least 1"),
        ("features.stream", "maybe", "expected true or false"),
        ("upstream.web_base_url", "ftp://grok.com", "expected a URL starting with http:// or https://"),
        ("upstream.ws_base_url", "https://grok.com", "wss://"),
        ("retry.on_codes", "429,abc", "HTTP status codes"),
        ("retry.reset_session_status_codes", [403, 999], "HTTP status codes"),
        ("proxy.egress.proxy_pool", ["ftp://p:1"], "socks5://"),
        ("security.fetch_allowlist", ["not a host!"], "host names"),
        ("retry.max_retries", 11, "between 0 and 10"),
        ("account.refresh.after_use_min_interval_sec", -1, "at least 0"),
        ("responses.retention_days", 0, "at least 1"),
    ],
)
def test_it_rejects_bad_values_with_one_line_naming_the_key(key, value, fragment):
    with pytest.raises(ConfigError) as info:
        coerce(key, value)
    assert str(info.value).startswith(key + ": ")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_it_coerces_text_from_the_environment_to_the_default_type():
    assert coerce("account.refresh.after_use_min_interval_sec", "0") == 0  # probe after every success
    assert coerce("features.stream", "false") is False
    assert coerce("chat.timeout", "45") == 45
    assert coerce("proxy.egress.proxy_pool", "http://a:1, socks5://b:2") == ["http://a:1", "socks5://b:2"]
    assert coerce("security.fetch_allowlist", '["127.0.0.1/32", "sim.local"]') == ["127.0.0.1/32", "sim.local"]
    assert coerce("retry.on_codes", [429, 503]) == "429,503"
    assert coerce("app.api_key", " a , b ") == "a,b"
    assert coerce("logging.file_level", "debug") == "DEBUG"


def test_it_reports_a_bad_environment_override_by_variable_name(monkeypatch):
    monkeypatch.setenv("GROK_PROXY_EGRESS_MODE", "bogus")
    with pytest.raises(ConfigError) as info:
        env_overrides()
    assert str(info.value).startswith("GROK_PROXY_EGRESS_MODE: expected one of")


def test_it_validates_a_whole_submission_and_skips_dropped_keys():
    clean, errors = config_validate({"chat.timeout": "12", "features.enable_nsfw": True, "image.timeout": "x", "nope.key": 1})
    assert clean == {"chat.timeout": 12}
    assert set(errors) == {"image.timeout", "nope.key"}


@pytest.mark.django_db
def test_it_saves_nothing_when_one_value_is_bad():
    config_seed()
    before = RuntimeConfig.objects.get(pk=1).data
    with pytest.raises(ConfigError):
        config_save(values={"chat.timeout": 99, "proxy.egress.mode": "bogus"})
    assert RuntimeConfig.objects.get(pk=1).data == before


@pytest.mark.django_db
def test_it_stores_secret_values_encrypted():
    config_save(values={"app.api_key": "sk-very-secret-1234", "proxy.egress.proxy_pool": ["http://user:pw-secret@p:1"]})
    raw = json.dumps(RuntimeConfig.objects.get(pk=1).data)
    assert "sk-very-secret-1234" not in raw
    assert "pw-secret" not in raw
    assert config_get("app.api_key") == "sk-very-secret-1234"
    assert config_get("proxy.egress.proxy_pool") == ["http://user:pw-secret@p:1"]


@pytest.mark.django_db
def test_it_bumps_the_config_stamp_on_save():
    config_save(values={"chat.timeout": 61})
    first = VersionStamp.objects.get(name="config").version
    config_save(values={"chat.timeout": 62})
    assert VersionStamp.objects.get(name="config").version != first  # moved (a fresh clock value)


# -- import_config / export_config --


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.django_db
def test_it_imports_the_reference_config_with_legacy_aliases(tmp_path):
    config_seed()
    out, err = StringIO(), StringIO()
    call_command("import_config", str(_write(tmp_path, REFERENCE_CONFIG)), stdout=out, stderr=err)
    saved = config_saved()
    assert saved["app.api_key"] == "sk-one,sk-two"
    assert saved["app.app_url"] == "https://gw.example.com"
    assert saved["features.stream"] is False
    assert saved["proxy.clearance.cf_cookies"] == "cf_clearance=legacy-wins"  # flat legacy key wins
    assert saved["proxy.clearance.user_agent"] == "Legacy UA/1.0"
    assert saved["proxy.clearance.mode"] == "none"  # flaresolverr is not supported
    assert saved["retry.on_codes"] == "429,503"
    assert saved["batch.refresh_concurrency"] == 20
    warnings = err.getvalue()
    for dropped in ("features.dynamic_statsig", "features.enable_nsfw", "proxy.clearance.flaresolverr_url", "nsfw.timeout", "batch.nsfw_concurrency"):
        assert f"{dropped}: dropped by policy" in warnings
    assert "sk-one" not in out.getvalue()  # the change report masks secrets


@pytest.mark.django_db
def test_it_warns_about_imported_settings_that_do_nothing(tmp_path):
    config_seed()
    err = StringIO()
    path = _write(tmp_path, '[features]\nstream = true\n\n[proxy]\ncf_clearance = "legacy-clearance"\n')
    call_command("import_config", str(path), stdout=StringIO(), stderr=err)
    warnings = err.getvalue().splitlines()
    assert any(w.startswith("warning: features.stream = true has no effect: a request that omits `stream` always gets JSON")
               for w in warnings), warnings
    assert any(w.startswith("warning: proxy.clearance.cf_clearance is set but proxy.clearance.mode is 'none', so it is never sent")
               for w in warnings), warnings
    assert "legacy-clearance" not in err.getvalue()
    # with the mode the cookie needs, nothing to warn about
    err = StringIO()
    call_command("import_config", str(_write(tmp_path, '[proxy.clearance]\nmode = "manual"\n')), stdout=StringIO(), stderr=err)
    assert "never sent" not in err.getvalue()


@pytest.mark.django_db
def test_the_runtime_config_page_warns_about_settings_that_do_nothing(admin_client):
    config_seed()
    config_save(values={"proxy.clearance.cf_clearance": "legacy-clearance", "features.stream": True})
    page = admin_client.get(reverse("admin:grok2api_runtimeconfig_change", args=[1])).content.decode()
    assert "Saved but without effect: proxy.clearance.cf_clearance is set but proxy.clearance.mode is &#x27;none&#x27;, so it is never sent" in page
    assert "features.stream = true has no effect" in page


@pytest.mark.django_db
def test_it_changes_nothing_when_the_file_has_unknown_keys(tmp_path):
    config_seed()
    before = RuntimeConfig.objects.get(pk=1).data
    stamp_before = list(VersionStamp.objects.values_list("name", "version"))
    path = _write(tmp_path, '[chat]\ntimeout = 99\n\n[app]\nap_key = "typo"\n\n[mystery]\nx = 1\n')
    err = StringIO()
    with pytest.raises(CommandError) as info:
        call_command("import_config", str(path), stdout=StringIO(), stderr=err)
    assert info.value.returncode == 2
    assert "app.ap_key: unknown key" in err.getvalue()
    assert "mystery.x: unknown key" in err.getvalue()
    assert RuntimeConfig.objects.get(pk=1).data == before
    assert list(VersionStamp.objects.values_list("name", "version")) == stamp_before


@pytest.mark.django_db
def test_it_changes_nothing_on_a_bad_value_or_a_broken_file(tmp_path):
    config_seed()
    before = RuntimeConfig.objects.get(pk=1).data
    with pytest.raises(CommandError) as info:
        call_command("import_config", str(_write(tmp_path, '[chat]\ntimeout = 99\n[proxy.egress]\nmode = "tor"\n')), stdout=StringIO(), stderr=StringIO())
    assert info.value.returncode == 2
    with pytest.raises(CommandError) as info:
        call_command("import_config", str(_write(tmp_path, "[chat\ntimeout = ")), stdout=StringIO(), stderr=StringIO())
    assert "not valid TOML" in str(info.value)
    assert RuntimeConfig.objects.get(pk=1).data == before


@pytest.mark.django_db
def test_it_only_reports_on_a_dry_run(tmp_path):
    config_seed()
    out = StringIO()
    call_command("import_config", str(_write(tmp_path, "[chat]\ntimeout = 77\n")), "--dry-run", stdout=out, stderr=StringIO())
    assert "chat.timeout: 60 -> 77" in out.getvalue()
    assert config_saved()["chat.timeout"] == 60


@pytest.mark.django_db
def test_it_exports_with_secrets_masked_and_round_trips(tmp_path):
    import tomllib

    config_save(values={"app.api_key": "sk-secret-abcd", "proxy.egress.proxy_url": "socks5://u:hunter2@10.0.0.1:1080", "chat.timeout": 45})
    masked = StringIO()
    call_command("export_config", stdout=masked)
    text = masked.getvalue()
    assert "sk-secret-abcd" not in text and "hunter2" not in text
    assert "abcd" in text and "10.0.0.1:1080" in text
    assert tomllib.loads(text)["chat"]["timeout"] == 45

    clear = StringIO()
    call_command("export_config", "--include-secrets", stdout=clear)
    assert "sk-secret-abcd" in clear.getvalue() and "hunter2" in clear.getvalue()

    # Importing the masked export keeps the real secrets.
    config_save(values={"chat.timeout": 50})
    call_command("import_config", str(_write(tmp_path, text)), stdout=StringIO(), stderr=StringIO())
    assert config_saved()["app.api_key"] == "sk-secret-abcd"
    assert config_saved()["proxy.egress.proxy_url"] == "socks5://u:hunter2@10.0.0.1:1080"
    assert config_saved()["chat.timeout"] == 45


# -- a second process sees a save --

WATCHER = """
import os, sys, time
import django
django.setup()
from core.config import config_get
print("ready", config_get("chat.timeout"), flush=True)
last = None
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    value = config_get("chat.timeout")
    if value != last:
        print("value", value, flush=True)
        last = value
    time.sleep(0.05)
"""


@pytest.mark.django_db(transaction=True)
def test_a_second_process_sees_a_saved_change_without_restart():
    from grok2api.testing.fixtures import database_env
    from django.conf import settings

    config_seed()
    env = {**os.environ, **database_env(), "SNAPSHOT_POLLER": "1", "SNAPSHOT_POLL_INTERVAL": "0.2",
           "SECRET_KEY": settings.SECRET_KEY, "LOG_FILE_ENABLED": "false"}
    if not env.get("DATABASE_URL"):
        env.pop("DATABASE_URL")
    proc = subprocess.Popen([sys.executable, "-c", WATCHER], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["ready", "60"]
        assert proc.stdout.readline().split() == ["value", "60"]
        config_save(values={"chat.timeout": 95})
        # Upper bound only (the poll interval is 0.2 s); readline blocks until the watcher prints.
        line = proc.stdout.readline().split()
        assert line == ["value", "95"], proc.stderr.read() if not line else line
    finally:
        proc.kill()
        proc.wait()
