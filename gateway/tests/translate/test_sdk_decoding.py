"""The encoders' bytes decoded by the official SDK clients themselves (their SSE decoders, stream
helpers and error handling), served from an in-memory transport: no network, still the SDK's real
parsing path. The API tests repeat this against the live server."""
from __future__ import annotations

import anthropic as anthropic_sdk
import httpx2
import openai
import pytest

from gateway.translate import anthropic, openai_chat, responses
from gateway.translate.assembler import TextPiece
from grokweb.classify import UpstreamError, UpstreamKind
from gateway.tests.translate.test_encoders import stream_through
from gateway.tests.translate.helpers import load


def serving(body: bytes) -> httpx2.Client:
    def handler(request):
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def openai_client(body: bytes) -> openai.OpenAI:
    return openai.OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=serving(body), max_retries=0)


def anthropic_client(body: bytes) -> anthropic_sdk.Anthropic:
    return anthropic_sdk.Anthropic(api_key="k", base_url="http://gw.test", http_client=serving(body), max_retries=0)


def test_the_openai_stream_helper_rebuilds_a_tool_call_completion():
    result, raw = stream_through(load("chat_stream__tool_call"), openai_chat, include_usage=True)
    client = openai_client(raw)
    with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "x"}]) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in calls] == [(c.name, c.arguments) for c in result.tool_calls]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage.completion_tokens > 0


def test_the_openai_client_raises_on_a_mid_stream_error_frame():
    enc = openai_chat.StreamEncoder(model="m", prompt_tokens=1)
    raw = enc.feed([TextPiece("partial")]) + enc.error(
        UpstreamError("Upstream stream ended early", kind=UpstreamKind.TRUNCATED, code="upstream_truncated"))
    stream = openai_client(raw).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                                        stream=True)
    with pytest.raises(openai.APIError, match="Upstream stream ended early"):
        for _ in stream:
            pass


def test_the_openai_responses_stream_helper_returns_the_final_response():
    result, raw = stream_through(load("chat_stream__citations"), responses)
    with openai_client(raw).responses.stream(model="m", input="x") as stream:
        events = [e.type for e in stream]
        final = stream.get_final_response()
    assert events[0] == "response.created" and events[-1] == "response.completed"
    assert final.output_text == result.text
    assert final.usage.output_tokens_details.reasoning_tokens > 0
    assert [o.type for o in final.output] == ["reasoning", "message"]


def test_the_anthropic_stream_helper_returns_the_final_message_with_thinking_and_tool_use():
    result, raw = stream_through(load("chat_stream__tool_call"), anthropic)
    with anthropic_client(raw).messages.stream(model="m", max_tokens=10,
                                               messages=[{"role": "user", "content": "x"}]) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use", "tool_use"]
    assert final.content[0].signature
    assert final.content[1].input == {"city": "Paris", "unit": "c"}
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens > 0


def test_the_anthropic_client_raises_on_a_mid_stream_error_event():
    enc = anthropic.StreamEncoder(model="m", prompt_tokens=1)
    raw = enc.feed([TextPiece("partial")]) + enc.error(
        UpstreamError("Too many requests", kind=UpstreamKind.RATE_LIMITED, status=429))
    with pytest.raises(anthropic_sdk.APIStatusError, match="rate_limit_error"):
        with anthropic_client(raw).messages.stream(model="m", max_tokens=10,
                                                   messages=[{"role": "user", "content": "x"}]) as stream:
            for _ in stream:
                pass
