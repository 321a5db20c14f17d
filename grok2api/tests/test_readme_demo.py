"""README "Try it without an account", run as written (bash, the real commands, real sockets).

The block is taken from README.md itself; only the machine-specific parts are replaced: the
interpreter, free ports instead of 9010/8011, and temporary paths instead of ./data-demo and /tmp.
`make install` is skipped (the test already runs in the installed environment).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from grok2api.testing.fixtures import free_port

BASE_DIR = Path(__file__).resolve().parents[2]
README = (BASE_DIR / "README.md").read_text()


def _demo_script(tmp_path: Path, *, sim_port: int, gateway_port: int) -> str:
    section = README.split("## Try it without an account", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    replacements = {
        "make install": ":",
        ".venv/bin/python": sys.executable,
        "9010": str(sim_port),
        "8011": str(gateway_port),
        "./data-demo": str(tmp_path / "data-demo"),
        "/tmp/sim-tokens.txt": str(tmp_path / "sim-tokens.txt"),
        "/tmp/demo-serve.log": str(tmp_path / "demo-serve.log"),
    }
    for old, new in replacements.items():
        assert old in block, f"the README demo no longer mentions {old!r}"
        block = block.replace(old, new)
    return block


def _run_demo(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GROK_", "ACCOUNT_", "SERVER_")) and k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "DATA_DIR")}
    env.update({"LOG_FILE_ENABLED": "false", "GROK2API_ENV_FILE": str(tmp_path / "absent.env")})
    proc = subprocess.Popen(["bash", "-c", script], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        try:  # whatever the script left behind (it kills its own servers at the end)
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def test_the_readme_demo_answers_from_the_simulator_on_a_fresh_clone(tmp_path):
    script = _demo_script(tmp_path, sim_port=free_port(), gateway_port=free_port())
    result = _run_demo(tmp_path, script)
    assert "Traceback" not in result.stdout, result.stdout
    assert "no such table" not in result.stdout
    assert re.search(r'"object":\s*"chat\.completion"', result.stdout), result.stdout
    assert "imported 3, duplicate 0, invalid 0" in result.stdout


def test_the_readme_demo_stops_with_one_line_when_its_port_is_taken(tmp_path):
    """A server already on the demo's port (say, an earlier demo or another program) gets no request."""
    gateway_port = free_port()
    taken = socket.socket()
    taken.bind(("127.0.0.1", gateway_port))
    taken.listen()
    taken.setblocking(False)
    try:
        result = _run_demo(tmp_path, _demo_script(tmp_path, sim_port=free_port(), gateway_port=gateway_port))
        with pytest.raises(BlockingIOError):
            taken.accept()  # nothing connected to the other server
    finally:
        taken.close()
    assert f"cannot listen on 127.0.0.1:{gateway_port}: Address already in use" in result.stdout, result.stdout
    assert "Traceback" not in result.stdout
    assert "chat.completion" not in result.stdout
