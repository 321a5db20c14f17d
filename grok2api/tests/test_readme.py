"""The README tells the truth about configuration: every key and every variable is documented."""
from __future__ import annotations

import re
from pathlib import Path

from core.config import defaults

BASE_DIR = Path(__file__).resolve().parents[2]
README = (BASE_DIR / "README.md").read_text()


def test_every_runtime_config_key_is_in_the_readme_table():
    missing = [key for key in defaults() if f"| `{key}` |" not in README]
    assert missing == []


def test_every_variable_of_the_env_example_is_in_the_readme():
    variables = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (BASE_DIR / ".env.example").read_text(), re.M)
    missing = [v for v in variables if f"`{v}`" not in README and not v.startswith(("GROK_", "POSTGRES_"))]
    assert variables and missing == []


def test_every_variable_read_by_envcheck_is_in_the_env_example():
    source = (BASE_DIR / "core" / "envcheck.py").read_text()
    read = set(re.findall(r'_(?:raw|bool|int|float|str|url)\("([A-Z][A-Z0-9_]+)"', source))
    read |= set(re.findall(r'\("([A-Z][A-Z0-9_]+)", \d', source))
    example = (BASE_DIR / ".env.example").read_text()
    missing = sorted(v for v in read if not re.search(rf"^{v}=", example, re.M) and v != "DJANGO_SECRET_KEY")
    assert missing == []


def test_the_sections_for_the_other_areas_are_marked():
    for area in ("simulator", "pool", "media", "webui", "bench"):
        assert f"<!-- section:{area} -->" in README
