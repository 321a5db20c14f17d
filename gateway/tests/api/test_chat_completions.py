"""POST /v1/chat/completions and /v1/models with the official `openai` SDK against `serve` and the simulator."""
from __future__ import annotations

import json

import httpx
import openai
import pytest

from .conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "grok-4.20-fast"
EXPERT = "grok-4.20-expert"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# --------------------------------------------------------------------------- models


def test_models_lists_what_accounts_can_serve_in_openai_shape(env):
    env.account("basic", "m")
    env.ready(FAST)
    client = env.openai()
    ids = [m.id for m in client.models.list().data]
    assert FAST in ids and "grok-4.20-0309-non-reasoning" in ids
    # a basic account supports only `fast`: expert/heavy models are not offered
    assert EXPERT not in ids and "grok-4.20-heavy" not in ids
    raw = env.http().get("/v1/models", headers={"Authorization": f"Bearer {env.key}"}).json()
    entry = next(m for m in raw["data"] if m["id"] == FAST)
    assert raw["object"] == "list"
    assert entry["object"] == "model" and entry["owned_by"] == "xai" and entry["name"] == "Grok 4.20 Fast"
    assert entry["capability"] == "chat" and entry["mode"] == "fast" and entry["pools"] == ["heavy", "super", "basic"]


def test_model_retrieve_answers_for_registry_ids_and_404s_others(env):
    client = env.openai()
    assert client.models.retrieve("grok-imagine-video").id == "grok-imagine-video"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-4o")
    assert info.value.body["code"] == "model_not_found"


# --------------------------------------------------------------------------- chat: plain


def test_chat_create_non_streamed_returns_answer_and_usage(env):
    token = env.account("basic", "plain")
    env.ready(FAST)
    done = env.openai().chat.completions.create(
        model=FAST, messages=[{"role": "user", "content": "Say something short"}], stream=False
    )
    choice = done.choices[0]
    assert done.object == "chat.completion" and done.id.startswith("chatcmpl-") and done.model == FAST
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert choice.message.content and len(choice.message.content) > 10
    u = done.usage
    assert u.prompt_tokens > 4 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    # the simulator got exactly one chat request, from this account, with our prompt inside
    calls = env.chat_requests(token)
    assert len(calls) == 1 and "Say something short" in calls[0]["body"]["message"]


def test_chat_stream_and_non_stream_agree_on_text_and_usage(env):
    env.account("basic", "agree")
    env.ready(FAST)
    client = env.openai()
    messages = [{"role": "user", "content": "Tell me about rivers #sim:len=30"}]
    whole = client.chat.completions.create(stream=False, model=FAST, messages=messages)
    env.reset_simulator()
    chunks = list(client.chat.completions.create(
        model=FAST, messages=messages, stream=True, stream_options={"include_usage": True}
    ))
    # role only on the first delta, a finish chunk, then the usage chunk with empty choices
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert len({c.id for c in chunks}) == 1


def test_stream_helper_get_final_completion(env):
    env.account("basic", "helper")
    env.ready(FAST)
    with env.openai().chat.completions.stream(
        model=FAST, messages=[{"role": "user", "content": "Hello there"}]
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == final.choices[0].message.content
    assert final.choices[0].finish_reason == "stop"


def test_raw_stream_is_sse_with_done_last_and_no_cache_headers(env):
    env.account("basic", "raw")
    env.ready(FAST)
    with env.http().stream(
        "POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {env.key}"},
        json={"model": FAST, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        body = r.read().decode()
    frames = [f for f in body.split("\n\n") if f.strip()]
    assert frames[-1] == "data: [DONE]"
    assert all(f.startswith("data: ") for f in frames)
    json.loads(frames[0][6:])  # each frame is one JSON object


def test_a_request_without_stream_gets_json_even_with_features_stream_on(env):
    # A reference config.toml imports features.stream = true; the SDKs omit "stream" on their
    # non-streaming calls and could not parse an event stream.
    env.set_config({"features.stream": True})
    env.account("basic", "dflt")
    env.ready(FAST)  # the config was saved before the account: the poller has seen both
    r = env.http().post("/v1/chat/completions", headers={"Authorization": f"Bearer {env.key}"},
                        json={"model": FAST, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json()["object"] == "chat.completion"
    completion = env.openai().chat.completions.create(model=FAST, messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == r.json()["choices"][0]["message"]["content"]


# --------------------------------------------------------------------------- reasoning, search


def test_reasoning_is_shown_by_default_and_hidden_with_effort_none(env):
    env.account("super", "think")
    env.ready(EXPERT)
    client = env.openai()
    prompt = [{"role": "user", "content": "Think about gardens"}]
    shown = client.chat.completions.create(stream=False, model=EXPERT, messages=prompt)
    reasoning = shown.choices[0].message.model_extra.get("reasoning_content")
    assert reasoning
    assert shown.usage.completion_tokens_details.reasoning_tokens > 0

    env.reset_simulator()
    hidden = client.chat.completions.create(stream=False, model=EXPERT, messages=prompt, reasoning_effort="none")
    assert not hidden.choices[0].message.model_extra.get("reasoning_content")
    assert hidden.choices[0].message.content == shown.choices[0].message.content

    env.reset_simulator()
    streamed = list(client.chat.completions.create(model=EXPERT, messages=prompt, stream=True))
    stream_reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in streamed)
    assert stream_reasoning == reasoning
    first_content = next(i for i, c in enumerate(streamed) if c.choices[0].delta.content)
    first_reasoning = next(i for i, c in enumerate(streamed) if (c.choices[0].delta.model_extra or {}).get("reasoning_content"))
    assert first_reasoning < first_content


def test_citations_and_search_sources(env):
    env.account("basic", "search")
    env.ready(FAST)
    client = env.openai()
    messages = [{"role": "user", "content": "What happened today? #sim:search"}]
    done = client.chat.completions.create(stream=False, model=FAST, messages=messages)
    extra = done.model_extra
    assert extra["search_sources"] and all(s["url"].startswith("http") for s in extra["search_sources"])
    annotations = done.choices[0].message.annotations
    assert annotations and annotations[0].type == "url_citation"
    text = done.choices[0].message.content
    assert "<grok:render" not in text
    a = annotations[0].url_citation
    assert 0 <= a.start_index < a.end_index <= len(text)

    env.reset_simulator()
    chunks = list(client.chat.completions.create(model=FAST, messages=messages, stream=True))
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert last.model_extra["search_sources"] == extra["search_sources"]
    assert last.choices[0].delta.model_extra["annotations"][0]["type"] == "url_citation"


# --------------------------------------------------------------------------- tools


def _tool_round_trip(client, *, stream: bool):
    messages = [{"role": "user", "content": "Weather in Paris? #sim:tool=get_weather"}]
    if stream:
        chunks = list(client.chat.completions.create(model=FAST, messages=messages, tools=[WEATHER_TOOL], stream=True))
        deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        assert deltas, "no tool call was streamed"
        first = deltas[0]
        assert first.index == 0 and first.id and first.type == "function" and first.function.name == "get_weather"
        args = "".join(d.function.arguments or "" for d in deltas if d.index == 0)
        call_id, name = first.id, first.function.name
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    else:
        done = client.chat.completions.create(stream=False, model=FAST, messages=messages, tools=[WEATHER_TOOL])
        msg = done.choices[0].message
        assert done.choices[0].finish_reason == "tool_calls" and msg.content is None
        call = msg.tool_calls[0]
        call_id, name, args = call.id, call.function.name, call.function.arguments
        assert call.type == "function"
    assert name == "get_weather" and isinstance(json.loads(args)["city"], str)

    messages += [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"temp_c": 21, "sky": "clear"}'},
    ]
    answer = client.chat.completions.create(stream=False, model=FAST, messages=messages, tools=[WEATHER_TOOL])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    assert not answer.choices[0].message.tool_calls
    return call_id


def test_tool_round_trip_non_streamed(env):
    token = env.account("basic", "toolns")
    env.ready(FAST)
    _tool_round_trip(env.openai(), stream=False)
    # the tool result went upstream in the flattened history of the second call
    assert "temp_c" in env.chat_requests(token)[-1]["body"]["message"]


def test_tool_round_trip_streamed(env):
    env.account("basic", "tools")
    env.ready(FAST)
    _tool_round_trip(env.openai(), stream=True)


# --------------------------------------------------------------------------- bad input


def _bad(client, **kw):
    base = {"model": FAST, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    base.update(kw)
    return client.chat.completions.create(**base)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": -0.5}, "top_p"),
        ({"messages": "hello"}, "messages"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_bad_chat_input_is_a_400_naming_the_parameter(env, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        _bad(env.openai(), **kwargs)
    err = info.value.body
    assert info.value.status_code == 400 and err["type"] == "invalid_request_error" and err["param"] == param
    assert err["message"]


def test_missing_model_and_missing_messages_are_400(env):
    http = env.http()
    for body, param in (({"messages": [{"role": "user", "content": "x"}]}, "model"), ({"model": FAST}, "messages")):
        r = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {env.key}"}, json=body)
        assert r.status_code == 400
        assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"


def test_invalid_json_is_a_400_in_openai_envelope(env):
    r = env.http().post("/v1/chat/completions", content=b'{"model": "grok', headers={
        "Authorization": f"Bearer {env.key}", "Content-Type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] is None and err["code"] == "invalid_json"


def test_unknown_model_is_404_model_not_found(env):
    with pytest.raises(openai.NotFoundError) as info:
        _bad(env.openai(), model="gpt-5-turbo")
    assert info.value.body["code"] == "model_not_found" and info.value.body["param"] == "model"


def test_missing_or_wrong_key_is_401_in_openai_envelope(env):
    with pytest.raises(openai.AuthenticationError) as info:
        _bad(env.openai(api_key="sk-wrong"))
    assert info.value.body["code"] == "invalid_api_key"
    r = env.http().post("/v1/chat/completions", json={"model": FAST, "messages": []})
    assert r.status_code == 401 and set(r.json()) == {"error"} and "detail" not in r.text
    r = env.http().get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_a_key_limited_to_other_models_gets_403(env):
    env.own_key(allowed_models=["grok-4.20-0309-non-reasoning"])
    env.account("basic", "perm")
    env.ready("grok-4.20-0309-non-reasoning")
    with pytest.raises(openai.PermissionDeniedError) as info:
        _bad(env.openai())
    assert info.value.status_code == 403 and info.value.body["param"] == "model"
    assert [m.id for m in env.openai().models.list().data] == ["grok-4.20-0309-non-reasoning"]


def test_body_over_the_limit_is_413(env):
    from django.conf import settings

    huge = "x" * (settings.MAX_BODY_BYTES + 10)
    with pytest.raises(openai.APIStatusError) as info:
        _bad(env.openai(), messages=[{"role": "user", "content": huge}])
    assert info.value.status_code == 413 and info.value.body["code"] == "request_too_large"


def test_no_account_for_the_model_is_429(env):
    env.account("basic", "only")  # basic accounts cannot serve expert
    env.ready(FAST)
    with pytest.raises(openai.RateLimitError) as info:
        _bad(env.openai(), model=EXPERT)
    assert info.value.body["type"] == "rate_limit_exceeded"


# --------------------------------------------------------------------------- failures and retries


def test_a_rate_limited_account_is_retried_on_another_before_the_first_byte(env):
    # heavy is tried before basic for grok-4.20-fast, so the rate-limited account goes first
    env.account("heavy", "rl", "rl")
    healthy = env.account("basic", "ok")
    env.ready(FAST)
    chunks = list(env.openai().chat.completions.create(
        model=FAST, stream=True, messages=[{"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # the simulator refuses `~rl` before it logs the token: one refused call, then one served call
    calls = env.chat_requests()
    assert [c["status"] for c in calls] == [429, 200] and calls[1]["token"] == healthy
    row = wait_until(lambda: env.usage_rows(model=FAST, stream=True), what="usage row")[0]
    assert row.attempts == 2 and row.status == "ok"


def test_a_failure_after_the_first_byte_becomes_an_error_event_and_is_not_retried(env):
    dropping = env.account("heavy", "drop", "drop@3")
    other = env.account("basic", "spare")
    env.ready(FAST)
    with env.http().stream(
        "POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {env.key}"},
        json={"model": FAST, "stream": True, "messages": [{"role": "user", "content": "hi #sim:len=20"}]},
    ) as r:
        assert r.status_code == 200
        frames = [f for f in r.read().decode().split("\n\n") if f.strip()]
    assert frames[-1] == "data: [DONE]"
    error = json.loads(frames[-2][6:])["error"]
    assert error["type"] and error["message"]
    content = [json.loads(f[6:]) for f in frames[:-2]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in content)  # text came before the error
    assert len(env.chat_requests(dropping)) == 1 and env.chat_requests(other) == []
    # the SDK surfaces the in-band error as an exception
    with pytest.raises(openai.APIError):
        list(env.openai().chat.completions.create(
            model=FAST, stream=True, messages=[{"role": "user", "content": "again #sim:len=20"}]))


def test_a_failed_non_streamed_request_is_retried_even_after_text(env):
    dropping = env.account("heavy", "dropns", "drop@3")
    other = env.account("basic", "sparens")
    env.ready(FAST)
    done = env.openai().chat.completions.create(stream=False, model=FAST, messages=[{"role": "user", "content": "hi #sim:len=20"}])
    assert done.choices[0].message.content
    assert len(env.chat_requests(dropping)) == 1 and len(env.chat_requests(other)) == 1


def test_a_client_disconnect_mid_stream_closes_the_upstream_request(env):
    env.account("super", "slow", "tokms=50")
    env.ready(FAST)
    with env.http().stream(
        "POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {env.key}"},
        json={"model": FAST, "stream": True, "messages": [{"role": "user", "content": "long #sim:len=400"}]},
    ) as r:
        it = r.iter_raw()
        next(it)
        next(it)
        assert env.open_streams() == 1
    # the simulator sees its stream closed long before the 20 s the answer would take
    wait_until(lambda: env.open_streams() == 0, timeout=5, what="upstream stream to close")
    row = wait_until(lambda: env.usage_rows(model=FAST), what="usage row")[0]
    assert row.status == "cancelled"


def test_a_client_gone_before_a_whole_answer_closes_the_upstream_request(env):
    """Django's handler cancels the view when the client goes away (grok2api/asgi.py keeps that)."""
    slow = env.account("super", "slow", "tokms=50")
    env.ready(FAST)
    with pytest.raises(httpx.ReadTimeout):
        env.http().post("/v1/chat/completions", headers={"Authorization": f"Bearer {env.key}"}, timeout=1.0,
                        json={"model": FAST, "stream": False, "messages": [{"role": "user", "content": "long #sim:len=400"}]})
    assert len(env.chat_requests(slow)) == 1
    # the answer would take 20 s; the simulator sees its stream closed soon after the client left
    wait_until(lambda: env.open_streams() == 0, timeout=5, what="upstream stream to close")
    row = wait_until(lambda: env.usage_rows(model=FAST), what="usage row")[0]
    assert row.status == "cancelled"


def test_keepalive_comments_are_sent_during_long_gaps(env):
    env.set_config({"chat.keepalive_interval": 0.2})  # reloaded by the server in the same poll as the account
    env.account("basic", "stall", "stall@2=1500")
    env.ready(FAST)
    with env.http().stream(
        "POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {env.key}"},
        json={"model": FAST, "stream": True, "messages": [{"role": "user", "content": "hi #sim:len=6"}]},
    ) as r:
        body = r.read().decode()
    assert ": keep-alive\n\n" in body
    assert body.rstrip().endswith("data: [DONE]")


# --------------------------------------------------------------------------- ledger


def test_each_request_leaves_one_usage_record(env):
    env.own_key()
    token = env.account("basic", "ledger")
    env.ready(FAST)
    done = env.openai().chat.completions.create(stream=False, model=FAST, messages=[{"role": "user", "content": "count me"}])
    row = wait_until(lambda: env.usage_rows(model=FAST), what="usage row")[0]
    assert row.api_key_id == env.key_row.id and row.endpoint == "chat.completions" and row.mode == "fast"
    assert row.prompt_tokens == done.usage.prompt_tokens and row.completion_tokens == done.usage.completion_tokens
    assert row.status == "ok" and row.stream is False and row.account.token_last4 == token[-4:]
    assert row.ttft_ms is not None and row.duration_ms >= row.ttft_ms


# --------------------------------------------------------------------------- attachments


def _png(width: int = 4, height: int = 4) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_images_are_uploaded_with_the_account_and_urls_fetched_without_credentials(env):
    import base64

    env.set_config({"security.fetch_allowlist": ["localhost", "127.0.0.1"]})
    token = env.account("basic", "img")
    env.ready(FAST)
    data_uri = "data:image/png;base64," + base64.b64encode(_png()).decode()
    foreign = env.simulator.foreign_url.rstrip("/") + "/__ext/img/cat.png"
    done = env.openai().chat.completions.create(stream=False, model=FAST, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image_url", "image_url": {"url": data_uri}},
        {"type": "image_url", "image_url": {"url": foreign}},
    ]}])
    assert done.choices[0].message.content
    uploads = env.sim.requests(endpoint="upload")
    assert len(uploads) == 2 and {u["token"] for u in uploads} == {token}
    chat = env.chat_requests(token)[0]["body"]
    assert len(chat["fileAttachments"]) == 2
    fetched = [e for e in env.sim.requests() if e["path"].startswith("/__ext/")]
    assert len(fetched) == 1
    assert not fetched[0]["cookie"] and not fetched[0]["statsig"] and not fetched[0]["request_id"]


def test_an_image_url_on_a_private_address_is_refused_naming_the_part(env):
    env.account("basic", "ssrf")
    env.ready(FAST)
    with pytest.raises(openai.BadRequestError) as info:
        env.openai().chat.completions.create(stream=False, model=FAST, messages=[{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": env.simulator.url + "/__ext/img/cat.png"}},
        ]}])
    assert info.value.body["param"] and info.value.body["param"].startswith("messages[0].content[1]")
    assert env.chat_requests() == []  # refused before any account was used


def test_an_anti_bot_rejection_is_a_502_with_its_code_and_never_swaps_accounts(env):
    env.account("heavy", "bot", "antibot")
    spare = env.account("basic", "nobot")
    env.ready(FAST)
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as info:
            result = env.openai().chat.completions.create(
                stream=stream, model=FAST, messages=[{"role": "user", "content": "hi"}])
            list(result) if stream else None
        assert info.value.status_code == 502 and info.value.body["code"] == "upstream_anti_bot"
    assert env.chat_requests(spare) == []


@pytest.mark.parametrize("fmt", ["grok_url", "local_url"])
def test_images_drawn_in_a_chat_answer_follow_features_image_format(env, fmt):
    env.set_config({"features.image_format": fmt})
    env.account("basic", f"draw{fmt}")
    env.ready(FAST)
    done = env.openai().chat.completions.create(
        stream=False, model=FAST, messages=[{"role": "user", "content": "Draw a lighthouse #sim:image"}])
    text = done.choices[0].message.content
    if fmt == "grok_url":
        assert env.simulator.url in text  # the upstream assets URL, as-is
    else:
        assert "/v1/files/image?id=" in text and env.simulator.url not in text
        link = text[text.index("/v1/files/image?id="):].split()[0].rstrip(")")
        r = env.http().get(link)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/") and len(r.content) > 20
