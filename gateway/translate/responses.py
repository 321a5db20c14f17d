"""OpenAI Responses (`POST /v1/responses`): request parser and response encoders.

Wire format out (streaming): `event: <type>` + `data: {json}` frames, each with a
`sequence_number` strictly increasing from 0:
  response.created → response.in_progress →
  per reasoning item: output_item.added → reasoning_summary_part.added →
      reasoning_summary_text.delta* → reasoning_summary_text.done → reasoning_summary_part.done →
      output_item.done
  per message item: output_item.added → content_part.added → output_text.delta* →
      output_text.annotation.added* → output_text.done → content_part.done → output_item.done
  per function call: output_item.added (status in_progress, arguments "") →
      function_call_arguments.delta (the whole JSON) → function_call_arguments.done → output_item.done
  → response.completed (the full response: every item complete, usage) → `data: [DONE]`.
Failure after the start: `response.failed` (response.status "failed", response.error {code,message})
then an `error` event `{"type":"error","code":…,"message":…,"param":…}`, then `[DONE]`.
Ids: resp_/rs_/msg_/fc_ + <epoch-ms><8 hex>; function calls carry `id` (fc_) and `call_id` (call_).
With include=["reasoning.encrypted_content"], reasoning items carry `encrypted_content` (null while in
progress): the reasoning text sealed by the `seal` function the caller passes; accepted back in `input`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from grokweb.errors import GatewayError, InvalidRequest
from gateway.translate.assembler import Piece, ReasoningPiece, TextPiece, ToolCallsPiece, TurnResult
from gateway.translate.common import (
    Attachment,
    ChatRequest,
    IdFactory,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Turn,
    bad_type,
    decode_base64,
    file_name_for,
    image_attachment,
    new_id,
    opt_bool,
    opt_dict,
    opt_int,
    opt_list,
    opt_number,
    parse_data_uri,
    req_str,
    require_body,
)
from gateway.translate.openai_chat import FUNCTION_NAME, check_choice, show_reasoning_from_effort
from gateway.translate.structured import format_parse
from gateway.translate.tokens import Usage, responses_usage, usage_for
from gateway.translate.tools import normalise_arguments

_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text"})

# --------------------------------------------------------------------------- request parsing


def _content(turn: Turn, content: Any, param: str) -> None:
    if isinstance(content, str):
        turn.parts.append(content)
        return
    if not isinstance(content, list):
        raise bad_type(param, "a string or an array of content parts", content)
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise bad_type(p, "an object", part)
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            turn.parts.append(req_str(part, "text", f"{p}.text", required=True) or "")
        elif kind == "refusal":
            turn.parts.append(req_str(part, "refusal", f"{p}.refusal", required=True) or "")
        elif kind in ("input_image", "image"):
            url = part.get("image_url")
            if isinstance(url, dict):  # tolerate the chat-completions shape
                url = url.get("url")
            if url is None:
                if part.get("file_id") is not None:
                    raise InvalidRequest(f"'{p}.file_id': file ids are not supported; send the image as a URL or data URI.",
                                         param=f"{p}.file_id")
                raise InvalidRequest(f"Missing required parameter: '{p}.image_url'.", param=f"{p}.image_url")
            if not isinstance(url, str):
                raise bad_type(f"{p}.image_url", "a string", url)
            turn.attachments.append(image_attachment(url, f"{p}.image_url", len(turn.attachments)))
        elif kind == "input_file":
            raw = part.get("file_data")
            if raw is not None:
                if not isinstance(raw, str):
                    raise bad_type(f"{p}.file_data", "a string", raw)
                if raw.startswith("data:"):
                    mime, data = parse_data_uri(raw, f"{p}.file_data")
                else:
                    mime, data = "application/octet-stream", decode_base64(raw, f"{p}.file_data")
                name = req_str(part, "filename", f"{p}.filename") or file_name_for(mime, len(turn.attachments))
                turn.attachments.append(Attachment("file", mime, name, data=data, param=f"{p}.file_data"))
            elif isinstance(part.get("file_url"), str) and part["file_url"].startswith(("http://", "https://")):
                turn.attachments.append(Attachment("file", "", req_str(part, "filename", f"{p}.filename") or
                                                   f"file-{len(turn.attachments)}", url=part["file_url"],
                                                   param=f"{p}.file_url"))
            else:
                raise InvalidRequest(f"'{p}' (input_file) needs file_data (base64 or data URI) or an https file_url; "
                                     "file ids are not supported.", param=f"{p}.file_data")
        elif isinstance(kind, str):
            raise InvalidRequest(f"Unsupported content part type '{kind}' in '{p}.type'.", param=f"{p}.type")
        else:
            raise InvalidRequest(f"Missing or invalid '{p}.type'.", param=f"{p}.type")


def _output_text(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        turn = Turn("tool")
        _content(turn, value, param)
        return "\n".join(turn.parts)
    raise bad_type(param, "a string or an array of content parts", value)


def _items(items: list) -> list[Turn]:
    turns: list[Turn] = []
    for i, item in enumerate(items):
        p = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad_type(p, "an object", item)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = req_str(item, "role", f"{p}.role", required=True)
            if role not in _MESSAGE_ROLES:
                raise InvalidRequest(f"Invalid value for '{p}.role': '{role}'. Supported values are: 'user', "
                                     "'assistant', 'system' and 'developer'.", param=f"{p}.role")
            turn = Turn(role)
            if item.get("content") is None:
                raise InvalidRequest(f"Missing required parameter: '{p}.content'.", param=f"{p}.content")
            _content(turn, item["content"], f"{p}.content")
            if turn.attachments and role != "user":
                raise InvalidRequest(f"'{p}.content': images and files are only supported in user messages.",
                                     param=f"{p}.content")
            turns.append(turn)
        elif kind == "function_call":
            call_id = req_str(item, "call_id", f"{p}.call_id", required=True, nonempty=True) or ""
            name = req_str(item, "name", f"{p}.name", required=True, nonempty=True) or ""
            args = req_str(item, "arguments", f"{p}.arguments")
            call = ToolCall(call_id, name, normalise_arguments(args, param=f"{p}.arguments"))
            if turns and turns[-1].role == "assistant":
                turns[-1].tool_calls.append(call)  # text and calls of one assistant turn stay together
            else:
                turns.append(Turn("assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            call_id = req_str(item, "call_id", f"{p}.call_id", required=True, nonempty=True)
            if item.get("output") is None:
                raise InvalidRequest(f"Missing required parameter: '{p}.output'.", param=f"{p}.output")
            turns.append(Turn("tool", [_output_text(item["output"], f"{p}.output")], tool_call_id=call_id))
        elif kind == "reasoning":
            # Earlier reasoning is not replayed upstream: the model sees the conversation as
            # flattened text and re-thinks each turn. An `encrypted_content` this gateway issued
            # (include=["reasoning.encrypted_content"]) is accepted and dropped with it.
            if item.get("encrypted_content") is not None and not isinstance(item["encrypted_content"], str):
                raise bad_type(f"{p}.encrypted_content", "a string", item["encrypted_content"])
            continue
        elif isinstance(kind, str):
            raise InvalidRequest(f"Unsupported input item type '{kind}' in '{p}.type'.", param=f"{p}.type")
        else:
            raise InvalidRequest(f"Missing or invalid '{p}.type'.", param=f"{p}.type")
    return turns


def _tools(raw: Any) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_type("tools", "an array", raw)
    tools = []
    for i, tool in enumerate(raw):
        p = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise bad_type(p, "an object", tool)
        kind = req_str(tool, "type", f"{p}.type", required=True)
        if kind != "function":
            continue  # hosted tools (web_search, file_search, …): Grok searches the web by itself
        spec, base = (tool["function"], f"{p}.function") if isinstance(tool.get("function"), dict) else (tool, p)
        name = req_str(spec, "name", f"{base}.name", required=True) or ""
        if not FUNCTION_NAME.match(name):
            raise InvalidRequest(f"Invalid '{base}.name': '{name}'.", param=f"{base}.name")
        desc = req_str(spec, "description", f"{base}.description") or ""
        params = opt_dict(spec, "parameters", f"{base}.parameters") or {}
        tools.append(ToolSpec(name, desc, params))
    return tools


def _tool_choice(raw: Any, tools: list[ToolSpec]) -> ToolChoice:
    if raw is None:
        return ToolChoice()
    if isinstance(raw, str):
        if raw not in ("auto", "none", "required"):
            raise InvalidRequest(f"Invalid value for 'tool_choice': '{raw}'.", param="tool_choice")
        return check_choice(ToolChoice(raw), tools, "tool_choice")
    if not isinstance(raw, dict):
        raise bad_type("tool_choice", "a string or an object", raw)
    kind = raw.get("type")
    if kind == "function":
        fn = raw.get("function") if isinstance(raw.get("function"), dict) else raw
        name = req_str(fn, "name", "tool_choice.name", required=True)
        if name not in {t.name for t in tools}:
            raise InvalidRequest(f"'tool_choice.name' names the tool '{name}', which is not among the declared tools.",
                                 param="tool_choice.name")
        return ToolChoice("function", name)
    if kind == "allowed_tools":
        mode = raw.get("mode", "auto")
        return check_choice(ToolChoice("required" if mode == "required" else "auto"), tools, "tool_choice")
    if isinstance(kind, str):
        return ToolChoice()  # a hosted tool type: nothing to force on the emulated tools
    raise InvalidRequest("Missing or invalid 'tool_choice.type'.", param="tool_choice.type")


@dataclass(slots=True)
class ResponsesRequest(ChatRequest):
    """A ChatRequest plus what the Responses API keeps about it: the settings the response object
    echoes, whether to store it, the chain it continues and its own input items (as stored)."""

    echo: dict[str, Any] = field(default_factory=dict)
    store: bool = True
    previous_response_id: str | None = None
    input_items: list[dict[str, Any]] = field(default_factory=list)
    history_at: int = 0  # where turns of a previous_response_id chain go (after the instructions)
    encrypted_reasoning: bool = False  # include=["reasoning.encrypted_content"]: reasoning items carry it
    background: bool = False
    # Set by the background runner (gateway/background.py): the id and creation time the queued
    # response already has, so the run's events and final object carry them instead of new ones.
    response_id: str | None = None
    created_at: int | None = None


# Seals a reasoning text into an opaque `encrypted_content` string; the service passes the
# project's at-rest cipher (core.crypto.encrypt) so this module stays free of Django.
Seal = Callable[[str], str]


# `include` values that need data the upstream never gives (token logprobs).
_UNAVAILABLE_INCLUDES = frozenset({"message.output_text.logprobs"})
_ENCRYPTED_REASONING = "reasoning.encrypted_content"
_MAX_METADATA = 16


def _refuse(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"Unsupported parameter: '{param}': {why}", param=param, code="unsupported_parameter")


def _metadata(body: dict) -> dict[str, str]:
    meta = opt_dict(body, "metadata", "metadata") or {}
    if len(meta) > _MAX_METADATA:
        raise InvalidRequest(f"'metadata' has {len(meta)} keys; at most {_MAX_METADATA} are allowed.", param="metadata")
    for key, value in meta.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise InvalidRequest(f"Invalid 'metadata.{key[:64]}': keys are at most 64 characters and values strings "
                                 "of at most 512.", param=f"metadata.{key[:64]}")
    return meta


def _tool_echo(tool: Any) -> Any:
    if isinstance(tool, dict) and tool.get("type") == "function":
        spec = tool["function"] if isinstance(tool.get("function"), dict) else tool
        return {"type": "function", "name": spec.get("name"), "description": spec.get("description"),
                "parameters": spec.get("parameters") or {}, "strict": spec.get("strict", True)}
    return tool


def _choice_echo(raw: Any, choice: ToolChoice) -> Any:
    if raw is None:
        return "auto"
    if choice.mode == "function":  # the chat-completions nesting is echoed in the Responses shape
        return {"type": "function", "name": choice.name}
    return raw


def _text_echo(body: dict) -> dict[str, Any]:
    """`text` as the response object echoes it; `text.format` itself is parsed by format_parse."""
    text = opt_dict(body, "text", "text") or {}
    fmt = opt_dict(text, "format", "text.format") or {"type": "text"}
    verbosity = text.get("verbosity") or "medium"
    if verbosity not in ("low", "medium", "high"):
        raise InvalidRequest(f"Invalid value for 'text.verbosity': '{verbosity}'.", param="text.verbosity")
    return {"format": fmt, "verbosity": verbosity}


def _input_items(raw_input: Any) -> list[dict[str, Any]]:
    """The request's input as OpenAI lists it under /input_items: every item with an id, message
    content as an array of parts."""
    if isinstance(raw_input, str):
        raw_input = [{"type": "message", "role": "user", "content": raw_input}]
    items = []
    for item in raw_input:
        item = dict(item)
        kind = item.setdefault("type", "message")
        if kind == "message":
            if isinstance(item.get("content"), str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"]}]
            item["content"] = [_listed_part(p, item.get("role")) for p in item["content"]]
            item.setdefault("status", "completed")
            item.setdefault("id", new_id("msg_", 8))
        elif kind == "function_call":
            item.setdefault("id", new_id("fc_", 8))
            item.setdefault("status", "completed")
        elif kind == "function_call_output":
            item.setdefault("id", new_id("fco_", 8))
            item.setdefault("status", "completed")
        else:
            item.setdefault("id", new_id("item_", 8))
        items.append(item)
    return items


def _listed_part(part: Any, role: Any) -> Any:
    """A content part with the fields OpenAI's listed items always carry."""
    if not isinstance(part, dict):
        return part
    part = dict(part)
    if part.get("type") == "text":  # the chat-completions spelling
        part["type"] = "output_text" if role == "assistant" else "input_text"
    if part.get("type") == "output_text":
        part.setdefault("annotations", [])
    elif part.get("type") == "input_image":
        part.setdefault("detail", "auto")
    return part


def history_turns(items: list[dict[str, Any]]) -> list[Turn]:
    """Stored input and output items of earlier responses → the turns the model sees again."""
    return _items(items)


def parse_request(body: Any, *, default_stream: bool, default_thinking: bool) -> ResponsesRequest:
    body = require_body(body)
    model = req_str(body, "model", "model", required=True, nonempty=True) or ""
    for name, why in (("conversation", "conversations are not kept by this gateway; chain responses with "
                                       "'previous_response_id' instead."),
                      ("prompt", "prompt templates are not available through this gateway; send 'input' and "
                                 "'instructions'.")):
        if body.get(name) is not None:
            raise _refuse(name, why)
    raw_input = body.get("input")
    if raw_input is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if isinstance(raw_input, str):
        if not raw_input.strip():
            raise InvalidRequest("'input' must not be empty.", param="input")
        turns = [Turn("user", [raw_input])]
    elif isinstance(raw_input, list):
        if not raw_input:
            raise InvalidRequest("'input' must contain at least one item.", param="input", code="empty_array")
        turns = _items(raw_input)
    else:
        raise bad_type("input", "a string or an array of input items", raw_input)
    instructions = req_str(body, "instructions", "instructions")
    if instructions:
        turns.insert(0, Turn("system", [instructions]))

    stream = opt_bool(body, "stream", "stream")
    temperature = opt_number(body, "temperature", "temperature", 0, 2)
    top_p = opt_number(body, "top_p", "top_p", 0, 1)
    max_output = opt_int(body, "max_output_tokens", "max_output_tokens", 1)
    if body.get("top_logprobs") is not None:
        raise InvalidRequest("Unsupported parameter: 'top_logprobs': log probabilities are not available through "
                             "this gateway.", param="top_logprobs", code="unsupported_parameter")
    max_calls = opt_int(body, "max_tool_calls", "max_tool_calls", 1)
    store = opt_bool(body, "store", "store")
    background = bool(opt_bool(body, "background", "background"))
    if background and store is False:
        # the queued response is polled and streamed from storage: it cannot exist without it
        raise InvalidRequest("Background mode requires 'store' to be true; send 'store': true or leave it out.",
                             param="store")
    parallel = opt_bool(body, "parallel_tool_calls", "parallel_tool_calls")
    metadata = _metadata(body)
    text = _text_echo(body)
    output_format = format_parse(raw=text["format"], param="text.format", nested=False)
    include = opt_list(body, "include", "include") or []
    for i, entry in enumerate(include):
        if not isinstance(entry, str):
            raise bad_type(f"include[{i}]", "a string", entry)
        if entry in _UNAVAILABLE_INCLUDES:
            raise _refuse(f"include[{i}]", f"'{entry}' is not available through this gateway (the upstream gives "
                                           "no log probabilities).")
    previous = req_str(body, "previous_response_id", "previous_response_id", nonempty=True)
    truncation = req_str(body, "truncation", "truncation") or "disabled"
    if truncation not in ("auto", "disabled"):
        raise InvalidRequest(f"Invalid value for 'truncation': '{truncation}'. Supported values are: 'auto' and "
                             "'disabled'.", param="truncation")
    reasoning = opt_dict(body, "reasoning", "reasoning")
    effort = reasoning.get("effort") if reasoning else None
    show = show_reasoning_from_effort(effort, "reasoning.effort", default_thinking)
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), tools)
    echo = {
        "instructions": instructions or None,
        "tools": [_tool_echo(t) for t in body.get("tools") or []],
        "tool_choice": _choice_echo(body.get("tool_choice"), choice),
        "temperature": temperature, "top_p": top_p, "max_output_tokens": max_output, "max_tool_calls": max_calls,
        "text": text, "truncation": truncation, "store": True if store is None else store, "background": background,
        "metadata": metadata, "parallel_tool_calls": True if parallel is None else parallel,
        "previous_response_id": previous,
        "reasoning": {"effort": effort, "summary": (reasoning or {}).get("summary")},
        "user": body.get("user") if isinstance(body.get("user"), str) else None,
        "safety_identifier": body.get("safety_identifier") if isinstance(body.get("safety_identifier"), str) else None,
        "prompt_cache_key": body.get("prompt_cache_key") if isinstance(body.get("prompt_cache_key"), str) else None,
    }
    return ResponsesRequest(
        model=model, turns=turns, tools=tools, tool_choice=choice,
        stream=default_stream if stream is None else stream, show_reasoning=show, include_usage=True,
        family="responses", max_tokens=max_output, echo=echo, store=echo["store"], previous_response_id=previous,
        input_items=_input_items(raw_input), history_at=1 if instructions else 0, output_format=output_format,
        encrypted_reasoning=_ENCRYPTED_REASONING in include, background=background,
    )


# --------------------------------------------------------------------------- output items


def _reasoning_item(item_id: str, text: str, status: str = "completed", seal: Seal | None = None) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if status == "completed" else []
    item = {"id": item_id, "type": "reasoning", "summary": summary, "status": status}
    if seal is not None:  # only when the request included reasoning.encrypted_content
        item["encrypted_content"] = seal(text) if status == "completed" else None
    return item


def _seal_for(request: ChatRequest | None, seal: Seal | None) -> Seal | None:
    """The seal to use, or None when the request did not include encrypted reasoning (a request
    that did, rendered without a seal, is a caller's bug: it must not answer without the field)."""
    if not getattr(request, "encrypted_reasoning", False):
        return None
    if seal is None:
        raise ValueError("include=reasoning.encrypted_content needs a seal function")
    return seal


def _message_item(item_id: str, text: str, annotations: list[dict], status: str = "completed") -> dict[str, Any]:
    done = status != "in_progress"  # "completed", or "incomplete" when cut at max_output_tokens
    content = [{"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}] if done else []
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def _call_item(item_id: str, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call.id, "name": call.name,
            "arguments": call.arguments if status == "completed" else "", "status": status}


def _annotation(a: dict) -> dict:
    return {"type": "url_citation", "url": a["url"], "title": a["title"],
            "start_index": a["start_index"], "end_index": a["end_index"]}


# Fields of the response object this gateway has nothing to say about (always null).
_NULL_FIELDS = ("access_programs", "conversation", "image", "input_transformations", "moderation", "prompt",
                "prompt_cache_diagnostics", "prompt_cache_options", "prompt_cache_retention", "tool_usage",
                "top_logprobs")
_DEFAULT_ECHO: dict[str, Any] = {
    "instructions": None, "tools": [], "tool_choice": "auto", "temperature": None, "top_p": None,
    "max_output_tokens": None, "max_tool_calls": None, "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "truncation": "disabled", "store": False, "background": False, "metadata": {}, "parallel_tool_calls": True,
    "previous_response_id": None, "reasoning": {"effort": None, "summary": None}, "user": None,
    "safety_identifier": None, "prompt_cache_key": None,
}


def _response(
    *, rid: str, created: int, model: str, status: str, output: list, usage: Usage | None,
    echo: dict[str, Any] | None = None, error: dict | None = None, sources: list | None = None,
) -> dict[str, Any]:
    """The whole documented response object: the request's settings echoed, the rest null."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    obj: dict[str, Any] = {
        "id": rid, "object": "response", "created_at": created, "status": status,
        "completed_at": int(time.time()) if status == "completed" else None, "model": model, "output": output,
        "error": error, "incomplete_details": incomplete, "usage": responses_usage(usage) if usage else None,
        "service_tier": "default", **dict.fromkeys(_NULL_FIELDS), **(echo or _DEFAULT_ECHO),
    }
    if sources:
        obj["search_sources"] = sources
    return obj


def failed_code(exc: GatewayError) -> str:
    """`response.error.code` is a closed set in the API; the precise code travels in the `error` event."""
    if exc.status == 429 or exc.code == "rate_limit_exceeded":
        return "rate_limit_exceeded"
    if exc.code == "content_policy_violation":
        return "invalid_prompt"
    return "server_error"


def _frame(obj: dict) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class StreamEncoder:
    """Pieces → Responses API SSE events."""

    def __init__(
        self,
        *,
        model: str,
        prompt_tokens: int,
        include_usage: bool = True,
        ids: IdFactory | None = None,
        created: int | None = None,
        request: ChatRequest | None = None,
        seal: Seal | None = None,
    ) -> None:
        self._ids = ids or new_id
        self._seal = _seal_for(request, seal)
        self.echo: dict[str, Any] | None = getattr(request, "echo", None)
        self.final: dict[str, Any] | None = None  # the last response object sent (completed/incomplete/failed)
        self.id = getattr(request, "response_id", None) or self._ids("resp_", 8)
        self.model = model
        if created is None:
            created = getattr(request, "created_at", None)
        self.created = int(time.time()) if created is None else created
        self.prompt_tokens = prompt_tokens
        self.started = False
        self._seq = 0
        self._items: list[dict[str, Any]] = []  # completed items, in output order
        self._open: str = ""  # "" | "reasoning" | "message"
        self._open_id = ""
        self._open_text: list[str] = []
        self._closed = False

    # -- framing helpers

    def _ev(self, out: list[bytes], type_: str, **fields: Any) -> None:
        obj = {"type": type_, "sequence_number": self._seq, **fields}
        self._seq += 1
        out.append(_frame(obj))

    def _start(self, out: list[bytes]) -> None:
        if self.started:
            return
        self.started = True
        snapshot = _response(rid=self.id, created=self.created, model=self.model, status="in_progress",
                             output=[], usage=None, echo=self.echo)
        self._ev(out, "response.created", response=snapshot)
        self._ev(out, "response.in_progress", response=snapshot)

    def _open_item(self, out: list[bytes], kind: str) -> None:
        if self._open == kind:
            return
        self._close_item(out, [])
        self._open = kind
        self._open_text = []
        idx = len(self._items)
        if kind == "reasoning":
            self._open_id = self._ids("rs_", 8)
            self._ev(out, "response.output_item.added", output_index=idx,
                     item=_reasoning_item(self._open_id, "", "in_progress", self._seal))
            self._ev(out, "response.reasoning_summary_part.added", item_id=self._open_id, output_index=idx,
                     summary_index=0, part={"type": "summary_text", "text": ""})
        else:
            self._open_id = self._ids("msg_", 8)
            self._ev(out, "response.output_item.added", output_index=idx,
                     item=_message_item(self._open_id, "", [], "in_progress"))
            self._ev(out, "response.content_part.added", item_id=self._open_id, output_index=idx, content_index=0,
                     part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})

    def _close_item(self, out: list[bytes], annotations: list[dict], status: str = "completed") -> None:
        if not self._open:
            return
        idx = len(self._items)
        text = "".join(self._open_text)
        iid = self._open_id
        if self._open == "reasoning":
            self._ev(out, "response.reasoning_summary_text.done", item_id=iid, output_index=idx, summary_index=0,
                     text=text)
            self._ev(out, "response.reasoning_summary_part.done", item_id=iid, output_index=idx, summary_index=0,
                     part={"type": "summary_text", "text": text})
            item = _reasoning_item(iid, text, seal=self._seal)
        else:
            for n, a in enumerate(annotations):
                self._ev(out, "response.output_text.annotation.added", item_id=iid, output_index=idx,
                         content_index=0, annotation_index=n, annotation=a)
            self._ev(out, "response.output_text.done", item_id=iid, output_index=idx, content_index=0, text=text,
                     logprobs=[])
            self._ev(out, "response.content_part.done", item_id=iid, output_index=idx, content_index=0,
                     part={"type": "output_text", "text": text, "annotations": annotations, "logprobs": []})
            item = _message_item(iid, text, annotations, status)
        self._ev(out, "response.output_item.done", output_index=idx, item=item)
        self._items.append(item)
        self._open = ""

    # -- public

    def feed(self, pieces: list[Piece]) -> bytes:
        out: list[bytes] = []
        for piece in pieces:
            kind = type(piece)
            if kind is TextPiece or kind is ReasoningPiece:
                self._start(out)
                which = "message" if kind is TextPiece else "reasoning"
                self._open_item(out, which)
                self._open_text.append(piece.text)
                idx = len(self._items)
                if which == "message":
                    self._ev(out, "response.output_text.delta", item_id=self._open_id, output_index=idx,
                             content_index=0, delta=piece.text, logprobs=[])
                else:
                    self._ev(out, "response.reasoning_summary_text.delta", item_id=self._open_id, output_index=idx,
                             summary_index=0, delta=piece.text)
            elif kind is ToolCallsPiece:
                self._start(out)
                self._close_item(out, [])
                for call in piece.calls:
                    idx = len(self._items)
                    fid = self._ids("fc_", 8)
                    self._ev(out, "response.output_item.added", output_index=idx,
                             item=_call_item(fid, call, "in_progress"))
                    self._ev(out, "response.function_call_arguments.delta", item_id=fid, output_index=idx,
                             delta=call.arguments)
                    self._ev(out, "response.function_call_arguments.done", item_id=fid, output_index=idx,
                             name=call.name, arguments=call.arguments)
                    item = _call_item(fid, call)
                    self._ev(out, "response.output_item.done", output_index=idx, item=item)
                    self._items.append(item)
        return b"".join(out)

    def finish(self, result: TurnResult) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out: list[bytes] = []
        self._start(out)
        if not self._items and not self._open:
            self._open_item(out, "message")  # an empty answer is still one (empty) message item
        annotations = [_annotation(a) for a in result.annotations] if self._open == "message" else []
        status = _status(result)
        self._close_item(out, annotations, status)
        usage = usage_for(prompt_tokens=self.prompt_tokens, result=result)
        final = _response(rid=self.id, created=self.created, model=self.model, status=status,
                          output=self._items, usage=usage, sources=result.search_sources, echo=self.echo)
        self.final = final
        # a response cut at max_output_tokens ends with response.incomplete, as OpenAI's does
        self._ev(out, f"response.{status}", response=final)
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    def error(self, exc: GatewayError) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out: list[bytes] = []
        self._start(out)
        code = exc.code or exc.type
        failed = _response(rid=self.id, created=self.created, model=self.model, status="failed",
                           output=self._items, usage=None, error={"code": failed_code(exc), "message": exc.client_message()},
                           echo=self.echo)
        self.final = failed
        self._ev(out, "response.failed", response=failed)
        self._ev(out, "error", code=code, message=exc.client_message(), param=exc.param)
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    def keepalive(self) -> bytes:
        return b": keep-alive\n\n"

    def begin(self) -> bytes:
        """The opening of the stream before any content: response.created, response.in_progress."""
        out: list[bytes] = []
        self._start(out)
        return b"".join(out) or self.keepalive()


def body(
    *, result: TurnResult, model: str, prompt_tokens: int, ids: IdFactory | None = None, created: int | None = None,
    request: ChatRequest | None = None, seal: Seal | None = None,
) -> dict[str, Any]:
    make = ids or new_id
    rid = make("resp_", 8)
    output: list[dict[str, Any]] = []
    if result.reasoning:
        output.append(_reasoning_item(make("rs_", 8), result.reasoning, seal=_seal_for(request, seal)))
    if result.text or not result.tool_calls:
        output.append(_message_item(make("msg_", 8), result.text,
                                    [] if result.tool_calls else [_annotation(a) for a in result.annotations],
                                    _status(result)))
    for call in result.tool_calls:
        output.append(_call_item(make("fc_", 8), call))
    usage = usage_for(prompt_tokens=prompt_tokens, result=result)
    return _response(rid=rid, created=int(time.time()) if created is None else created, model=model,
                     status=_status(result), output=output, usage=usage, sources=result.search_sources,
                     echo=getattr(request, "echo", None))


def snapshot(*, request: ResponsesRequest, rid: str, created: int, status: str,
             error: dict | None = None) -> dict[str, Any]:
    """The response object of a background response before (queued, in_progress) or without an
    answer (cancelled, failed): the request's settings echoed, no output."""
    return _response(rid=rid, created=created, model=request.model, status=status, output=[], usage=None,
                     echo=request.echo, error=error)


def _status(result: TurnResult) -> str:
    return "incomplete" if result.finish_reason == "length" else "completed"
