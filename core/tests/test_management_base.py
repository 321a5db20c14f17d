"""Commands on a database that is not set up or not reachable: one line, exit code 2, no password."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from grok2api.testing.fixtures import free_port

BASE_DIR = Path(__file__).resolve().parents[2]
NOT_SET_UP = "CommandError: the database is not set up: run `python manage.py migrate` (or `make run` once)"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GROK_", "ACCOUNT_", "SERVER_")) and k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({"DATA_DIR": str(tmp_path / "data"), "LOG_FILE_ENABLED": "false", "GROK2API_ENV_FILE": str(tmp_path / "absent.env")})
    env.update(extra)
    return env


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ("import_accounts", "TOKENS"), ("export_accounts",), ("refresh_quotas",), ("setup_periodic_tasks",),
    ("ensure_admin",), ("import_config", "CONFIG"), ("export_config",),
])
def test_a_database_command_on_a_fresh_clone_says_in_one_line_to_migrate(tmp_path, args):
    (tmp_path / "tokens.txt").write_text("sim-super-demo1\n")
    (tmp_path / "config.toml").write_text("[features]\nthinking = false\n")
    args = [{"TOKENS": str(tmp_path / "tokens.txt"), "CONFIG": str(tmp_path / "config.toml")}.get(a, a) for a in args]
    proc = _manage(tmp_path, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(NOT_SET_UP), proc.stderr
    assert "migration(s) pending" in proc.stderr


def test_a_database_command_runs_once_migrated(tmp_path):
    (tmp_path / "tokens.txt").write_text("sim-super-demo1\n")
    assert _manage(tmp_path, "migrate", "-v", "0").returncode == 0
    proc = _manage(tmp_path, "import_accounts", str(tmp_path / "tokens.txt"), "--pool", "super", "--no-probe")
    assert proc.returncode == 0, proc.stderr
    assert "imported 1" in proc.stdout


@pytest.mark.parametrize("command", [("migrate",), ("serve", "--no-worker", "--port", "0"), ("import_accounts", "-")])
def test_an_unreachable_database_stops_with_one_line_and_no_password(tmp_path, command):
    url = f"postgres://admin:S3cretPW@127.0.0.1:{free_port()}/g2a"  # nothing listens there
    if command[-1] == "0":
        command = (*command[:-1], str(free_port()))
    proc = _manage(tmp_path, *command, DATABASE_URL=url)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("grok2api: cannot use the database at 127.0.0.1:")
    assert "S3cretPW" not in proc.stderr + proc.stdout
