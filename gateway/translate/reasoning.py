"""Reasoning display (docs/upstream-protocol.md §4.8): how Grok's thinking tokens become client-visible reasoning text.

Raw mode: a `header`/`summary` token is one line (leading "- " removed, "\\n" appended, an exact
repeat of the previous line dropped); raw `analysis`/untagged fragments pass through as they are
(they can be partial words); `\\n[Agent N]\\n` is inserted when the heavy-mode rollout changes;
server tool cards become one line each (`🔍 web_search: <query>` …).
Summary mode: nothing is streamed per token; `summary()` condenses everything seen into a few
bullets with a simple heuristic (headers first, then the first sentence of each summary line).
"""
from __future__ import annotations

import re

_TOOL_ICONS = {
    "web_search": ("🔍", "query"),
    "x_search": ("🔍", "query"),
    "x_keyword_search": ("🔍", "query"),
    "x_semantic_search": ("🔍", "query"),
    "browse_page": ("🌐", "url"),
    "code_execution": ("💻", ""),
    "search_images": ("🖼️", "query"),
    "image_search": ("🖼️", "query"),
}
_LINE_TAGS = frozenset({"header", "summary"})
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


def tool_line(tool_name: str, args: dict) -> str:
    icon, key = _TOOL_ICONS.get(tool_name, ("🔧", "query"))
    value = args.get(key) if key else None
    if value is None and tool_name not in _TOOL_ICONS:
        value = args.get("query") or args.get("url")
    if isinstance(value, str) and value:
        return f"{icon} {tool_name}: {value}"
    return f"{icon} {tool_name}"


class ReasoningFormatter:
    """Turns thinking events into display text. Every method returns the text to show ("" for none)."""

    __slots__ = ("_last_line", "_rollout", "_at_line_start", "_lines", "_fragments")

    def __init__(self) -> None:
        self._last_line = ""
        self._rollout: str | None = None
        self._at_line_start = True
        self._lines: list[tuple[str, str]] = []  # (tag, line) for the summariser
        self._fragments: list[str] = []

    def thinking(self, text: str, tag: str, rollout_id: str | None) -> str:
        out = ""
        if rollout_id and rollout_id != self._rollout:
            self._rollout = rollout_id
            out = ("" if self._at_line_start else "\n") + f"\n[{rollout_id}]\n"
            self._at_line_start = True
            self._last_line = ""
        if tag in _LINE_TAGS:
            line = text.strip()
            if line.startswith("- "):
                line = line[2:].lstrip()
            if not line or line == self._last_line:
                return out
            self._last_line = line
            self._lines.append((tag, line))
            out += ("" if self._at_line_start else "\n") + line + "\n"
            self._at_line_start = True
            return out
        if not text:
            return out
        self._fragments.append(text)
        self._at_line_start = text.endswith("\n")
        self._last_line = ""
        return out + text

    def line(self, line: str) -> str:
        """A gateway-made line (tool card, media progress)."""
        if line == self._last_line:
            return ""
        self._last_line = line
        self._lines.append(("tool", line))
        out = ("" if self._at_line_start else "\n") + line + "\n"
        self._at_line_start = True
        return out

    def summary(self, max_items: int = 6, max_len: int = 160) -> str:
        """Heuristic bullet summary of all thinking seen (summary mode)."""
        picked: list[str] = []
        seen: set[str] = set()

        def add(item: str) -> None:
            item = item.strip().lstrip("-•* ").strip()
            if len(item) > max_len:
                item = item[: max_len - 1].rstrip() + "…"
            key = item.lower()
            if item and key not in seen and len(picked) < max_items:
                seen.add(key)
                picked.append(item)

        for tag, line in self._lines:
            if tag in ("header", "tool"):
                add(line)
        for tag, line in self._lines:
            if tag == "summary":
                add(_SENTENCE.split(line, maxsplit=1)[0])
        if self._fragments and len(picked) < max_items:
            raw = " ".join("".join(self._fragments).split())
            for sentence in _SENTENCE.split(raw)[:2]:
                add(sentence)
        return "".join(f"- {item}\n" for item in picked)
