"""OpenAI Chat Completions (`POST /v1/chat/completions`): request parser and response encoders.

Wire format out (streaming, text/event-stream):
    data: {"id":"chatcmpl-…","object":"chat.completion.chunk","created":…,"model":…,
           "choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}
  role only in the first delta; `reasoning_content` deltas for reasoning; one chunk per tool call
  (`index`, `id`, `type`, `function.name`, `function.arguments` = the whole JSON); a finish chunk
  with `finish_reason` ("stop" | "tool_calls"), `delta.annotations` (url_citation) when present
  and a root `search_sources` array when present; with `stream_options.include_usage` every chunk
  has `"usage": null` and one more chunk `{"choices": [], "usage": {…}}` follows; `data: [DONE]`.
  Mid-stream failure: `data: {"error":{"message","type","param","code"}}` then `data: [DONE]`.
Non-stream: a `chat.completion` object (docs/upstream-protocol.md §12.6.1), usage always present.
"""
from __future__ import annotations

import re
import time
from typing import Any

import orjson

from grokweb.errors import GatewayError, InvalidRequest
from gateway.translate.assembler import Piece, ReasoningPiece, TextPiece, ToolCallsPiece, TurnResult
from gateway.translate.common import (
    REASONING_EFFORTS,
    ROLES,
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
    opt_stop,
    parse_data_uri,
    req_str,
    require_body,
)
from gateway.translate.structured import format_parse
from gateway.translate.tokens import openai_usage, usage_for
from gateway.translate.tools import normalise_arguments

FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_DONE = b"data: [DONE]\n\n"

# --------------------------------------------------------------------------- request parsing


def _text_of(value: Any, param: str) -> str:
    """A text field that may be a string or a list of {type:"text"} parts (tool / system messages)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        out = []
        for j, part in enumerate(value):
            p = f"{param}[{j}]"
            if not isinstance(part, dict):
                raise bad_type(p, "an object", part)
            if part.get("type") != "text":
                raise InvalidRequest(f"Only text parts are supported in '{param}' (see '{p}.type').", param=f"{p}.type")
            out.append(req_str(part, "text", f"{p}.text", required=True) or "")
        return "\n".join(out)
    raise bad_type(param, "a string or an array of content parts", value)


def _parts(turn: Turn, content: list, param: str, msg_index: int) -> None:
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise bad_type(p, "an object", part)
        kind = part.get("type")
        if kind == "text":
            turn.parts.append(req_str(part, "text", f"{p}.text", required=True) or "")
        elif kind == "refusal" and turn.role == "assistant":
            turn.parts.append(req_str(part, "refusal", f"{p}.refusal", required=True) or "")
        elif kind in ("image_url", "input_audio", "file") and turn.role != "user":
            raise InvalidRequest(f"'{kind}' parts are only supported in user messages ('{p}.type').", param=f"{p}.type")
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            url_param = f"{p}.image_url.url" if isinstance(image, dict) else f"{p}.image_url"
            if not isinstance(url, str):
                raise bad_type(url_param, "a string", url)
            turn.attachments.append(image_attachment(url, url_param, len(turn.attachments)))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, dict):
                raise bad_type(f"{p}.input_audio", "an object", audio)
            data = req_str(audio, "data", f"{p}.input_audio.data", required=True) or ""
            fmt = req_str(audio, "format", f"{p}.input_audio.format") or "wav"
            mime = "audio/mpeg" if fmt == "mp3" else f"audio/{fmt}"
            turn.attachments.append(
                Attachment("audio", mime, f"audio-{len(turn.attachments)}.{fmt}",
                           data=decode_base64(data, f"{p}.input_audio.data"), param=f"{p}.input_audio.data")
            )
        elif kind == "file":
            file = part.get("file")
            if not isinstance(file, dict):
                raise bad_type(f"{p}.file", "an object", file)
            raw = file.get("file_data", file.get("data"))
            key = "file_data" if "file_data" in file else "data"
            if raw is None:
                if file.get("file_id") is not None:
                    raise InvalidRequest(f"'{p}.file.file_id': file ids are not supported; send the file inline as file_data.",
                                         param=f"{p}.file.file_id")
                raise InvalidRequest(f"Missing required parameter: '{p}.file.file_data'.", param=f"{p}.file.file_data")
            if not isinstance(raw, str):
                raise bad_type(f"{p}.file.{key}", "a string", raw)
            if raw.startswith("data:"):
                mime, data = parse_data_uri(raw, f"{p}.file.{key}")
            else:
                mime, data = "application/octet-stream", decode_base64(raw, f"{p}.file.{key}")
            name = req_str(file, "filename", f"{p}.file.filename") or file_name_for(mime, len(turn.attachments))
            turn.attachments.append(Attachment("file", mime, name, data=data, param=f"{p}.file.{key}"))
        elif isinstance(kind, str):
            raise InvalidRequest(f"Unsupported content part type '{kind}' in '{p}.type'.", param=f"{p}.type")
        else:
            raise InvalidRequest(f"Missing or invalid '{p}.type'.", param=f"{p}.type")


def _tool_calls(raw: Any, param: str) -> list[ToolCall]:
    if not isinstance(raw, list):
        raise bad_type(param, "an array", raw)
    calls = []
    for k, call in enumerate(raw):
        p = f"{param}[{k}]"
        if not isinstance(call, dict):
            raise bad_type(p, "an object", call)
        fn = call.get("function")
        if not isinstance(fn, dict):
            raise bad_type(f"{p}.function", "an object", fn)
        name = req_str(fn, "name", f"{p}.function.name", required=True, nonempty=True) or ""
        args = fn.get("arguments")
        if args is not None and not isinstance(args, str):
            raise bad_type(f"{p}.function.arguments", "a string", args)
        call_id = req_str(call, "id", f"{p}.id") or new_id("call_", 6)
        calls.append(ToolCall(call_id, name, normalise_arguments(args, param=f"{p}.function.arguments")))
    return calls


def _message(msg: Any, i: int) -> Turn:
    param = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise bad_type(param, "an object", msg)
    role = req_str(msg, "role", f"{param}.role", required=True)
    if role not in ROLES:
        raise InvalidRequest(
            f"Invalid value for '{param}.role': '{role}'. Supported values are: 'system', 'developer', 'user', "
            "'assistant' and 'tool'.",
            param=f"{param}.role",
        )
    turn = Turn(role)
    content = msg.get("content")
    if role == "tool":
        turn.tool_call_id = req_str(msg, "tool_call_id", f"{param}.tool_call_id", required=True)
        if content is None:
            raise InvalidRequest(f"Missing required parameter: '{param}.content'.", param=f"{param}.content")
        turn.parts.append(_text_of(content, f"{param}.content"))
        return turn
    if role == "assistant" and msg.get("tool_calls") is not None:
        turn.tool_calls = _tool_calls(msg["tool_calls"], f"{param}.tool_calls")
    if content is None:
        if role != "assistant":
            raise InvalidRequest(f"Missing required parameter: '{param}.content'.", param=f"{param}.content",
                                 code="missing_required_parameter")
    elif isinstance(content, str):
        turn.parts.append(content)
    elif isinstance(content, list):
        _parts(turn, content, f"{param}.content", i)
    else:
        raise bad_type(f"{param}.content", "a string or an array of content parts", content)
    return turn


def parse_tools(raw: Any, param: str = "tools") -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_type(param, "an array", raw)
    tools = []
    for i, tool in enumerate(raw):
        p = f"{param}[{i}]"
        if not isinstance(tool, dict):
            raise bad_type(p, "an object", tool)
        kind = tool.get("type", "function")
        if kind != "function":
            raise InvalidRequest(f"Unsupported tool type '{kind}' in '{p}.type': only 'function' tools are supported.",
                                 param=f"{p}.type")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise bad_type(f"{p}.function", "an object", fn)
        name = req_str(fn, "name", f"{p}.function.name", required=True) or ""
        if not FUNCTION_NAME.match(name):
            raise InvalidRequest(
                f"Invalid '{p}.function.name': '{name}'. Use letters, digits, '_', '-', '.' or ':' (1-128 chars).",
                param=f"{p}.function.name",
            )
        desc = req_str(fn, "description", f"{p}.function.description") or ""
        params = opt_dict(fn, "parameters", f"{p}.function.parameters") or {}
        tools.append(ToolSpec(name, desc, params))
    return tools


def check_choice(choice: ToolChoice, tools: list[ToolSpec], param: str) -> ToolChoice:
    if choice.mode in ("required", "function") and not tools:
        raise InvalidRequest(f"'{param}' is '{choice.mode}' but no tools were declared.", param=param)
    if choice.mode == "function" and choice.name not in {t.name for t in tools}:
        raise InvalidRequest(f"'{param}' names the tool '{choice.name}', which is not among the declared tools.",
                             param=param)
    return choice


def _tool_choice(raw: Any, tools: list[ToolSpec]) -> ToolChoice:
    if raw is None:
        return ToolChoice()
    if isinstance(raw, str):
        if raw not in ("auto", "none", "required"):
            raise InvalidRequest(f"Invalid value for 'tool_choice': '{raw}'. Use 'auto', 'none', 'required' or "
                                 "a function object.", param="tool_choice")
        return check_choice(ToolChoice(raw), tools, "tool_choice")
    if not isinstance(raw, dict):
        raise bad_type("tool_choice", "a string or an object", raw)
    kind = raw.get("type")
    if kind == "function":
        fn = raw.get("function")
        if not isinstance(fn, dict):
            raise bad_type("tool_choice.function", "an object", fn)
        name = req_str(fn, "name", "tool_choice.function.name", required=True)
        choice = ToolChoice("function", name)
        if name not in {t.name for t in tools}:
            raise InvalidRequest(f"'tool_choice.function.name' names the tool '{name}', which is not among the "
                                 "declared tools.", param="tool_choice.function.name")
        return choice
    if kind == "allowed_tools":
        mode = (raw.get("allowed_tools") or {}).get("mode", "auto") if isinstance(raw.get("allowed_tools"), dict) else "auto"
        return check_choice(ToolChoice("required" if mode == "required" else "auto"), tools, "tool_choice")
    raise InvalidRequest(f"Unsupported 'tool_choice.type': '{kind}'.", param="tool_choice.type")


def show_reasoning_from_effort(value: Any, param: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad_type(param, "a string", value)
    if value not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"Invalid value for '{param}': '{value}'. Supported values are: none, minimal, low, medium, high, xhigh.",
            param=param,
        )
    return value != "none"


def parse_request(body: Any, *, default_stream: bool, default_thinking: bool) -> ChatRequest:
    body = require_body(body)
    model = req_str(body, "model", "model", required=True, nonempty=True) or ""
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list):
        raise bad_type("messages", "an array", messages)
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages", code="empty_array")
    turns = [_message(m, i) for i, m in enumerate(messages)]

    stream = opt_bool(body, "stream", "stream")
    opt_number(body, "temperature", "temperature", 0, 2)
    opt_number(body, "top_p", "top_p", 0, 1)
    opt_number(body, "presence_penalty", "presence_penalty", -2, 2)
    opt_number(body, "frequency_penalty", "frequency_penalty", -2, 2)
    max_tokens = opt_int(body, "max_tokens", "max_tokens", 1)
    max_completion = opt_int(body, "max_completion_tokens", "max_completion_tokens", 1)
    n = opt_int(body, "n", "n", 1)
    if n is not None and n > 1:
        raise InvalidRequest("Invalid value for 'n': this gateway returns one choice per request; use n=1 "
                             "(or send several requests).", param="n", code="unsupported_value")
    opt_int(body, "seed", "seed")
    stop = opt_stop(body, "stop", "stop", max_items=4)
    opt_bool(body, "parallel_tool_calls", "parallel_tool_calls")
    if opt_bool(body, "logprobs", "logprobs"):
        raise InvalidRequest("Invalid value for 'logprobs': log probabilities are not available through this "
                             "gateway (Grok Web does not expose them).", param="logprobs", code="unsupported_value")
    if body.get("top_logprobs") is not None:
        raise InvalidRequest("Unsupported parameter: 'top_logprobs': log probabilities are not available through "
                             "this gateway.", param="top_logprobs", code="unsupported_parameter")
    output_format = format_parse(raw=body.get("response_format"), param="response_format", nested=True)
    opt_dict(body, "metadata", "metadata")
    req_str(body, "user", "user")
    include_usage = False
    options = opt_dict(body, "stream_options", "stream_options")
    if options is not None:
        include_usage = bool(opt_bool(options, "include_usage", "stream_options.include_usage"))
    show = show_reasoning_from_effort(body.get("reasoning_effort"), "reasoning_effort", default_thinking)
    tools = parse_tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), tools)
    image_config = opt_dict(body, "image_config", "image_config")
    video_config = opt_dict(body, "video_config", "video_config")
    opt_list(body, "modalities", "modalities")
    return ChatRequest(
        model=model,
        turns=turns,
        tools=tools,
        tool_choice=choice,
        stream=default_stream if stream is None else stream,
        show_reasoning=show,
        include_usage=include_usage,
        image_config=image_config,
        video_config=video_config,
        family="openai",
        # max_completion_tokens supersedes the deprecated max_tokens when both are sent
        max_tokens=max_completion if max_completion is not None else max_tokens,
        stop=stop,
        output_format=output_format,
    )


# --------------------------------------------------------------------------- encoders


def _frame(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class StreamEncoder:
    """Pieces → `chat.completion.chunk` SSE frames."""

    def __init__(
        self,
        *,
        model: str,
        prompt_tokens: int,
        include_usage: bool = False,
        ids: IdFactory | None = None,
        created: int | None = None,
    ) -> None:
        self.id = (ids or new_id)("chatcmpl-", 8)
        self.model = model
        self.created = int(time.time()) if created is None else created
        self.prompt_tokens = prompt_tokens
        self.include_usage = include_usage
        self.started = False
        self._role_sent = False
        self._tool_index = 0
        self._closed = False

    def _chunk(self, delta: dict, finish_reason: str | None = None, **root: Any) -> bytes:
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            obj["usage"] = None
        obj.update(root)
        self.started = True
        return _frame(obj)

    def feed(self, pieces: list[Piece]) -> bytes:
        out = []
        for piece in pieces:
            kind = type(piece)
            if kind is TextPiece:
                out.append(self._chunk({"content": piece.text}))
            elif kind is ReasoningPiece:
                out.append(self._chunk({"reasoning_content": piece.text}))
            elif kind is ToolCallsPiece:
                for call in piece.calls:
                    out.append(self._chunk({"tool_calls": [{"index": self._tool_index, **call.as_openai()}]}))
                    self._tool_index += 1
        return b"".join(out)

    def finish(self, result: TurnResult) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        delta: dict[str, Any] = {}
        if result.annotations and not result.tool_calls:
            delta = {"content": "", "annotations": [_annotation(a) for a in result.annotations]}
        root = {"search_sources": result.search_sources} if result.search_sources else {}
        out = [self._chunk(delta, result.finish_reason, **root)]
        if self.include_usage:
            usage = openai_usage(usage_for(prompt_tokens=self.prompt_tokens, result=result))
            out.append(_frame({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage,
            }))
        out.append(_DONE)
        return b"".join(out)

    def error(self, exc: GatewayError) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        self.started = True
        return _frame(exc.openai_body()) + _DONE

    def keepalive(self) -> bytes:
        return b": keep-alive\n\n"

    def begin(self) -> bytes:
        """The opening of the stream before any content: a comment (a chunk would need a delta)."""
        return self.keepalive()


def _annotation(a: dict) -> dict:
    return {"type": "url_citation", "url_citation": {
        "url": a["url"], "title": a["title"], "start_index": a["start_index"], "end_index": a["end_index"]}}


def body(
    *, result: TurnResult, model: str, prompt_tokens: int, ids: IdFactory | None = None, created: int | None = None
) -> dict[str, Any]:
    # `refusal` stays null: Grok Web gives no refusal signal apart from the text itself (docs/api.md)
    message: dict[str, Any] = {"role": "assistant", "content": result.text, "refusal": None}
    if result.tool_calls:
        message["content"] = None
        message["tool_calls"] = [c.as_openai() for c in result.tool_calls]
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    if result.annotations and not result.tool_calls:
        message["annotations"] = [_annotation(a) for a in result.annotations]
    out: dict[str, Any] = {
        "id": (ids or new_id)("chatcmpl-", 8),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": result.finish_reason}],
        "usage": openai_usage(usage_for(prompt_tokens=prompt_tokens, result=result)),
    }
    if result.search_sources:
        out["search_sources"] = result.search_sources
    return out
