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
"""
from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.errors import GatewayError, InvalidRequest
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
            call = ToolCall(call_id, name, normalise_arguments(args))
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
            continue  # earlier reasoning is not replayed upstream
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


def parse_request(body: Any, *, default_stream: bool, default_thinking: bool) -> ChatRequest:
    body = require_body(body)
    model = req_str(body, "model", "model", required=True, nonempty=True) or ""
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
    opt_number(body, "temperature", "temperature", 0, 2)
    opt_number(body, "top_p", "top_p", 0, 1)
    max_output = opt_int(body, "max_output_tokens", "max_output_tokens", 1)
    if body.get("top_logprobs") is not None:
        raise InvalidRequest("Unsupported parameter: 'top_logprobs': log probabilities are not available through "
                             "this gateway.", param="top_logprobs", code="unsupported_parameter")
    opt_int(body, "max_tool_calls", "max_tool_calls", 1)
    opt_bool(body, "store", "store")
    opt_bool(body, "background", "background")
    opt_bool(body, "parallel_tool_calls", "parallel_tool_calls")
    opt_dict(body, "metadata", "metadata")
    opt_dict(body, "text", "text")
    opt_list(body, "include", "include")
    req_str(body, "previous_response_id", "previous_response_id")
    req_str(body, "truncation", "truncation")
    reasoning = opt_dict(body, "reasoning", "reasoning")
    effort = reasoning.get("effort") if reasoning else None
    show = show_reasoning_from_effort(effort, "reasoning.effort", default_thinking)
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), tools)
    return ChatRequest(
        model=model, turns=turns, tools=tools, tool_choice=choice,
        stream=default_stream if stream is None else stream, show_reasoning=show, include_usage=True,
        family="responses", max_tokens=max_output,
    )


# --------------------------------------------------------------------------- output items


def _reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if status == "completed" else []
    return {"id": item_id, "type": "reasoning", "summary": summary, "status": status}


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


def _response(
    *, rid: str, created: int, model: str, status: str, output: list, usage: Usage | None,
    tool_choice: str = "auto", error: dict | None = None, sources: list | None = None,
) -> dict[str, Any]:
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    obj: dict[str, Any] = {
        "id": rid, "object": "response", "created_at": created, "status": status, "model": model,
        "output": output, "parallel_tool_calls": True, "tool_choice": tool_choice, "tools": [],
        "error": error, "incomplete_details": incomplete, "instructions": None, "metadata": {},
        "temperature": None, "top_p": None, "usage": responses_usage(usage) if usage else None,
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
    ) -> None:
        self._ids = ids or new_id
        self.id = self._ids("resp_", 8)
        self.model = model
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
                             output=[], usage=None)
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
                     item=_reasoning_item(self._open_id, "", "in_progress"))
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
            item = _reasoning_item(iid, text)
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
                          output=self._items, usage=usage, sources=result.search_sources)
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
                           output=self._items, usage=None, error={"code": failed_code(exc), "message": exc.client_message()})
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
    *, result: TurnResult, model: str, prompt_tokens: int, ids: IdFactory | None = None, created: int | None = None
) -> dict[str, Any]:
    make = ids or new_id
    rid = make("resp_", 8)
    output: list[dict[str, Any]] = []
    if result.reasoning:
        output.append(_reasoning_item(make("rs_", 8), result.reasoning))
    if result.text or not result.tool_calls:
        output.append(_message_item(make("msg_", 8), result.text,
                                    [] if result.tool_calls else [_annotation(a) for a in result.annotations],
                                    _status(result)))
    for call in result.tool_calls:
        output.append(_call_item(make("fc_", 8), call))
    usage = usage_for(prompt_tokens=prompt_tokens, result=result)
    return _response(rid=rid, created=int(time.time()) if created is None else created, model=model,
                     status=_status(result), output=output, usage=usage, sources=result.search_sources)


def _status(result: TurnResult) -> str:
    return "incomplete" if result.finish_reason == "length" else "completed"
