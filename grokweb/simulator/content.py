"""Canned, deterministic content for the simulator: prompt directives, answer text, tool calls.

The simulator sees the flattened ``message`` of docs/upstream-protocol.md §4.3 (``[role]: text`` blocks separated by blank
lines). Directives (docs/upstream-protocol.md §15.2, simulator-only) are read from the LAST block, so a conversation that
ends with a tool result gets a plain text answer even if an earlier user turn asked for a tool call:

    #sim:think  #sim:search  #sim:xsearch  #sim:browse  #sim:code  #sim:searchimages  #sim:rawthink
    #sim:tool=<name>[,<name>…]  #sim:tool-fenced  #sim:tool-json  #sim:tool-prose
    #sim:image  #sim:len=<n>  #sim:untagged  #sim:gap  #sim:say=<text>  #sim:search=<url>  #sim:args=<json>
    #sim:json-fenced  #sim:json-invalid

Directive values stop at whitespace or ``#``: ``say`` and ``args`` values are percent-decoded (``%20`` a space,
``%0A`` a newline, ``%23`` a ``#``), so an exact multi-line answer or a scripted tool argument fits in one word.

Tool schemas come from the injected tool prompt (docs/upstream-protocol.md §5.1): ``Tool: <name>`` … ``Parameters: <json>``.
A structured-output prompt (gateway/translate/structured.py) is answered with JSON satisfying the schema on its
``RESPONSE JSON SCHEMA: <json>`` line (an object when there is only the ``RESPONSE FORMAT:`` line).
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

_BLOCK = re.compile(r"(?m)^\[(system|developer|user|assistant|tool result for [^\]\n]*)\]:")
_DIRECTIVE = re.compile(r"#sim:([a-z][a-z-]*)(?:=([^\s#]+))?")
_TOOL_DECL = re.compile(r"(?m)^(?:\[[^\]\n]*\]:)?\s*Tool:\s*(\S+)\s*$")
_PARAMS = re.compile(r"(?m)^\s*Parameters:\s*(.+?)\s*$")
_FORMAT = re.compile(r"(?m)^(?:\[system\]:\s*)?RESPONSE FORMAT:")
_SCHEMA = re.compile(r"(?m)^RESPONSE JSON SCHEMA:\s*(.+?)\s*$")

WORDS = (
    "the simulator answers with a steady stream of plain words so every gateway path can be "
    "tested offline without touching a real account while tokens arrive in small pieces and the "
    "parser stitches them back together into sentences that read almost like prose about clouds "
    "rivers mountains gardens trains bridges lanterns harbors orchards libraries meadows kites "
    "compasses and quiet evenings spent counting stars above a sleepy village"
).split()


@dataclass
class Prompt:
    message: str
    last_role: str
    last_text: str
    directives: dict[str, str] = field(default_factory=dict)
    tools: dict[str, dict] = field(default_factory=dict)  # name -> JSON schema (may be {})
    response_schema: dict | None = None  # structured output asked for ({} = any JSON object)

    def has(self, name: str) -> bool:
        return name in self.directives


def parse_prompt(message: str) -> Prompt:
    blocks = list(_BLOCK.finditer(message))
    if blocks:
        # The turn being answered is the last block that is not a [system] one: a system message
        # inside the conversation (Anthropic's mid-conversation system messages) may follow it.
        at = len(blocks) - 1
        while at > 0 and blocks[at].group(1) == "system":
            at -= 1
        last = blocks[at]
        end = blocks[at + 1].start() if at + 1 < len(blocks) else len(message)
        role, text = last.group(1), message[last.end():end].strip()
    else:
        role, text = "user", message.strip()
    directives: dict[str, str] = {}
    if not role.startswith("tool result"):
        for m in _DIRECTIVE.finditer(text):
            directives[m.group(1)] = m.group(2) or ""
    tools: dict[str, dict] = {}
    for m in _TOOL_DECL.finditer(message):
        name = m.group(1)
        nxt = _TOOL_DECL.search(message, m.end())
        section = message[m.end(): nxt.start() if nxt else len(message)]
        schema: dict = {}
        pm = _PARAMS.search(section)
        if pm:
            try:
                parsed = json.loads(pm.group(1))
                schema = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                schema = {}
        tools.setdefault(name, schema)
    response_schema = None
    if _FORMAT.search(message):
        response_schema = {}
        sm = _SCHEMA.search(message)
        if sm:
            try:
                parsed = json.loads(sm.group(1))
                response_schema = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                response_schema = {}
    return Prompt(message=message, last_role=role, last_text=text, directives=directives, tools=tools,
                  response_schema=response_schema)


def is_drawing(prompt: Prompt) -> bool:
    """Lite image generation: a ``Drawing: …`` message (the reference's form) or ``#sim:image``."""
    return prompt.has("image") or prompt.message.lstrip().startswith("Drawing:") or prompt.last_text.startswith("Drawing:")


def prompt_rng(seed: int, text: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}|{text}".encode()).digest()[:8], "big"))


def split_tokens(text: str, rng: random.Random) -> list[str]:
    """Split text into upstream-sized tokens of a few characters (leading spaces kept on words)."""
    out: list[str] = []
    for word in re.findall(r"\s*\S+|\s+$", text):
        while len(word) > 6:
            cut = rng.randint(3, 5)
            out.append(word[:cut])
            word = word[cut:]
        if word:
            out.append(word)
    return out or [text]


def canned_text(rng: random.Random, n_tokens: int | None = None, chars_per_token: int | None = None) -> list[str]:
    """A deterministic answer as a token list; ``n_tokens`` fixes the length exactly."""
    target = n_tokens if n_tokens is not None else rng.randint(18, 40)
    tokens: list[str] = []
    start = True
    while len(tokens) < target:
        word = rng.choice(WORDS)
        if start:
            word = word.capitalize()
        tok = word if not tokens else " " + word
        start = False
        if rng.random() < 0.12 or len(tokens) == target - 1:
            tok += "."
            start = True
        if chars_per_token and len(tok) > chars_per_token:
            tok = tok[:chars_per_token]
        tokens.append(tok)
    return tokens


def title_for(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text)[:4]
    return " ".join(w.capitalize() for w in words) or "New Conversation"


# ---------------------------------------------------------------- tools

def value_for(schema: dict, name: str, depth: int = 0, root: dict | None = None):
    """A value satisfying a (simple) JSON schema: types, enums, const, min/max, required props,
    local ``$ref``s (``#/$defs/…``, as pydantic writes nested models)."""
    if not isinstance(schema, dict):
        return f"example {name}"
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and depth <= 8:
        target: object = root
        for key in ref[2:].split("/"):
            target = target.get(key) if isinstance(target, dict) else None
        return value_for(target if isinstance(target, dict) else {}, name, depth + 1, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return value_for(schema[key][0], name, depth, root)
    if schema.get("allOf"):
        merged: dict = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.update(part)
        return value_for(merged, name, depth, root)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), typ[0] if typ else None)
    if typ is None:
        typ = "object" if "properties" in schema else "string"
    if typ == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            value = "2026-01-01T00:00:00Z"
        elif fmt == "date":
            value = "2026-01-01"
        elif fmt in ("uri", "url"):
            value = "https://example.com/"
        elif fmt == "email":
            value = "user@example.com"
        elif fmt == "uuid":
            value = "00000000-0000-4000-8000-000000000000"
        else:
            value = f"example {name}"
        lo, hi = schema.get("minLength"), schema.get("maxLength")
        if isinstance(lo, int) and len(value) < lo:
            value = value + "x" * (lo - len(value))
        if isinstance(hi, int) and len(value) > hi:
            value = value[:hi]
        return value
    if typ in ("integer", "number"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        v = 1 if lo is None else lo + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
        if hi is not None and v > hi:
            v = hi
        # A whole number is written without a fraction even for "number": clients that declare
        # "number" often parse into an integer type (Codex's exec_command rejects 1.0 for a usize).
        return int(v) if typ == "integer" or float(v).is_integer() else float(v)
    if typ == "boolean":
        return True
    if typ == "null":
        return None
    if typ == "array":
        n = max(1, int(schema.get("minItems", 1) or 1))
        if depth > 4:
            return []
        return [value_for(schema.get("items", {}), name, depth + 1, root) for _ in range(n)]
    if typ == "object":
        props = schema.get("properties") or {}
        if depth > 4:
            return {}
        # Only the required properties when the schema lists them, as a model would: optional ones
        # filled with placeholders (a `workdir`, a `shell`) would make a client's tool fail.
        required = schema.get("required")
        if isinstance(required, list):
            props = {k: v for k, v in props.items() if k in required}
        return {k: value_for(v, k, depth + 1, root) for k, v in props.items()}
    return f"example {name}"


def directive_text(prompt: Prompt, name: str) -> str:
    """A directive's value, percent-decoded ("" when absent)."""
    return unquote(prompt.directives.get(name) or "")


def scripted_args(prompt: Prompt) -> dict:
    """``#sim:args=<json object>``: arguments laid over the schema-filled ones of every call."""
    try:
        value = json.loads(directive_text(prompt, "args") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def tool_calls_for(prompt: Prompt) -> list[tuple[str, dict]]:
    names = [n for n in prompt.directives.get("tool", "").split(",") if n]
    if not names and prompt.tools:
        names = [next(iter(prompt.tools))]
    if not names:
        names = ["get_weather"]
    scripted = scripted_args(prompt)
    filled = [(n, value_for(prompt.tools.get(n, {}), n) if prompt.tools.get(n) else {}) for n in names]
    return [(n, {**args, **scripted}) for n, args in filled]


def tool_answer(prompt: Prompt) -> str:
    calls = tool_calls_for(prompt)
    compact = [(n, json.dumps(args, separators=(",", ":"), ensure_ascii=False)) for n, args in calls]
    if prompt.has("tool-json"):
        return json.dumps({"tool_calls": [{"name": n, "arguments": a} for n, a in calls]}, ensure_ascii=False)
    xml = "<tool_calls>\n" + "".join(
        f"  <tool_call>\n    <tool_name>{n}</tool_name>\n    <parameters>{a}</parameters>\n  </tool_call>\n"
        for n, a in compact
    ) + "</tool_calls>"
    if prompt.has("tool-fenced"):
        return "I'll call the tool now.\n```xml\n" + xml + "\n```"
    if prompt.has("tool-prose"):
        return "Let me look that up for you.\n" + xml + "\nI will continue once the result arrives."
    return xml


def tool_result_answer(prompt: Prompt) -> str:
    body = prompt.last_text.strip().splitlines()
    first = body[0][:80] if body else ""
    return f"Based on the tool result ({first}), here is the answer."


# ---------------------------------------------------------------- structured output

def structured_answer(prompt: Prompt) -> str:
    """JSON for the response schema; ``#sim:json-fenced`` wraps it in prose and a fence (the gateway
    must extract it), ``#sim:json-invalid`` answers with prose around a JSON array, which no object
    schema (nor json_object) accepts."""
    schema = prompt.response_schema or {}
    value = value_for(schema, "answer") if schema else {"answer": "example answer"}
    if not isinstance(value, dict) and not schema:
        value = {"answer": value}
    body = json.dumps(value, ensure_ascii=False)
    if prompt.has("json-invalid"):
        return 'I cannot give that as an object, sorry: ["not", "an", "object"]'
    if prompt.has("json-fenced"):
        return f"Here is the JSON you asked for:\n```json\n{json.dumps(value, ensure_ascii=False, indent=2)}\n```"
    return body
