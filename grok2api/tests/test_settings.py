"""Settings load in both modes; malformed deployment values stop startup with one clear line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.db import connection
out = {
    "engine": settings.DATABASES["default"]["ENGINE"],
    "name": str(settings.DATABASES["default"]["NAME"]),
    "cache": settings.CACHES["default"]["BACKEND"],
    "channels": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "broker": settings.CELERY_BROKER_URL,
    "broker_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "installed": settings.INSTALLED_APPS[0],
}
if connection.vendor == "sqlite":
    with connection.cursor() as c:
        c.execute("PRAGMA journal_mode")
        out["journal_mode"] = c.fetchone()[0]
    # what the background writers do after each flush
    from django.db import close_old_connections
    before = connection.connection
    close_old_connections()
    out["connection_kept"] = connection.connection is before
print(json.dumps(out))
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GROK_", "ACCOUNT_", "SERVER_")) and k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({"DATA_DIR": str(tmp_path / "data"), "LOG_FILE_ENABLED": "false", "GROK2API_ENV_FILE": str(tmp_path / "absent.env")})
    env.update(extra)
    return env


def _probe(env: dict[str, str]) -> dict:
    env = {**env, "DJANGO_SETTINGS_MODULE": "grok2api.settings"}
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_it_runs_zero_setup_on_sqlite_wal_locmem_and_the_filesystem_broker(tmp_path):
    check = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    out = _probe(_env(tmp_path))
    assert out["engine"] == "django.db.backends.sqlite3"
    assert out["name"] == str(tmp_path / "data" / "grok2api.db")
    assert out["journal_mode"] == "wal"
    assert out["connection_kept"] is True
    assert out["cache"].endswith("LocMemCache")
    assert out["channels"] == "channels.layers.InMemoryChannelLayer"
    assert out["broker"] == "filesystem://"
    assert Path(out["broker_options"]["data_folder_in"]).is_dir()
    assert out["installed"] == "daphne"


def test_conn_max_age_0_gives_sqlite_a_new_connection_per_flush(tmp_path):
    assert _probe(_env(tmp_path, CONN_MAX_AGE="0"))["connection_kept"] is False


def test_it_uses_postgresql_and_redis_when_urls_are_given(tmp_path):
    env = _env(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/grok2api_probe", REDIS_URL="redis://127.0.0.1:6379/9")
    out = _probe(env)
    assert out["engine"] == "django.db.backends.postgresql"
    assert out["name"] == "grok2api_probe"
    assert out["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert out["channels"] == "channels_redis.core.RedisChannelLayer"
    assert out["broker"] == "redis://127.0.0.1:6379/9"


POOL_PROBE = """
import json
import django
django.setup()
from django.db import connection
with connection.cursor() as c:
    c.execute("SELECT 1")
    one = c.fetchone()[0]
print(json.dumps({"pool": connection.settings_dict["OPTIONS"].get("pool"), "pool_class": type(connection.pool).__name__, "one": one}))
"""


@pytest.mark.django_db
def test_it_runs_postgresql_on_psycopgs_pool_from_the_reference_pool_variables(tmp_path):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL); .ci/run's first pass provides it")
    sd = connection.settings_dict
    auth = sd["USER"] + (f":{sd['PASSWORD']}" if sd.get("PASSWORD") else "")
    database_url = f"postgres://{auth}@{sd['HOST'] or '127.0.0.1'}:{sd['PORT'] or 5432}/{sd['NAME']}"
    env = _env(tmp_path, DATABASE_URL=database_url, ACCOUNT_SQL_POOL_SIZE="2",
               ACCOUNT_SQL_MAX_OVERFLOW="3", ACCOUNT_SQL_POOL_TIMEOUT="7", ACCOUNT_SQL_POOL_RECYCLE="900",
               DJANGO_SETTINGS_MODULE="grok2api.settings")
    proc = subprocess.run([sys.executable, "-c", POOL_PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"pool": {"min_size": 2, "max_size": 5, "timeout": 7, "max_lifetime": 900}, "pool_class": "ConnectionPool", "one": 1}


def test_it_maps_the_reference_account_storage_variables(tmp_path):
    out = _probe(_env(tmp_path, ACCOUNT_STORAGE="postgresql", ACCOUNT_POSTGRESQL_URL="postgresql+asyncpg://u:p@db:5432/grok"))
    assert out["engine"] == "django.db.backends.postgresql"
    assert out["name"] == "grok"
    out = _probe(_env(tmp_path, ACCOUNT_STORAGE="local", ACCOUNT_LOCAL_PATH=str(tmp_path / "acc.db")))
    assert out["name"] == str(tmp_path / "acc.db")


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("SERVER_PORT", "eighty", "SERVER_PORT: expected an integer"),
        ("SERVER_PORT", "70000", "SERVER_PORT: expected an integer between 1 and 65535"),
        ("SHUTDOWN_GRACE_SECONDS", "-3", "SHUTDOWN_GRACE_SECONDS: expected a number of at least 0"),
        ("SERVER_MAX_CONNECTIONS", "0", "SERVER_MAX_CONNECTIONS: expected an integer between 1 and 1000000"),
        ("ALLOW_OPEN_API", "maybe", "ALLOW_OPEN_API: expected true or false"),
        ("DATABASE_URL", "oracle://db/x", "DATABASE_URL: expected a URL starting with postgres://"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL: expected a URL starting with redis://"),
        ("GROK_PROXY_EGRESS_MODE", "tor", "GROK_PROXY_EGRESS_MODE: expected one of direct, single_proxy, proxy_pool, got 'tor'"),
        ("GROK_CHAT_TIMEOUT", "soon", "GROK_CHAT_TIMEOUT: expected an integer"),
        ("GROK_APP_API_KEY", ",", "GROK_APP_API_KEY: expected comma-separated keys without empty entries"),
        ("GROK_APP_API_KEY", "sk-a,,sk-b", "GROK_APP_API_KEY: expected comma-separated keys without empty entries"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL: expected one of"),
        ("MEMORY_RELEASE_IDLE_SECONDS", "-1", "MEMORY_RELEASE_IDLE_SECONDS: expected a number of at least 0"),
        ("LOGIN_FAILURE_LIMIT", "0", "LOGIN_FAILURE_LIMIT: expected an integer between 1 and 1000, got 0"),
        ("LOGIN_COOLOFF_MINUTES", "soon", "LOGIN_COOLOFF_MINUTES: expected a number"),
        ("CONN_MAX_AGE", "-5", "CONN_MAX_AGE: expected an integer of at least 0, got -5"),
        ("DATABASE_URL", "postgresql:/admin:S3cretPW@db/x",
         "DATABASE_URL: expected a URL starting with postgres:// or postgresql:// or pgsql:// or mysql:// or mariadb:// "
         "or sqlite://, got 'postgresql:/admin:••••@db/x'"),
        ("DATABASE_URL", "postgres://admin:S3cretPW@db:port/x", "DATABASE_URL: cannot parse 'postgres://admin:••••@db:port/x'"),
        ("METRICS_TOKEN", "guessable", "METRICS_TOKEN: expected at least 16 characters (or empty to disable /metrics), got 9"),
    ],
)
def test_it_stops_with_one_line_naming_a_malformed_variable(tmp_path, var, value, expected):
    proc = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=_env(tmp_path, **{var: value}),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("grok2api: configuration error: ")
    assert expected in lines[0]
    assert "S3cretPW" not in proc.stderr


def test_it_reads_a_dotenv_file_and_reports_its_bad_values(tmp_path):
    dotenv = tmp_path / "bad.env"
    dotenv.write_text("# deployment\nSERVER_WORKERS=many\n")
    env = _env(tmp_path, GROK2API_ENV_FILE=str(dotenv))
    proc = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "grok2api: configuration error: SERVER_WORKERS: expected an integer, got 'many'"


def test_the_env_example_file_is_accepted_as_is(tmp_path):
    env = _env(tmp_path, GROK2API_ENV_FILE=str(BASE_DIR / ".env.example"))
    env.pop("DATA_DIR")  # the example's own DATA_DIR=./data, under a scratch working directory
    proc = subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "secret_key").is_file()
