"""The three encoders, driven by every chat_stream__* fixture, checked against the official SDK types.

For each fixture: the assembler's pieces go through the family's StreamEncoder (pieces fed one
list per upstream event, as the service does) and the same TurnResult through `body()`. Every
chunk/event/body must validate against the openai / anthropic pydantic types, the SDK's own
stream accumulators must rebuild the non-stream answer, and usage must agree.
"""
from __future__ import annotations

import json

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from grokweb.errors import RateLimited
from gateway.translate import anthropic, openai_chat, responses
from gateway.translate.assembler import TurnAssembler
from gateway.translate.common import ToolChoice, ToolSpec
from gateway.translate.tokens import count_tokens
from grokweb.classify import UpstreamError, UpstreamKind
from gateway.tests.translate.helpers import Ids, events_of, fixture_names, load, sse_frames

STREAMS = fixture_names("chat_stream")
_RESPONSE_UNION = TypeAdapter(ResponseStreamEvent)


class _ByType:
    """Validate a Responses event against the one SDK class its `type` names (readable failures)."""

    def __init__(self) -> None:
        import typing

        members = typing.get_args(typing.get_args(ResponseStreamEvent)[0])
        self.classes = {m.model_fields["type"].annotation.__args__[0]: m for m in members}

    def validate_python(self, obj):
        cls = self.classes[obj["type"]]
        cls.model_validate(obj)
        return _RESPONSE_UNION.validate_python(obj)


RESPONSE_EVENT = _ByType()
ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)
PROMPT = 42


def stream_through(fx: dict, module, **enc_kwargs):
    tools = [ToolSpec(t["name"], t.get("description", ""), t.get("parameters", {})) for t in fx.get("tools", [])]
    choice = ToolChoice(**fx["tool_choice"]) if "tool_choice" in fx else None
    asm = TurnAssembler(tools=tools, tool_choice=choice, ids=Ids(), **fx.get("options", {}))
    enc = module.StreamEncoder(model="grok-4.20-auto", prompt_tokens=PROMPT, ids=Ids(), created=1700000000,
                               **enc_kwargs)
    out = b""
    for event in events_of(fx):
        out += enc.feed(asm.feed(event))
    out += enc.feed(asm.finish())
    out += enc.finish(asm.result)
    return asm.result, out


def expected_completion(result) -> int:
    n = count_tokens(result.text) + count_tokens(result.reasoning)
    if result.tool_calls:
        n += count_tokens(orjson.dumps([c.as_openai() for c in result.tool_calls]).decode())
    return n


# --------------------------------------------------------------------------- chat completions


@pytest.mark.parametrize("name", STREAMS)
def test_chat_chunks_validate_and_accumulate_to_the_non_stream_body(name):
    fx = load(name)
    result, raw = stream_through(fx, openai_chat, include_usage=True)
    frames = sse_frames(raw)
    assert frames[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in frames[:-1]]
    state = ChatCompletionStreamState()
    roles = 0
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
        assert chunk["id"].startswith("chatcmpl-") and chunk["object"] == "chat.completion.chunk"
        if chunk["choices"]:
            assert "usage" in chunk and chunk["usage"] is None
            roles += "role" in chunk["choices"][0]["delta"]
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    assert roles == 1, "role only in the first delta"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finish = chunks[-2]
    assert finish["choices"][0]["finish_reason"] == result.finish_reason
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    final = state.get_final_completion()

    body = openai_chat.body(result=result, model="grok-4.20-auto", prompt_tokens=PROMPT, ids=Ids(), created=1700000000)
    ChatCompletion.model_validate(body)
    msg = body["choices"][0]["message"]
    assert body["usage"] == usage_chunk["usage"]
    assert body["usage"]["completion_tokens"] == expected_completion(result)
    assert body["usage"]["prompt_tokens"] == PROMPT
    assert body["usage"]["total_tokens"] == PROMPT + expected_completion(result)
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == count_tokens(result.reasoning)
    fmsg = final.choices[0].message
    if result.tool_calls:
        assert msg["content"] is None and body["choices"][0]["finish_reason"] == "tool_calls"
        assert [(t.id, t.function.name, t.function.arguments) for t in fmsg.tool_calls] == [
            (t["id"], t["function"]["name"], t["function"]["arguments"]) for t in msg["tool_calls"]]
        for tc in finish_tool_chunks(chunks):
            assert tc["type"] == "function" and tc["function"]["name"] and tc["id"].startswith("call_")
    else:
        assert (fmsg.content or "") == msg["content"] == result.text
    if result.annotations:
        assert finish["choices"][0]["delta"]["annotations"] == msg["annotations"]
        assert [a.url_citation.start_index for a in fmsg.annotations] == [a["start_index"] for a in result.annotations]
    if result.search_sources:
        assert finish["search_sources"] == body["search_sources"] == result.search_sources
    streamed_reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    assert result.reasoning.startswith(streamed_reasoning)
    if streamed_reasoning or result.reasoning:
        assert msg["reasoning_content"] == result.reasoning


def finish_tool_chunks(chunks):
    return [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]


def test_chat_stream_without_include_usage_has_no_usage_key_and_ends_with_done():
    result, raw = stream_through(load("chat_stream__plain"), openai_chat)
    frames = sse_frames(raw)
    chunks = [json.loads(d) for _, d in frames[:-1]]
    assert all("usage" not in c for c in chunks)
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:4]] == ["Hi", " there,", " hope you're", " well!"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert raw.endswith(b"data: [DONE]\n\n")


def test_chat_citation_final_chunk_matches_spec_16_3():
    result, raw = stream_through(load("chat_stream__citations"), openai_chat)
    chunks = [json.loads(d) for _, d in sse_frames(raw)[:-1]]
    final = chunks[-1]
    assert final["choices"][0]["delta"]["annotations"] == [{"type": "url_citation", "url_citation": {
        "url": "https://www.python.org/downloads/", "title": "Download Python | Python.org",
        "start_index": 50, "end_index": 91}}]
    assert final["search_sources"][1] == {"url": "https://docs.python.org/3/whatsnew/",
                                          "title": "What's New in Python", "type": "web"}


def test_chat_tool_call_chunks_carry_index_id_type_name_and_whole_arguments():
    result, raw = stream_through(load("chat_stream__tool_call"), openai_chat)
    chunks = [json.loads(d) for _, d in sse_frames(raw)[:-1]]
    calls = finish_tool_chunks(chunks)
    assert [c["index"] for c in calls] == [0, 1]
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris","unit":"c"}'}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_mid_stream_error_is_one_error_frame_then_done():
    enc = openai_chat.StreamEncoder(model="m", prompt_tokens=1)
    enc.feed([__import__("gateway.translate.assembler", fromlist=["TextPiece"]).TextPiece("partial")])
    err = UpstreamError("Too many requests", kind=UpstreamKind.RATE_LIMITED, status=429, type="rate_limit_exceeded",
                        code="rate_limit_exceeded")
    frames = sse_frames(enc.error(err))
    assert frames == [(None, json.dumps({"error": {"message": "Too many requests", "type": "rate_limit_exceeded",
                                                   "param": None, "code": "rate_limit_exceeded"}},
                                        separators=(",", ":"))), (None, "[DONE]")]
    assert enc.finish(__import__("gateway.translate.assembler", fromlist=["TurnResult"]).TurnResult()) == b""


def test_chat_keepalive_is_an_sse_comment():
    assert openai_chat.StreamEncoder(model="m", prompt_tokens=1).keepalive() == b": keep-alive\n\n"


# --------------------------------------------------------------------------- responses


@pytest.mark.parametrize("name", STREAMS)
def test_responses_events_validate_in_order_with_increasing_sequence_numbers(name):
    fx = load(name)
    result, raw = stream_through(fx, responses)
    frames = sse_frames(raw)
    assert frames[-1] == (None, "[DONE]")
    events = []
    for event_name, data in frames[:-1]:
        obj = json.loads(data)
        assert event_name == obj["type"]
        events.append(obj)
        RESPONSE_EVENT.validate_python(obj)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[1]["type"] == "response.in_progress"
    assert events[-1]["type"] == "response.completed"
    check_item_grammar(events)

    state = ResponseStreamState(input_tools=[], text_format=__import__("openai").omit)
    for obj in events:
        state.handle_event(RESPONSE_EVENT.validate_python(obj))
    completed = events[-1]["response"]
    Response.model_validate(completed)
    assert completed["status"] == "completed"
    done_items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert completed["output"] == done_items and done_items
    for item in completed["output"]:
        assert item["status"] == "completed"
        prefix = {"reasoning": "rs_", "message": "msg_", "function_call": "fc_"}[item["type"]]
        assert item["id"].startswith(prefix)
    assert completed["id"].startswith("resp_")

    body = responses.body(result=result, model="grok-4.20-auto", prompt_tokens=PROMPT, ids=Ids(), created=1700000000)
    Response.model_validate(body)
    assert body["usage"] == completed["usage"]
    assert body["usage"]["output_tokens"] == expected_completion(result)
    assert body["usage"]["output_tokens_details"]["reasoning_tokens"] == count_tokens(result.reasoning)
    assert body["usage"]["total_tokens"] == PROMPT + expected_completion(result)
    streamed_text = "".join(c["text"] for i in completed["output"] if i["type"] == "message" for c in i["content"])
    assert streamed_text == result.text
    body_calls = [(i["call_id"], i["name"], i["arguments"]) for i in body["output"] if i["type"] == "function_call"]
    stream_calls = [(i["call_id"], i["name"], i["arguments"]) for i in completed["output"] if i["type"] == "function_call"]
    assert body_calls == stream_calls == [(c.id, c.name, c.arguments) for c in result.tool_calls]
    if result.annotations:
        added = [e["annotation"] for e in events if e["type"] == "response.output_text.annotation.added"]
        assert [(a["start_index"], a["end_index"]) for a in added] == [
            (a["start_index"], a["end_index"]) for a in result.annotations]


def check_item_grammar(events):
    """Each item: added → its own deltas → done, with consistent output_index/item_id."""
    open_item = None
    next_index = 0
    for e in events[2:-1]:
        t = e["type"]
        if t == "response.output_item.added":
            assert open_item is None and e["output_index"] == next_index
            open_item = e["item"]
        elif t == "response.output_item.done":
            assert open_item is not None and e["item"]["id"] == open_item["id"] and e["output_index"] == next_index
            open_item = None
            next_index += 1
        else:
            assert open_item is not None, t
            assert e["item_id"] == open_item["id"] and e["output_index"] == next_index
            if open_item["type"] == "message":
                assert t.startswith(("response.content_part", "response.output_text")) and e["content_index"] == 0
            elif open_item["type"] == "reasoning":
                assert t.startswith("response.reasoning_summary")
            else:
                assert t.startswith("response.function_call_arguments")
    assert open_item is None


def _seal(text: str) -> str:
    return "sealed:" + text[::-1]


def test_responses_reasoning_items_carry_encrypted_content_only_when_included():
    fx = load("chat_stream__reasoning")
    asked = responses.parse_request({"model": "m", "input": "hi", "include": ["reasoning.encrypted_content"]},
                                    default_stream=True, default_thinking=True)
    result, raw = stream_through(fx, responses, request=asked, seal=_seal)
    events = [json.loads(data) for _, data in sse_frames(raw)[:-1]]
    for obj in events:
        RESPONSE_EVENT.validate_python(obj)
    added = next(e["item"] for e in events if e["type"] == "response.output_item.added")
    assert added["type"] == "reasoning" and added["encrypted_content"] is None  # sealed once complete
    done = next(e["item"] for e in events if e["type"] == "response.output_item.done")
    assert result.reasoning and done["encrypted_content"] == _seal(result.reasoning)
    assert events[-1]["response"]["output"][0] == done
    body = responses.body(result=result, model="m", prompt_tokens=PROMPT, ids=Ids(), request=asked, seal=_seal)
    Response.model_validate(body)
    assert body["output"][0]["encrypted_content"] == _seal(result.reasoning)

    plain = responses.parse_request({"model": "m", "input": "hi"}, default_stream=True, default_thinking=True)
    _, raw = stream_through(fx, responses, request=plain, seal=_seal)
    assert b"encrypted_content" not in raw
    assert "encrypted_content" not in responses.body(result=result, model="m", prompt_tokens=PROMPT, request=plain,
                                                     seal=_seal)["output"][0]


def test_responses_failure_emits_response_failed_then_error_event_typed_error():
    enc = responses.StreamEncoder(model="m", prompt_tokens=3, ids=Ids())
    from gateway.translate.assembler import TextPiece

    enc.feed([TextPiece("partial")])
    err = UpstreamError("Upstream stream ended early", kind=UpstreamKind.TRUNCATED, code="upstream_truncated")
    frames = sse_frames(enc.error(err))
    objs = [json.loads(d) for _, d in frames[:-1]]
    for obj in objs:
        RESPONSE_EVENT.validate_python(obj)
    assert [o["type"] for o in objs] == ["response.failed", "error"]
    assert objs[0]["response"]["status"] == "failed"
    assert objs[0]["response"]["error"] == {"code": "server_error", "message": "Upstream stream ended early"}
    assert objs[1] == {"type": "error", "sequence_number": objs[0]["sequence_number"] + 1,
                       "code": "upstream_truncated", "message": "Upstream stream ended early", "param": None}
    assert frames[-1] == (None, "[DONE]")


def test_responses_error_before_anything_was_sent_still_starts_with_response_created():
    enc = responses.StreamEncoder(model="m", prompt_tokens=3)
    objs = [json.loads(d) for _, d in sse_frames(enc.error(RateLimited("No available accounts")))[:-1]]
    assert [o["type"] for o in objs] == ["response.created", "response.in_progress", "response.failed", "error"]
    assert [o["sequence_number"] for o in objs] == [0, 1, 2, 3]


# --------------------------------------------------------------------------- anthropic


@pytest.mark.parametrize("name", STREAMS)
def test_anthropic_events_validate_and_accumulate_to_the_non_stream_message(name):
    fx = load(name)
    result, raw = stream_through(fx, anthropic)
    frames = sse_frames(raw)
    assert all(event is not None for event, _ in frames), "every frame has an event: line"
    assert b"[DONE]" not in raw
    objs = [json.loads(d) for _, d in frames]
    for event_name, obj in zip((f[0] for f in frames), objs):
        assert event_name == obj["type"]
        if obj["type"] != "ping":  # the SDK skips ping frames before typing events
            ANTHROPIC_EVENT.validate_python(obj)
    types = [o["type"] for o in objs]
    assert types.count("message_start") == 1 and types[0] == "message_start"
    assert types[-2:] == ["message_delta", "message_stop"]
    assert objs[0]["message"]["usage"] == {"input_tokens": PROMPT, "output_tokens": 0}
    # block indexes: 0-based, consecutive, each start … stop
    starts = [o["index"] for o in objs if o["type"] == "content_block_start"]
    stops = [o["index"] for o in objs if o["type"] == "content_block_stop"]
    assert starts == stops == list(range(len(starts)))
    snapshot = None
    bufs: dict = {}
    for obj in objs:
        if obj["type"] == "ping":
            continue
        snapshot = accumulate_event(event=ANTHROPIC_EVENT.validate_python(obj), current_snapshot=snapshot, json_bufs=bufs)
    kinds = [b.type for b in snapshot.content]
    if "thinking" in kinds:
        assert kinds.index("thinking") == 0
    if result.tool_calls:
        assert snapshot.stop_reason == "tool_use"
        uses = [b for b in snapshot.content if b.type == "tool_use"]
        assert [(u.id, u.name, u.input) for u in uses] == [(c.id, c.name, json.loads(c.arguments)) for c in result.tool_calls]
        assert all(b.text for b in snapshot.content if b.type == "text"), "no empty text block before a tool call"
    else:
        assert snapshot.stop_reason == "end_turn"
        assert "".join(b.text for b in snapshot.content if b.type == "text") == result.text

    body = anthropic.body(result=result, model="grok-4.20-auto", prompt_tokens=PROMPT, ids=Ids())
    Message.model_validate(body)
    delta = objs[-2]
    assert body["usage"] == {"input_tokens": PROMPT, "output_tokens": delta["usage"]["output_tokens"]}
    assert delta["usage"]["output_tokens"] == expected_completion(result)
    assert body["stop_reason"] == snapshot.stop_reason


def test_anthropic_thinking_block_gets_a_signature_and_comes_first():
    result, raw = stream_through(load("chat_stream__reasoning"), anthropic)
    objs = [json.loads(d) for _, d in sse_frames(raw)]
    deltas = [o["delta"]["type"] for o in objs if o["type"] == "content_block_delta" and o["index"] == 0]
    assert deltas[-1] == "signature_delta" and set(deltas[:-1]) == {"thinking_delta"}
    body = anthropic.body(result=result, model="m", prompt_tokens=1)
    assert [b["type"] for b in body["content"]] == ["thinking", "text"]
    assert body["content"][0]["signature"]


def test_anthropic_tool_input_streams_as_the_full_json_never_empty():
    result, raw = stream_through(load("chat_stream__tool_call"), anthropic)
    objs = [json.loads(d) for _, d in sse_frames(raw)]
    partials = [o["delta"]["partial_json"] for o in objs if o["type"] == "content_block_delta"
                and o["delta"]["type"] == "input_json_delta"]
    assert partials == ['{"city":"Paris","unit":"c"}', '{"tz":"Europe/Paris"}']
    blocks = [o["content_block"]["type"] for o in objs if o["type"] == "content_block_start"]
    assert blocks == ["thinking", "tool_use", "tool_use"]


def test_anthropic_mid_stream_error_and_ping_frames():
    enc = anthropic.StreamEncoder(model="m", prompt_tokens=1)
    frames = sse_frames(enc.error(UpstreamError("overloaded", kind=UpstreamKind.UPSTREAM_5XX, status=503)))
    assert frames == [("error", '{"type":"error","error":{"type":"overloaded_error","message":"overloaded"}}')]
    assert sse_frames(anthropic.ping()) == [("ping", '{"type":"ping"}')]
