"""Anthropic Messages (`POST /v1/messages`, `/v1/messages/count_tokens`): parser and encoders.

Wire format out (streaming): every SSE event has `event: <type>` and `data: {json}`; no `[DONE]`.
  message_start (message with usage.input_tokens, output_tokens 0) →
  per block, 0-based consecutive indexes:
    thinking: content_block_start {type thinking} → thinking_delta* → signature_delta (opaque,
              made by the gateway so SDK accumulators accept the block) → content_block_stop
    text:     content_block_start {type text} → text_delta* → content_block_stop
    tool_use: content_block_start {type tool_use, id, name, input {}} → input_json_delta whose
              partial_json is the whole input JSON → content_block_stop
  → message_delta (stop_reason end_turn | tool_use, stop_sequence null, usage.output_tokens)
  → message_stop.   `ping` frames may be sent any time; mid-stream failure: `event: error` with
  `{"type":"error","error":{"type","message"}}`.
Non-stream: a `message` object with the same blocks.
"""
from __future__ import annotations

import base64
import hashlib
import re
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
    flatten,
    new_id,
    opt_bool,
    opt_dict,
    opt_int,
    opt_number,
    opt_stop,
    req_str,
    require_body,
)
from gateway.translate.openai_chat import FUNCTION_NAME
from gateway.translate.structured import TEXT, OutputFormat, format_parse
from gateway.translate.tokens import anthropic_usage, prompt_tokens, usage_for

THINKING_TYPES = frozenset({"enabled", "disabled", "adaptive"})
_ROLES = frozenset({"user", "assistant", "system"})
MAX_STOP_SEQUENCES = 16  # our bound (Anthropic documents none); each sequence ≤ common.MAX_STOP_CHARS

# --------------------------------------------------------------------------- request parsing


def _source_attachment(block: dict, p: str, kind: str, index: int) -> Attachment:
    source = block.get("source")
    if not isinstance(source, dict):
        raise bad_type(f"{p}.source", "an object", source)
    stype = source.get("type")
    if stype == "base64":
        mime = req_str(source, "media_type", f"{p}.source.media_type", required=True) or ""
        data = decode_base64(req_str(source, "data", f"{p}.source.data", required=True) or "", f"{p}.source.data")
        return Attachment(kind, mime, _name(block, mime, index, kind), data=data, param=f"{p}.source.data")
    if stype == "url":
        url = req_str(source, "url", f"{p}.source.url", required=True) or ""
        if not url.startswith(("http://", "https://")):
            raise InvalidRequest(f"'{p}.source.url' must be an http(s) URL.", param=f"{p}.source.url")
        return Attachment(kind, "", _name(block, "", index, kind), url=url, param=f"{p}.source.url")
    if stype == "text" and kind == "file":
        text = req_str(source, "data", f"{p}.source.data", required=True) or ""
        mime = source.get("media_type") if isinstance(source.get("media_type"), str) else "text/plain"
        return Attachment("file", mime, _name(block, "text/plain", index, "document"), data=text.encode(),
                          param=f"{p}.source.data")
    raise InvalidRequest(f"Unsupported source type '{stype}' in '{p}.source.type'.", param=f"{p}.source.type")


def _name(block: dict, mime: str, index: int, kind: str) -> str:
    title = block.get("title")
    if isinstance(title, str) and title.strip():
        return title.strip()
    return file_name_for(mime, index, kind)


def _tool_result_text(content: Any, p: str, turn: Turn) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_type(f"{p}.content", "a string or an array of content blocks", content)
    texts = []
    for k, block in enumerate(content):
        q = f"{p}.content[{k}]"
        if not isinstance(block, dict):
            raise bad_type(q, "an object", block)
        kind = block.get("type")
        if kind == "text":
            texts.append(req_str(block, "text", f"{q}.text", required=True) or "")
        elif kind == "image":
            turn.attachments.append(_source_attachment(block, q, "image", len(turn.attachments)))
        elif kind == "document":
            turn.attachments.append(_source_attachment(block, q, "file", len(turn.attachments)))
        else:
            raise InvalidRequest(f"Unsupported content block type '{kind}' in a tool_result ('{q}.type').",
                                     param=f"{q}.type")
    return "\n".join(texts)


def _messages(messages: list) -> list[Turn]:
    turns: list[Turn] = []
    tool_use_ids: set[str] = set()
    for i, msg in enumerate(messages):
        p = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad_type(p, "an object", msg)
        role = req_str(msg, "role", f"{p}.role", required=True)
        if role not in _ROLES:
            # Anthropic's own wording: clients match on it to decide on their fallbacks.
            raise InvalidRequest(f'messages: Unexpected role "{role}". Allowed roles are "user", "assistant" or '
                                 '"system" (instructions that apply from that point of the conversation).',
                                 param=f"{p}.role")
        content = msg.get("content")
        if content is None:
            raise InvalidRequest(f"Missing required parameter: '{p}.content'.", param=f"{p}.content",
                                 code="missing_required_parameter")
        if role == "system":
            # A system message inside `messages` (Anthropic's mid-conversation system messages, sent
            # by Claude Code): its instructions are folded into the prompt where they stand.
            turns.append(Turn("system", _system(content, param=f"{p}.content")))
            continue
        if isinstance(content, str):
            turns.append(Turn(role, [content]))
            continue
        if not isinstance(content, list):
            raise bad_type(f"{p}.content", "a string or an array of content blocks", content)
        current: Turn | None = None
        for j, block in enumerate(content):
            q = f"{p}.content[{j}]"
            if not isinstance(block, dict):
                raise bad_type(q, "an object", block)
            kind = block.get("type")
            if kind == "tool_result":
                if role != "user":
                    raise InvalidRequest(f"'{q}.type': tool_result blocks belong in user messages.", param=f"{q}.type")
                use_id = req_str(block, "tool_use_id", f"{q}.tool_use_id", required=True) or ""
                if use_id not in tool_use_ids:
                    raise InvalidRequest(
                        f"'{q}.tool_use_id' refers to '{use_id}', but no earlier assistant tool_use block has this id.",
                        param=f"{q}.tool_use_id",
                    )
                tool_turn = Turn("tool", tool_call_id=use_id)
                text = _tool_result_text(block.get("content"), q, tool_turn)
                if opt_bool(block, "is_error", f"{q}.is_error"):
                    text = f"(error) {text}"
                tool_turn.parts.append(text)
                turns.append(tool_turn)
                current = None
                continue
            if kind in ("thinking", "redacted_thinking"):
                continue  # earlier reasoning is not replayed upstream
            if current is None:
                current = Turn(role)
                turns.append(current)
            if kind == "text":
                current.parts.append(req_str(block, "text", f"{q}.text", required=True) or "")
            elif kind == "image":
                if role != "user":
                    raise InvalidRequest(f"'{q}.type': image blocks are only supported in user messages.", param=f"{q}.type")
                current.attachments.append(_source_attachment(block, q, "image", len(current.attachments)))
            elif kind == "document":
                if role != "user":
                    raise InvalidRequest(f"'{q}.type': document blocks are only supported in user messages.",
                                     param=f"{q}.type")
                current.attachments.append(_source_attachment(block, q, "file", len(current.attachments)))
            elif kind == "tool_use":
                if role != "assistant":
                    raise InvalidRequest(f"'{q}.type': tool_use blocks belong in assistant messages.", param=f"{q}.type")
                use_id = req_str(block, "id", f"{q}.id", required=True, nonempty=True) or ""
                name = req_str(block, "name", f"{q}.name", required=True, nonempty=True) or ""
                args = block.get("input", {})
                if not isinstance(args, dict):
                    raise bad_type(f"{q}.input", "an object", args)
                tool_use_ids.add(use_id)
                current.tool_calls.append(ToolCall(use_id, name, orjson.dumps(args).decode()))
            elif isinstance(kind, str):
                raise InvalidRequest(f"Unsupported content block type '{kind}' in '{q}.type'.", param=f"{q}.type")
            else:
                raise InvalidRequest(f"Missing or invalid '{q}.type'.", param=f"{q}.type")
    return turns


def _system(raw: Any, param: str = "system") -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw] if raw else []
    if not isinstance(raw, list):
        raise bad_type(param, "a string or an array of text blocks", raw)
    parts = []
    for i, block in enumerate(raw):
        if not isinstance(block, dict):
            raise bad_type(f"{param}[{i}]", "an object", block)
        if block.get("type") != "text":
            raise InvalidRequest(f"Unsupported block type '{block.get('type')}' in '{param}[{i}].type': only text "
                                 "blocks.", param=f"{param}[{i}].type")
        text = req_str(block, "text", f"{param}[{i}].text", required=True) or ""
        if text:
            parts.append(text)
    return parts


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
        kind = tool.get("type")
        if kind not in (None, "custom"):
            continue  # Anthropic server tools (web_search_…, bash_…): Grok uses its own
        name = req_str(tool, "name", f"{p}.name", required=True) or ""
        if not FUNCTION_NAME.match(name):
            raise InvalidRequest(f"Invalid '{p}.name': '{name}'.", param=f"{p}.name")
        desc = req_str(tool, "description", f"{p}.description") or ""
        schema = tool.get("input_schema")
        if schema is None:
            raise InvalidRequest(f"Missing required parameter: '{p}.input_schema'.", param=f"{p}.input_schema")
        if not isinstance(schema, dict):
            raise bad_type(f"{p}.input_schema", "an object", schema)
        tools.append(ToolSpec(name, desc, schema))
    return tools


def _tool_choice(raw: Any, tools: list[ToolSpec]) -> ToolChoice:
    if raw is None:
        return ToolChoice()
    if not isinstance(raw, dict):
        raise bad_type("tool_choice", "an object", raw)
    kind = raw.get("type")
    opt_bool(raw, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use")
    if kind == "auto":
        return ToolChoice("auto")
    if kind == "none":
        return ToolChoice("none")
    if kind in ("any", "tool") and not tools:
        raise InvalidRequest(f"'tool_choice' of type '{kind}' requires tools.", param="tool_choice")
    if kind == "any":
        return ToolChoice("required")
    if kind == "tool":
        name = req_str(raw, "name", "tool_choice.name", required=True)
        if name not in {t.name for t in tools}:
            raise InvalidRequest(f"'tool_choice.name' names the tool '{name}', which is not among the declared tools.",
                                 param="tool_choice.name")
        return ToolChoice("function", name)
    raise InvalidRequest(f"Invalid value for 'tool_choice.type': '{kind}'. Use auto, any, tool or none.",
                         param="tool_choice.type")


# Pydantic's words, which Anthropic's API uses: "<dotted.path>: Input should be a valid list".
_VALID = {"a string": "a valid string", "an array": "a valid list", "an object": "a valid dictionary",
          "an integer": "a valid integer", "a boolean": "a valid boolean", "a number": "a valid number"}


def anthropic_worded(exc: InvalidRequest) -> InvalidRequest:
    """Reword a validation error the way Anthropic's API words it (`max_tokens: Field required`,
    `messages.0.content: Input should be a valid list`): clients such as Claude Code read these
    messages to choose their fallbacks. The param stays in OpenAI's bracket form for the logs."""
    if not exc.param:
        return exc
    path = re.sub(r"\[(\d+)\]", r".\1", exc.param)
    if exc.message.startswith(("messages:", f"{path}:")):
        return exc
    if exc.code == "missing_required_parameter":
        text = "Field required"
    elif exc.code == "invalid_type":
        expected = getattr(exc, "expected", "")
        text = f"Input should be {_VALID.get(expected, expected)}"
    else:
        text = exc.message
    exc.message = f"{path}: {text}"
    exc.args = (exc.message,)
    return exc


def parse_request(
    body: Any, *, default_stream: bool, default_thinking: bool, require_max_tokens: bool = True
) -> ChatRequest:
    try:
        return _parse(body, default_stream=default_stream, default_thinking=default_thinking,
                      require_max_tokens=require_max_tokens)
    except InvalidRequest as exc:
        raise anthropic_worded(exc) from None


def _parse(body: Any, *, default_stream: bool, default_thinking: bool, require_max_tokens: bool) -> ChatRequest:
    body = require_body(body)
    model = req_str(body, "model", "model", required=True, nonempty=True) or ""
    max_tokens = opt_int(body, "max_tokens", "max_tokens", 1, required=require_max_tokens)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages",
                             code="missing_required_parameter")
    if not isinstance(messages, list):
        raise bad_type("messages", "an array", messages)
    if not messages:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    turns = _messages(messages)
    system = _system(body.get("system"))
    if system:
        turns.insert(0, Turn("system", system))
    stream = opt_bool(body, "stream", "stream")
    opt_number(body, "temperature", "temperature", 0, 1)
    opt_number(body, "top_p", "top_p", 0, 1)
    opt_int(body, "top_k", "top_k", 0)
    stops = opt_stop(body, "stop_sequences", "stop_sequences", max_items=MAX_STOP_SEQUENCES, allow_string=False)
    opt_dict(body, "metadata", "metadata")
    output_format = _output_format(body)
    show = default_thinking
    thinking = opt_dict(body, "thinking", "thinking")
    if thinking is not None:
        kind = thinking.get("type")
        if kind not in THINKING_TYPES:
            raise InvalidRequest(f"Invalid value for 'thinking.type': '{kind}'. Use 'enabled' or 'disabled'.",
                                 param="thinking.type")
        opt_int(thinking, "budget_tokens", "thinking.budget_tokens", 1)
        show = kind != "disabled"
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), tools)
    return ChatRequest(
        model=model, turns=turns, tools=tools, tool_choice=choice,
        stream=default_stream if stream is None else stream, show_reasoning=show, include_usage=True,
        family="anthropic", max_tokens=max_tokens, stop=stops, output_format=output_format,
    )


def _output_format(body: dict) -> OutputFormat:
    """Anthropic's structured outputs, `output_config.format` (or the beta `output_format`):
    `{"type": "json_schema", "schema": {…}}`, emulated like OpenAI's (structured.py). Claude Code
    sends them on its side requests (memory selection, classifiers). The OpenAI spelling
    `response_format` is refused by name rather than ignored."""
    if body.get("response_format") is not None:
        raise InvalidRequest("response_format: Extra inputs are not permitted; on /v1/messages structured outputs "
                             "are output_config.format", param="response_format", code="unsupported_parameter")
    config = opt_dict(body, "output_config", "output_config")
    beta = opt_dict(body, "output_format", "output_format")
    ga = opt_dict(config, "format", "output_config.format") if config is not None else None
    if beta is not None and ga is not None:
        raise InvalidRequest("output_format: Both output_format and output_config.format were provided; send only "
                             "output_config.format", param="output_format")
    raw, param = (beta, "output_format") if beta is not None else (ga, "output_config.format")
    if raw is None:
        return TEXT
    if raw.get("type") != "json_schema":
        raise InvalidRequest(f"{param}.type: Input should be 'json_schema'", param=f"{param}.type")
    if raw.get("schema") is None:
        raise InvalidRequest(f"{param}.schema: Field required", param=f"{param}.schema",
                             code="missing_required_parameter")
    # No `strict` flag on this API: the schema is applied as written.
    return format_parse(raw={"type": "json_schema", "name": "output", "schema": raw["schema"]}, param=param,
                        nested=False, label=param)


def count_tokens(body: Any) -> dict[str, int]:
    """`/v1/messages/count_tokens`: the same estimate as a real request's usage.input_tokens."""
    req = parse_request(body, default_stream=False, default_thinking=True, require_max_tokens=False)
    return {"input_tokens": prompt_tokens(flatten(req))}


# --------------------------------------------------------------------------- encoders


def _frame(obj: dict) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def signature_for(thinking: str) -> str:
    """An opaque signature for gateway-made thinking blocks (there is no upstream one to forward)."""
    return base64.b64encode(b"grok2api:" + hashlib.sha256(thinking.encode()).digest()).decode()


def _tool_input(call: ToolCall) -> dict:
    try:
        value = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class StreamEncoder:
    """Pieces → Anthropic Messages SSE events."""

    def __init__(
        self,
        *,
        model: str,
        prompt_tokens: int,
        include_usage: bool = True,
        ids: IdFactory | None = None,
        created: int | None = None,
    ) -> None:
        self.id = (ids or new_id)("msg_", 8)
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.started = False
        self._index = 0
        self._open = ""  # "" | "thinking" | "text"
        self._thinking: list[str] = []
        self._closed = False
        self._had_tool_use = False

    def _start(self, out: list[bytes]) -> None:
        if self.started:
            return
        self.started = True
        out.append(_frame({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 0},
        }}))
        out.append(self.keepalive())

    def _close(self, out: list[bytes]) -> None:
        if not self._open:
            return
        if self._open == "thinking":
            out.append(_frame({"type": "content_block_delta", "index": self._index, "delta": {
                "type": "signature_delta", "signature": signature_for("".join(self._thinking))}}))
        out.append(_frame({"type": "content_block_stop", "index": self._index}))
        self._index += 1
        self._open = ""

    def _open_block(self, out: list[bytes], kind: str) -> None:
        if self._open == kind:
            return
        self._close(out)
        self._open = kind
        block = {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking" else {"type": "text", "text": ""}
        if kind == "thinking":
            self._thinking = []
        out.append(_frame({"type": "content_block_start", "index": self._index, "content_block": block}))

    def feed(self, pieces: list[Piece]) -> bytes:
        out: list[bytes] = []
        for piece in pieces:
            kind = type(piece)
            if kind is TextPiece:
                if not piece.text:
                    continue
                self._start(out)
                self._open_block(out, "text")
                out.append(_frame({"type": "content_block_delta", "index": self._index,
                                   "delta": {"type": "text_delta", "text": piece.text}}))
            elif kind is ReasoningPiece:
                self._start(out)
                self._open_block(out, "thinking")
                self._thinking.append(piece.text)
                out.append(_frame({"type": "content_block_delta", "index": self._index,
                                   "delta": {"type": "thinking_delta", "thinking": piece.text}}))
            elif kind is ToolCallsPiece:
                self._start(out)
                self._close(out)
                for call in piece.calls:
                    self._had_tool_use = True
                    out.append(_frame({"type": "content_block_start", "index": self._index, "content_block": {
                        "type": "tool_use", "id": call.id, "name": call.name, "input": {}}}))
                    out.append(_frame({"type": "content_block_delta", "index": self._index, "delta": {
                        "type": "input_json_delta", "partial_json": call.arguments}}))
                    out.append(_frame({"type": "content_block_stop", "index": self._index}))
                    self._index += 1
        return b"".join(out)

    def finish(self, result: TurnResult) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out: list[bytes] = []
        self._start(out)
        if self._index == 0 and not self._open:
            self._open_block(out, "text")  # an empty answer is still one (empty) text block
        self._close(out)
        usage = usage_for(prompt_tokens=self.prompt_tokens, result=result)
        stop = stop_reason(result, had_tool_use=self._had_tool_use)
        delta: dict[str, Any] = {"type": "message_delta",
                                 "delta": {"stop_reason": stop, "stop_sequence": result.stop_sequence},
                                 "usage": {"output_tokens": usage.completion_tokens}}
        if result.search_sources:
            delta["search_sources"] = result.search_sources
        out.append(_frame(delta))
        out.append(_frame({"type": "message_stop"}))
        return b"".join(out)

    def error(self, exc: GatewayError) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        self.started = True
        return _frame(exc.anthropic_body())

    def keepalive(self) -> bytes:
        return ping()

    def begin(self) -> bytes:
        """The opening of the stream before any content: message_start, never a bare ping first."""
        out: list[bytes] = []
        self._start(out)
        return b"".join(out) or ping()


def stop_reason(result: TurnResult, *, had_tool_use: bool = False) -> str:
    if result.tool_calls or had_tool_use:
        return "tool_use"
    if result.finish_reason == "length":
        return "max_tokens"
    if result.stop_sequence is not None:
        return "stop_sequence"
    return "end_turn"


def ping() -> bytes:
    return b'event: ping\ndata: {"type":"ping"}\n\n'


def body(
    *, result: TurnResult, model: str, prompt_tokens: int, ids: IdFactory | None = None, created: int | None = None
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if result.reasoning:
        content.append({"type": "thinking", "thinking": result.reasoning, "signature": signature_for(result.reasoning)})
    if result.text or (not result.tool_calls and not content):
        content.append({"type": "text", "text": result.text})
    for call in result.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)})
    usage = usage_for(prompt_tokens=prompt_tokens, result=result)
    out: dict[str, Any] = {
        "id": (ids or new_id)("msg_", 8), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason(result),
        "stop_sequence": result.stop_sequence, "usage": anthropic_usage(usage),
    }
    if result.search_sources:
        out["search_sources"] = result.search_sources
    return out
