"""POST /v1/messages and /v1/messages/count_tokens with the official `anthropic` SDK."""
from __future__ import annotations

import json

import anthropic
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "grok-4.20-fast"
EXPERT = "grok-4.20-expert"

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _raw_events(env, body: dict, **headers) -> list[tuple[str, dict]]:
    with env.http().stream("POST", "/v1/messages", json={**body, "stream": True},
                           headers={"x-api-key": env.key, "anthropic-version": "2023-06-01", **headers}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    assert "[DONE]" not in text
    out = []
    for frame in text.split("\n\n"):
        lines = [ln for ln in frame.split("\n") if ln]
        if not lines:
            continue
        name = lines[0][7:]
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ")
        data = json.loads(lines[1][6:])
        assert data["type"] == name
        out.append((name, data))
    return out


def _check_order(events: list[tuple[str, dict]]) -> None:
    names = [n for n, _ in events if n != "ping"]
    assert names[0] == "message_start" and names.count("message_start") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
    open_index = None
    next_index = 0
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index, next_index = None, next_index + 1
    assert open_index is None


def test_messages_create_returns_text_and_usage(env):
    env.account("basic", "a")
    env.ready(FAST)
    msg = env.anthropic().messages.create(stream=False, model=FAST, max_tokens=256, system="Be brief.",
                                          messages=[{"role": "user", "content": "Tell me about trains"}])
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant" and msg.model == FAST
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 4 and msg.usage.output_tokens > 0


def test_a_message_without_stream_gets_json_even_with_features_stream_on(env):
    env.set_config({"features.stream": True})  # as a reference config.toml imports it
    env.account("basic", "nostream")
    env.ready(FAST)  # saved before the account: the server's poller has seen both
    r = env.http().post("/v1/messages", headers={"x-api-key": env.key, "anthropic-version": "2023-06-01"},
                        json={"model": FAST, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json()["type"] == "message"
    message = env.anthropic().messages.create(model=FAST, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert message.type == "message" and message.content[0].text


def test_messages_stream_helper_and_raw_event_order(env):
    env.account("basic", "as")
    env.ready(FAST)
    body = {"model": FAST, "max_tokens": 256, "messages": [{"role": "user", "content": "Gardens #sim:len=25"}]}
    with env.anthropic().messages.stream(**body) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == text and final.stop_reason == "end_turn"

    events = _raw_events(env, body)
    _check_order(events)
    start = events[0][1]["message"]
    delta = next(d for n, d in events if n == "message_delta")
    assert start["usage"]["input_tokens"] == final.usage.input_tokens
    assert delta["usage"]["output_tokens"] == final.usage.output_tokens
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["delta"]["stop_sequence"] is None

    env.reset_simulator()
    whole = env.anthropic().messages.create(stream=False, **body)
    assert whole.content[0].text == text and whole.usage.output_tokens == final.usage.output_tokens


def test_messages_thinking_shown_and_hidden(env):
    env.account("super", "at")
    env.ready(EXPERT)
    client = env.anthropic()
    prompt = [{"role": "user", "content": "Think about lanterns"}]
    with client.messages.stream(model=EXPERT, max_tokens=512, messages=prompt,
                                thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        shown = stream.get_final_message()
    assert [b.type for b in shown.content] == ["thinking", "text"]
    assert shown.content[0].thinking and shown.content[0].signature

    env.reset_simulator()
    hidden = client.messages.create(stream=False, model=EXPERT, max_tokens=512, messages=prompt, thinking={"type": "disabled"})
    assert [b.type for b in hidden.content] == ["text"]
    assert hidden.content[0].text == shown.content[1].text


@pytest.mark.parametrize("stream", [False, True])
def test_messages_tool_round_trip(env, stream):
    env.account("basic", f"atool{int(stream)}")
    env.ready(FAST)
    client = env.anthropic()
    ask = {"role": "user", "content": "Weather in Rome? #sim:tool=get_weather"}
    if stream:
        events = _raw_events(env, {"model": FAST, "max_tokens": 256, "messages": [ask], "tools": [WEATHER]})
        _check_order(events)
        starts = [d["content_block"] for n, d in events if n == "content_block_start"]
        assert starts[-1]["type"] == "tool_use"
        for n, d in events:  # no empty text block before the tool call
            if n == "content_block_start" and d["content_block"]["type"] == "text":
                text = "".join(x["delta"].get("text", "") for m, x in events
                               if m == "content_block_delta" and x["index"] == d["index"])
                assert text.strip()
        partial = "".join(d["delta"]["partial_json"] for n, d in events
                          if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
        assert json.loads(partial)["city"]
        assert next(d for n, d in events if n == "message_delta")["delta"]["stop_reason"] == "tool_use"
        with client.messages.stream(model=FAST, max_tokens=256, messages=[ask], tools=[WEATHER]) as s:
            msg = s.get_final_message()
    else:
        msg = client.messages.create(stream=False, model=FAST, max_tokens=256, messages=[ask], tools=[WEATHER])
    assert msg.stop_reason == "tool_use"
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input["city"], str) and use.id
    # no empty text block before the tool call
    assert all(b.type != "text" or b.text.strip() for b in msg.content)

    follow = client.messages.create(stream=False, model=FAST, max_tokens=256, tools=[WEATHER], messages=[
        ask,
        {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C, sunny"}]},
    ])
    assert follow.stop_reason == "end_turn" and follow.content[0].type == "text" and follow.content[0].text


def test_count_tokens_matches_the_message_usage(env):
    env.account("basic", "ac")
    env.ready(FAST)
    client = env.anthropic()
    messages = [{"role": "user", "content": "How many tokens is this?"}]
    counted = client.messages.count_tokens(model=FAST, messages=messages, system="Be brief.")
    msg = client.messages.create(stream=False, model=FAST, max_tokens=64, messages=messages, system="Be brief.")
    assert counted.input_tokens == msg.usage.input_tokens > 0


def test_bearer_auth_and_anthropic_version_are_accepted(env):
    env.account("basic", "ab")
    env.ready(FAST)
    r = env.http().post("/v1/messages", headers={"Authorization": f"Bearer {env.key}", "anthropic-version": "2023-06-01"},
                        json={"model": FAST, "max_tokens": 32, "stream": False, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.json()["type"] == "message"


def test_messages_mid_stream_failure_is_an_error_event(env):
    env.account("basic", "adrop", "drop@3")
    env.ready(FAST)
    events = _raw_events(env, {"model": FAST, "max_tokens": 64, "messages": [{"role": "user", "content": "hi #sim:len=20"}]})
    name, data = events[-1]
    assert name == "error" and data["error"]["type"] in ("api_error", "overloaded_error", "rate_limit_error")
    assert data["error"]["message"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}, "model"),
        ({"model": FAST, "max_tokens": 10}, "messages"),
        ({"model": FAST, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"model": FAST, "max_tokens": "ten", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"model": FAST, "max_tokens": 10, "messages": "hi"}, "messages"),
        ({"model": FAST, "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_missing", "content": "x"}]}]}, "tool_use"),
        ({"model": FAST, "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "hologram", "data": "x"}]}]}, "hologram"),
    ],
)
def test_messages_bad_input_is_a_400_in_anthropic_envelope(env, body, needle):
    # one request id for both requests: it is part of every error message
    r = env.http().post("/v1/messages", json=body, headers={"x-api-key": env.key, "anthropic-version": "2023-06-01",
                                                            "x-request-id": "bad-input"})
    assert r.status_code == 400
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert needle in err["error"]["message"]
    if {"model", "messages", "max_tokens"} <= set(body):  # the SDK itself insists on these three
        with pytest.raises(anthropic.BadRequestError) as info:
            env.anthropic().messages.create(stream=False, **body, extra_headers={"x-request-id": "bad-input"})
        assert info.value.body == err


def test_messages_errors_raise_the_sdk_typed_exceptions(env):
    client = env.anthropic()
    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(stream=False, model="claude-opus-4", max_tokens=10, messages=hi)
    assert info.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.AuthenticationError) as info:
        env.anthropic(api_key="wrong").messages.create(stream=False, model=FAST, max_tokens=10, messages=hi)
    assert info.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.RateLimitError):  # no account at all
        client.messages.create(stream=False, model=FAST, max_tokens=10, messages=hi)
    r = env.http().post("/v1/messages", content=b"{oops", headers={"x-api-key": env.key})
    assert r.status_code == 400 and r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    r = env.http().post("/v1/messages/count_tokens", json={"model": "nope", "messages": hi}, headers={"x-api-key": env.key})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_messages_permission_and_size_errors(env):
    from django.conf import settings

    env.own_key(allowed_models=["grok-4.20-0309-non-reasoning"])
    client = env.anthropic()
    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        client.messages.create(stream=False, model=FAST, max_tokens=10, messages=hi)
    assert info.value.body["error"]["type"] == "permission_error"
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(stream=False, model=FAST, max_tokens=10,
                               messages=[{"role": "user", "content": "x" * (settings.MAX_BODY_BYTES + 1)}])
    assert info.value.status_code == 413 and info.value.body["error"]["type"] == "request_too_large"


def test_messages_streams_send_ping_events_during_long_gaps(env):
    env.set_config({"chat.keepalive_interval": 0.2})
    env.account("basic", "aping", "stall@2=1500")
    env.ready(FAST)
    events = _raw_events(env, {"model": FAST, "max_tokens": 64, "messages": [{"role": "user", "content": "hi #sim:len=6"}]})
    assert "ping" in [n for n, _ in events]
    _check_order(events)
    with env.anthropic().messages.stream(model=FAST, max_tokens=64, messages=[{"role": "user", "content": "hi #sim:len=6"}]) as s:
        assert s.get_final_message().stop_reason == "end_turn"
