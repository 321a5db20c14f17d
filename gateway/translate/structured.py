"""Structured output emulation: `response_format` (Chat Completions) and `text.format` (Responses).

Grok Web has no JSON mode and no schema-constrained decoding, so — like the function tools
(tools.py, docs/upstream-protocol.md §5) — the format lives in text:

- Out (prompt): a trailing `[system]:` block (`format_prompt`) that demands one JSON value and,
  for `json_schema`, gives the schema on one line:
      RESPONSE FORMAT: …
      RESPONSE JSON SCHEMA: {"type":"object",…}
  It goes last, after the conversation, so it is the instruction nearest to the answer.
- In (answer text): `structured_answer` extracts the JSON (the whole answer; else a ``` fenced
  block; else the first balanced `{…}` / `[…]` after leading prose), parses it tolerantly
  (tools.loads_tolerant: raw newlines in strings, trailing commas), validates it with the
  `jsonschema` library and returns it re-serialised compact — the clean JSON content the client
  gets. An answer that cannot be made valid raises StructuredOutputInvalid (502, the client's
  envelope), never prose presented as success.

Strict mode (`strict: true`) is OpenAI's strict subset: every object schema has
`additionalProperties: false` and lists every property in `required`. A strict schema outside that
subset is refused with a 400 when the request is parsed (`format_parse`), as OpenAI does; the
answer is then validated against the schema as written, which under those two rules means exactly
the declared properties, all present. Without `strict` the answer is validated against the schema
as written (extra properties pass unless the schema forbids them).

Only local `$ref`s (`#/$defs/…`) are accepted: the validator is given a registry holding the
meta-schemas and nothing else, so it never fetches a URL named by a client's schema.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import FormatChecker
from jsonschema.exceptions import SchemaError
from jsonschema.validators import Draft202012Validator, validator_for
from jsonschema_specifications import REGISTRY as META_SCHEMAS
from referencing import Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from grokweb.errors import InvalidRequest, StructuredOutputInvalid
from gateway.translate.common import bad_type
from gateway.translate.tools import _FAIL, json_end, loads_tolerant

KINDS = ("text", "json_object", "json_schema")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.S)
SCHEMA_LINE = "RESPONSE JSON SCHEMA: "  # the simulator reads the schema from this line (docs/simulator.md)
FORMAT_LINE = "RESPONSE FORMAT: "
_MAX_DETAIL = 300
_CACHE_MAX_SCHEMA = 64 * 1024  # bytes of canonical JSON: larger schemas are checked every time, not kept


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """What the client asked the answer to be. `param` is where it came from, for error messages."""

    kind: str = "text"  # "text" | "json_object" | "json_schema"
    name: str = ""
    schema: dict[str, Any] | None = None
    strict: bool = False
    description: str = ""
    param: str = "response_format"

    @property
    def active(self) -> bool:
        return self.kind != "text"


TEXT = OutputFormat()

# --------------------------------------------------------------------------- request parsing


def format_parse(*, raw: Any, param: str, nested: bool, label: str | None = None) -> OutputFormat:
    """`response_format` (nested: the schema under `json_schema`) or `text.format` (flat) → OutputFormat.

    Raises InvalidRequest naming the field for a bad type, a missing name or schema, a schema that
    is not valid JSON Schema, a reference that is not local, or a strict schema outside the subset."""
    if raw is None:
        return OutputFormat(param=param)
    if not isinstance(raw, dict):
        raise bad_type(param, "an object", raw)
    kind = raw.get("type")
    if kind not in KINDS:
        shown = kind if isinstance(kind, str) else type(kind).__name__
        raise InvalidRequest(f"Invalid value for '{param}.type': '{shown}'. Supported values are: 'text', "
                             "'json_object' and 'json_schema'.", param=f"{param}.type")
    if kind != "json_schema":
        return OutputFormat(kind=kind, param=param)
    spec_param = f"{param}.json_schema" if nested else param
    spec = raw.get("json_schema") if nested else raw
    if nested and spec is None:
        raise InvalidRequest(f"Missing required parameter: '{spec_param}'.", param=spec_param,
                             code="missing_required_parameter")
    if not isinstance(spec, dict):
        raise bad_type(spec_param, "an object", spec)
    name = spec.get("name")
    if name is None:
        raise InvalidRequest(f"Missing required parameter: '{spec_param}.name'.", param=f"{spec_param}.name",
                             code="missing_required_parameter")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(f"Invalid '{spec_param}.name': the name must be 1-64 characters of a-z, A-Z, 0-9, "
                             "underscores and dashes.", param=f"{spec_param}.name")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise bad_type(f"{spec_param}.description", "a string", description)
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise bad_type(f"{spec_param}.strict", "a boolean", strict)
    schema = spec.get("schema")
    schema_param = f"{spec_param}.schema"
    if schema is None:  # OpenAI accepts a missing schema; so do we: any JSON object answers it
        schema = {"type": "object"}
    if not isinstance(schema, dict):
        raise bad_type(schema_param, "an object", schema)
    _check_schema(schema, name=name, param=schema_param, label=label)
    if strict:
        _check_strict(schema, (), name=name, param=schema_param, label=label)
    return OutputFormat(kind="json_schema", name=name, schema=schema, strict=bool(strict),
                        description=description or "", param=param)


def _invalid_schema(name: str, param: str, why: str, label: str | None) -> InvalidRequest:
    """OpenAI's wording (`Invalid schema for response_format 'Person': …`); `label` replaces the
    `response_format '<name>'` part for the Anthropic fields, which have no name."""
    what = label or f"response_format '{name}'"
    return InvalidRequest(f"Invalid schema for {what}: {why}", param=param, code="invalid_json_schema")


def _registry(schema: dict):
    """The meta-schemas plus the client's schema, and nothing that could be fetched."""
    resource = Resource.from_contents(schema, default_specification=DRAFT202012)
    base = resource.id() or ""
    return META_SCHEMAS.with_resource(base, resource), base


def _validator(schema: dict):
    cls = validator_for(schema, default=Draft202012Validator)
    registry, _ = _registry(schema)
    return cls(schema, registry=registry, format_checker=FormatChecker())


_REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


def _refs(node: Any):
    if isinstance(node, dict):
        for key in _REF_KEYS:
            ref = node.get(key)
            if isinstance(ref, str):
                yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _check_schema(schema: dict, *, name: str, param: str, label: str | None) -> None:
    dialect = schema.get("$schema")
    if dialect is not None and not isinstance(dialect, str):
        raise bad_type(f"{param}.$schema", "a string", dialect)
    try:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        key = b""
    # Checking a schema against its meta-schema costs milliseconds (measured: ~6 ms for a small
    # pydantic model) and clients send the same schema on every call: the verdict is cached.
    problem = _schema_problem(key) if 0 < len(key) <= _CACHE_MAX_SCHEMA else _schema_problem_of(schema)
    if problem is not None:
        raise _invalid_schema(name, param, problem, label)


@functools.lru_cache(maxsize=256)
def _schema_problem(key: bytes) -> str | None:
    return _schema_problem_of(orjson.loads(key))


def _schema_problem_of(schema: dict) -> str | None:
    """Why the schema cannot be used (not valid JSON Schema, a reference that is not local, cannot
    be resolved or loops), or None."""
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" for p in exc.path)
        return exc.message + (f" (at schema{where})" if where else "")
    registry, base = _registry(schema)
    resolver = registry.resolver(base_uri=base)
    for ref in _refs(schema):
        if not ref.startswith("#"):
            return (f"the reference '{ref}' is not local; only references into the schema itself ('#/$defs/…') "
                    "are supported.")
        seen = {ref}
        while True:  # a chain of references that comes back to itself would recurse forever
            try:
                target = resolver.lookup(ref).contents
            except Unresolvable:
                return f"the reference '{ref}' cannot be resolved."
            nxt = target.get("$ref") if isinstance(target, dict) else None
            if not isinstance(nxt, str):
                break
            if nxt in seen:
                return f"the reference '{ref}' leads back to itself."
            seen.add(nxt)
            ref = nxt
    return None


def _context(path: tuple) -> str:
    return "(" + ", ".join(repr(p) for p in path) + ("," if len(path) == 1 else "") + ")"


_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalItems", "not", "if", "then", "else", "contains")


def _check_strict(node: Any, path: tuple, *, name: str, param: str, label: str | None) -> None:
    """OpenAI's strict subset: every object closes its properties and requires all of them."""
    if not isinstance(node, dict):
        return
    def bad(why: str) -> InvalidRequest:
        return _invalid_schema(name, param, f"In context={_context(path)}, {why}", label)

    is_object = node.get("type") == "object" or (isinstance(node.get("type"), list) and "object" in node["type"]) \
        or "properties" in node
    if is_object:
        if node.get("additionalProperties") is not False:
            raise bad("'additionalProperties' is required to be supplied and to be false.")
        props = node.get("properties") or {}
        required = node.get("required") if isinstance(node.get("required"), list) else []
        missing = [key for key in props if key not in required]
        if missing:
            raise bad("'required' is required to be supplied and to be an array including every key in properties. "
                      f"Missing '{missing[0]}'.")
    for key in _SUBSCHEMA_MAPS:
        sub = node.get(key)
        if isinstance(sub, dict):
            for k, v in sub.items():
                _check_strict(v, path + (key, k), name=name, param=param, label=label)
    for key in _SUBSCHEMA_LISTS:
        sub = node.get(key)
        if isinstance(sub, list):
            for i, v in enumerate(sub):
                _check_strict(v, path + (key, i), name=name, param=param, label=label)
    for key in _SUBSCHEMA_ONE:
        if isinstance(node.get(key), dict):
            _check_strict(node[key], path + (key,), name=name, param=param, label=label)


# --------------------------------------------------------------------------- prompt


_TOOLS_TOO = "If you call a tool, use the tool format instead; the JSON rule applies to your final answer."


def format_prompt(fmt: OutputFormat, *, tools: bool = False) -> str:
    """The instruction block appended after the conversation (without its `[system]: ` prefix).
    `tools`: function tools are declared too, and a call needs no JSON."""
    if fmt.kind == "json_object":
        text = (f"{FORMAT_LINE}answer with one valid JSON object and nothing else: no markdown code fence, no text "
                "before or after it.")
        return f"{text} {_TOOLS_TOO}" if tools else text
    lines = [
        f"{FORMAT_LINE}answer with one JSON value that validates against the JSON Schema below, and nothing "
        "else: no markdown code fence, no text before or after it.",
        f"Schema name: {fmt.name}",
    ]
    if fmt.description:
        lines.append(f"Schema description: {fmt.description}")
    lines.append(SCHEMA_LINE + orjson.dumps(fmt.schema or {}).decode())
    if fmt.strict:
        lines.append("Include every property the schema lists, and no property it does not list.")
    if tools:
        lines.append(_TOOLS_TOO)
    return "\n".join(lines)


# --------------------------------------------------------------------------- answer


def _candidates(text: str):
    """JSON values the answer may hold, most likely first: the whole text, fenced blocks, then each
    balanced object or array in reading order (leading prose skipped)."""
    yield text
    if "```" in text:
        for m in _FENCE.finditer(text):
            yield m.group(1)
    at = 0
    while True:
        starts = [i for i in (text.find("{", at), text.find("[", at)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        end = json_end(text, start)
        if end < 0:
            at = start + 1
            continue
        block = text[start:end]
        yield block
        # a value that parses is one candidate (its inner objects are not); prose braces are skipped
        at = end if loads_tolerant(block) is not _FAIL else start + 1


def structured_answer(text: str, fmt: OutputFormat) -> str:
    """The client's JSON content from the model's answer text: extracted, validated, compact.

    Raises StructuredOutputInvalid when no JSON value in the answer satisfies the format."""
    want_object = fmt.kind == "json_object"
    validator = _validator(fmt.schema) if fmt.kind == "json_schema" else None
    first_error: str | None = None
    seen: set[str] = set()
    for chunk in _candidates(text.strip()):
        chunk = chunk.strip()
        if not chunk or chunk in seen:
            continue
        seen.add(chunk)
        value = loads_tolerant(chunk)
        if value is _FAIL:
            continue
        if want_object:
            if isinstance(value, dict):
                return orjson.dumps(value).decode()
            first_error = first_error or f"the answer is a JSON {_kind(value)}, not an object"
            continue
        error = _first_error(validator, value)
        if error is None:
            return orjson.dumps(value).decode()
        first_error = first_error or error
    what = "a JSON object" if want_object else f"JSON for the schema '{fmt.name}'"
    detail = first_error or "the answer holds no JSON"
    if len(detail) > _MAX_DETAIL:  # jsonschema quotes the offending value, which may be long
        detail = detail[:_MAX_DETAIL] + "…"
    advice = "Retry the request." if want_object else "Retry the request, or relax the schema."
    raise StructuredOutputInvalid(f"The model's answer could not be made into {what} ({detail}). {advice}",
                                  param=fmt.param)


def _kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _first_error(validator, value: Any) -> str | None:
    try:
        errors = sorted(validator.iter_errors(value), key=lambda e: (len(e.path), list(map(str, e.path))))
    except Unresolvable as exc:  # checked when parsed; kept as a clear error rather than a 500
        return f"unresolvable reference {exc}"
    except RecursionError:
        return "the schema's references recurse without end"
    if not errors:
        return None
    err = errors[0]
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in err.path)
    return f"at ${where}: {err.message}" if where else err.message
