"""The pool and media modules import each other in one direction only (issue 17 §5/§6): no import
cycle runs through accounts/ or media/, and media never imports gateway/services.py (the chat API
above it). Read from the source with `ast`, so imports inside functions count too."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("accounts", "media", "gateway", "webui", "grok2api")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if {"tests", "migrations", "testing"} & set(rel.parts):
                continue
            out[".".join(rel.with_suffix("").parts).removesuffix(".__init__")] = path
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep == goal:
                return True
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return False


def test_no_import_cycle_runs_through_the_pool_or_media():
    graph = _graph()
    cyclic = sorted(m for m in graph if m.startswith(("accounts.", "media.")) and _reaches(graph, m, m))
    assert cyclic == []


def test_media_does_not_import_the_chat_api():
    graph = _graph()
    assert sorted(m for m in graph if m.startswith("media.") and "gateway.services" in graph[m]) == []
