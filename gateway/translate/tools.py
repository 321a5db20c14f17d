"""Function-tool emulation (docs/upstream-protocol.md §5): Grok Web has no client tools, so they live in text.

Wire formats this module speaks:
- Out (prompt): a `[system]:` block describing the declared tools and demanding the canonical XML
      <tool_calls>
        <tool_call>
          <tool_name>NAME</tool_name>
          <parameters>{"compact":"json"}</parameters>
        </tool_call>
      </tool_calls>
  and the same XML for assistant tool calls replayed from history (§5.2).
- In (answer text): the canonical XML, a JSON object `{"tool_calls":[…]}`, a bare JSON array of
  calls, `<function_call><name>…</name><arguments>…</arguments></function_call>`,
  `<invoke name="…">JSON or <parameter name="…">…</parameter></invoke>`, any of them inside a
  markdown code fence. JSON is parsed tolerantly (raw newlines in strings, trailing commas).
  Calls to undeclared tools are dropped; arguments are re-serialised compact.

`ToolSieve` is the streaming half (§5.4): text flows through until something that may start a
call appears; that part is held (a possible partial tag at a chunk boundary too) until it can be
decided, then released as text or turned into calls. Once calls were emitted the rest of the
answer is swallowed.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.jsonbody import json_depth_check, json_too_deep
from gateway.translate.common import IdFactory, ToolCall, ToolChoice, ToolSpec, new_id

# --------------------------------------------------------------------------- prompt (§5.1)

_WHEN = {
    "auto": "Call a tool only when the request clearly needs it; otherwise answer normally in plain text.",
    "required": (
        "You MUST answer with a <tool_calls> block calling at least one of the tools above. If you are unsure "
        "about a parameter, make your best guess instead of asking."
    ),
}


def _compact(value: Any) -> str:
    return orjson.dumps(value).decode()


def tool_prompt(tools: Iterable[ToolSpec], choice: ToolChoice) -> str:
    entries = []
    for tool in tools:
        entries.append(
            f"Tool: {tool.name}\nDescription: {tool.description or '(none)'}\nParameters: {_compact(tool.parameters or {})}"
        )
    if choice.mode == "function" and choice.name:
        when = (
            f"You MUST call the tool `{choice.name}` now. Output only the <tool_calls> block for it and no plain text."
        )
    else:
        when = _WHEN.get(choice.mode, _WHEN["auto"])
    return (
        "In this conversation you can call functions that the user's application runs for you. "
        "The application executes a call and sends the result back in a later message.\n\n"
        "AVAILABLE TOOLS:\n\n" + "\n\n".join(entries) + "\n\n"
        "HOW TO CALL: reply with exactly this XML and nothing else:\n"
        "<tool_calls>\n"
        "  <tool_call>\n"
        "    <tool_name>TOOL_NAME</tool_name>\n"
        '    <parameters>{"key": "value"}</parameters>\n'
        "  </tool_call>\n"
        "</tool_calls>\n\n"
        "FORMAT RULES:\n"
        "- <parameters> holds valid JSON on a single line, matching the tool's schema.\n"
        "- To make several calls, put several <tool_call> elements inside the one <tool_calls> element.\n"
        "- No markdown code fences around the XML, and no text before or after it.\n"
        "WRONG (never do this):\n"
        "I'll call the tool now.\n"
        "```xml\n<tool_calls>…</tool_calls>\n```\n\n"
        f"WHEN TO CALL: {when}\n"
        "This rule applies even if you believe you cannot fulfil the request otherwise."
    )


def calls_to_xml(calls: Iterable[ToolCall]) -> str:
    """Assistant tool calls from history, in the very XML the model is asked to produce (§5.2)."""
    out = ["<tool_calls>"]
    for call in calls:
        out.append(
            f"  <tool_call>\n    <tool_name>{call.name}</tool_name>\n"
            f"    <parameters>{normalise_arguments(call.arguments)}</parameters>\n  </tool_call>"
        )
    out.append("</tool_calls>")
    return "\n".join(out)


def normalise_arguments(arguments: str | dict | None, *, param: str | None = None) -> str:
    """Arguments as compact JSON text; text that is not JSON is kept verbatim.

    With `param` (client-supplied arguments) JSON nested deeper than MAX_JSON_DEPTH is a 400
    naming it; without (our own history replay) such text is kept verbatim like non-JSON.
    """
    if arguments is None or arguments == "":
        return "{}"
    if isinstance(arguments, (dict, list)):
        return _compact(arguments)
    value = _loads_any_depth(arguments)
    if value is _FAIL:
        return arguments
    if param is not None:
        json_depth_check(value, param=param)
    elif json_too_deep(value):
        return arguments
    return _compact(value)


# --------------------------------------------------------------------------- tolerant JSON

_FAIL = object()
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _repair(text: str) -> str:
    """Escape raw control characters inside strings and drop trailing commas."""
    out: list[str] = []
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            elif ch == "\n":
                ch = "\\n"
            elif ch == "\r":
                ch = "\\r"
            elif ch == "\t":
                ch = "\\t"
        elif ch == '"':
            in_str = True
        out.append(ch)
    return _TRAILING_COMMA.sub(r"\1", "".join(out))


def _loads_any_depth(text: str) -> Any:
    text = text.strip()
    if not text:
        return _FAIL
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return orjson.loads(_repair(text))
    except orjson.JSONDecodeError:
        return _FAIL


def loads_tolerant(text: str) -> Any:
    """Tolerant JSON, or _FAIL. Values nested deeper than MAX_JSON_DEPTH are _FAIL too: orjson
    reads 1024 levels but writes only 255, and every value parsed here is written out again."""
    value = _loads_any_depth(text)
    if value is not _FAIL and json_too_deep(value):
        return _FAIL
    return value


def json_end(text: str, start: int) -> int:
    """Index just past the JSON value starting at text[start] ('{' or '['), or -1 if incomplete."""
    depth = 0
    in_str = esc = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


# --------------------------------------------------------------------------- parsing (§5.3)

_DETECT = re.compile(r'<tool_calls|<tool_call|<function_call|<invoke\s|"tool_calls"\s*:')
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.S)
_XML_CALL = re.compile(r"<tool_call\b[^>]*>(.*?)</tool_call>", re.S)
_XML_NAME = re.compile(r"<(?:tool_name|name)>\s*(.*?)\s*</(?:tool_name|name)>", re.S)
_XML_PARAMS = re.compile(r"<(parameters|arguments|input)>(.*?)</\1>", re.S)
_FUNC_CALL = re.compile(r"<function_call\b[^>]*>(.*?)</function_call>", re.S)
_INVOKE = re.compile(r"<invoke\s+name\s*=\s*[\"']([^\"']+)[\"']\s*>(.*?)</invoke>", re.S)
_PARAM_EL = re.compile(r"<parameter\s+name\s*=\s*[\"']([^\"']+)[\"']\s*>(.*?)</parameter>", re.S)


def looks_like_calls(text: str) -> bool:
    return _DETECT.search(text) is not None


def _arguments(raw: Any) -> dict | None:
    """Client-facing arguments must be a JSON object; None when they cannot be made one."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        value = loads_tolerant(raw)
        if isinstance(value, str):  # double-encoded JSON
            value = loads_tolerant(value)
        return value if isinstance(value, dict) else None
    return None


def _from_json_items(items: Any) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    if not isinstance(items, list):
        return out
    for item in items:
        if not isinstance(item, dict):
            continue
        fn = item.get("function") if isinstance(item.get("function"), dict) else item
        name = fn.get("name") or fn.get("tool_name")
        raw = next((fn[k] for k in ("arguments", "input", "parameters") if k in fn), None)
        args = _arguments(raw)
        if isinstance(name, str) and name and args is not None:
            out.append((name, args))
    return out


def _parse_xml(text: str) -> list[tuple[str, dict]]:
    out = []
    for body in _XML_CALL.findall(text):
        name = _XML_NAME.search(body)
        params = _XML_PARAMS.search(body)
        args = _arguments(params.group(2) if params else None)
        if name and name.group(1) and args is not None:
            out.append((name.group(1).strip(), args))
    return out


def _parse_json(text: str) -> list[tuple[str, dict]]:
    for opener in ("{", "["):
        start = text.find(opener)
        while start >= 0:
            end = json_end(text, start)
            chunk = text[start:end] if end > 0 else text[start:]
            value = loads_tolerant(chunk)
            if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
                return _from_json_items(value["tool_calls"])
            if isinstance(value, list):
                found = _from_json_items(value)
                if found:
                    return found
            start = text.find(opener, start + 1) if end < 0 else text.find(opener, end)
    return []


def _parse_other_tags(text: str) -> list[tuple[str, dict]]:
    out = []
    for body in _FUNC_CALL.findall(text):
        name = _XML_NAME.search(body)
        params = _XML_PARAMS.search(body)
        args = _arguments(params.group(2) if params else None)
        if name and args is not None:
            out.append((name.group(1).strip(), args))
    for name, body in _INVOKE.findall(text):
        elements = _PARAM_EL.findall(body)
        if elements:
            args = {}
            for key, raw in elements:
                value = loads_tolerant(raw)
                args[key] = raw.strip() if value is _FAIL else value
        else:
            args = _arguments(body)
        if args is not None:
            out.append((name.strip(), args))
    return out


def parse_tool_calls(text: str, *, allowed: Iterable[str], ids: IdFactory | None = None) -> list[ToolCall]:
    """All tool calls found in `text` (empty when none); undeclared tool names are dropped."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] if "```" in text else []
    candidates.append(text)
    found: list[tuple[str, dict]] = []
    for chunk in candidates:
        if not looks_like_calls(chunk) and not chunk.lstrip().startswith("["):
            continue
        for parser in (_parse_xml, _parse_json, _parse_other_tags):
            found = parser(chunk)
            if found:
                break
        if found:
            break
    allowed_set = set(allowed)
    make = ids or new_id
    return [ToolCall(make("call_", 6), name, _compact(args)) for name, args in found if name in allowed_set]


# --------------------------------------------------------------------------- streaming sieve (§5.4)

_TAGS = ("tool_calls", "tool_call", "function_calls", "function_call", "invoke")
_STARTS = ("<tool_call", "<function_call", "<invoke", "```")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")


def _partial_suffix(text: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of a start marker."""
    best = 0
    tail = text[-16:]
    for marker in _STARTS:
        for n in range(min(len(marker) - 1, len(tail)), best, -1):
            if marker.startswith(tail[-n:]):
                best = n
                break
    return best


class ToolSieve:
    """Splits streamed answer text into plain text and tool calls.

    feed(text) / finish() return a list of items: a str (text to forward) or a list[ToolCall].
    """

    __slots__ = ("_allowed", "_ids", "_buf", "_mode", "_end", "_seen_text", "_lead", "done")

    def __init__(self, *, allowed: Iterable[str], ids: IdFactory | None = None) -> None:
        self._allowed = frozenset(allowed)
        self._ids = ids
        self._buf = ""  # undecided text (partial marker, or a held candidate block)
        self._mode = ""  # "" scanning | "tag" | "fence" | "json"
        self._end = ""  # closing marker for mode "tag"
        self._seen_text = False  # a non-whitespace character was already released
        self._lead = ""  # leading whitespace before a held block: dropped if the block is a call
        self.done = False  # calls emitted: the rest of the answer is swallowed

    def feed(self, text: str) -> list:
        if self.done:
            return []
        if not self._buf and not self._mode and self._seen_text and "<" not in text and "`" not in text:
            return [text]  # hot path: nothing that could start a call
        self._buf += text
        out: list = []
        self._run(out)
        return out

    def finish(self) -> list:
        if self.done:
            return []
        out: list = []
        if self._mode:
            calls = parse_tool_calls(self._buf, allowed=self._allowed, ids=self._ids)
            if calls:
                self.done = True
                out.append(calls)
                self._buf = ""
                return out
        self._release(out, self._buf)
        if self._lead:  # a whitespace-only answer
            out.append(self._lead)
            self._lead = ""
        self._buf = ""
        self._mode = ""
        return out

    # -- internals

    def _release(self, out: list, text: str) -> None:
        if not text:
            return
        if not self._seen_text:
            if not text.strip():
                self._lead += text  # leading whitespace waits: it is dropped if a call follows
                return
            text, self._lead = self._lead + text, ""
            self._seen_text = True
        if out and isinstance(out[-1], str):
            out[-1] += text
        else:
            out.append(text)

    def _try_calls(self, out: list, block: str) -> bool:
        calls = parse_tool_calls(block, allowed=self._allowed, ids=self._ids)
        if calls:
            self.done = True
            self._buf = ""
            self._lead = ""
            self._mode = ""
            out.append(calls)
            return True
        return False

    def _run(self, out: list) -> None:
        while self._buf and not self.done:
            if self._mode == "":
                if not self._scan(out):
                    return
            elif self._mode == "tag":
                at = self._buf.find(self._end)
                if at < 0:
                    return
                end = at + len(self._end)
                block, rest = self._buf[:end], self._buf[end:]
                if self._try_calls(out, block):
                    return
                self._mode = ""
                self._buf = rest
                self._release(out, block)
            elif self._mode == "fence":
                first_nl = self._buf.find("\n")
                close = self._buf.find("```", first_nl + 1) if first_nl >= 0 else -1
                if close < 0:
                    return
                end = close + 3
                block, rest = self._buf[:end], self._buf[end:]
                if looks_like_calls(block) or block[first_nl + 1:].lstrip().startswith("["):
                    if self._try_calls(out, block):
                        return
                self._mode = ""
                self._buf = rest
                self._release(out, block)
            else:  # json
                start = len(self._buf) - len(self._buf.lstrip())
                end = json_end(self._buf, start)
                if end < 0:
                    return
                block, rest = self._buf[:end], self._buf[end:]
                if self._try_calls(out, block):
                    return
                self._mode = ""
                self._buf = rest
                self._release(out, block)

    def _scan(self, out: list) -> bool:
        """Release text up to the next possible call start; False when waiting for more input."""
        buf = self._buf
        if not self._seen_text:
            stripped = buf.lstrip()
            if not stripped:
                return False  # only whitespace so far: the answer may still open with JSON
            if stripped[0] in "{[":
                self._lead += buf[: len(buf) - len(stripped)]
                self._buf = stripped
                self._mode = "json"
                return True
        best = -1
        for marker in _STARTS:
            at = buf.find(marker)
            if at >= 0 and (best < 0 or at < best):
                best = at
        if best < 0:
            keep = _partial_suffix(buf)
            self._release(out, buf[: len(buf) - keep])
            self._buf = buf[len(buf) - keep:]
            return False
        if buf.startswith("```", best):
            self._release(out, buf[:best])
            self._buf = buf[best:]
            self._mode = "fence"
            return True
        # an XML-ish tag: read its full name first
        i = best + 1
        while i < len(buf) and buf[i] in _NAME_CHARS:
            i += 1
        if i == len(buf):  # name may continue in the next chunk
            self._release(out, buf[:best])
            self._buf = buf[best:]
            return False
        name = buf[best + 1 : i]
        if name not in _TAGS:
            self._release(out, buf[: best + 1])
            self._buf = buf[best + 1 :]
            return True
        self._release(out, buf[:best])
        self._buf = buf[best:]
        self._mode = "tag"
        self._end = f"</{name}>"
        return True
