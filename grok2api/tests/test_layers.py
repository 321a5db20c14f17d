"""The layers of .importlinter hold (README "Architecture"): import-linter over the real tree, and
over a copy of the tree with one import added against them, which it must refuse.

`lint-imports` is run as the installed command, in a subprocess, without its cache (so nothing is
written into the repository and every run reads the sources as they are now).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("grokweb", "core", "grok2api", "accounts", "media", "gateway", "webui")


def lint(cwd: Path) -> subprocess.CompletedProcess:
    command = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(command), "--no-cache", "--no-logo", str(cwd / ".importlinter")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _python_only(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or not (n.endswith(".py") or os.path.isdir(os.path.join(directory, n)))]


@pytest.fixture
def tree(tmp_path):
    """A copy of the packages' Python files and the contracts, to break on purpose."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=_python_only)
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "contract", "names"),
    [
        # the client reaching for Django, or for an app, through any chain
        ("grokweb/registry.py", "import django.conf", "imports neither Django nor any app", "grokweb.registry"),
        ("grokweb/parse.py", "from core import config", "imports neither Django nor any app", "grokweb.parse"),
        # a layer importing one above it: the pool reaching for the API, the core for the pool
        ("accounts/pool.py", "from gateway import services", "nothing imports a layer above its own", "accounts.pool"),
        ("core/snapshots.py", "import accounts.models", "nothing imports a layer above its own", "core.snapshots"),
        # a cycle between two apps: media already sits below the gateway, which imports it
        ("media/cache.py", "import gateway.auth", "nothing imports a layer above its own", "media.cache"),
        # a cycle inside the client: the parser imports the events
        ("grokweb/events.py", "from grokweb import parse", "No import cycle between the modules of the Grok Web client",
         ".parse -> .events"),
        # an app reaching for the wiring on top
        ("webui/access.py", "from grok2api import urls", "nothing imports a layer above its own", "webui.access"),
        # the core reaching for the wiring: grok2api and the core would import each other
        ("core/crypto.py", "import grok2api.health", "nothing imports a layer above its own", "core.crypto"),
    ],
)
def test_an_import_against_the_layers_breaks_the_build(tree, module, line, contract, names):
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # added by the test\n")
    result = lint(tree)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout + result.stderr
    assert names in result.stdout
