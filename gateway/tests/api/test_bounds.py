"""Bounded inputs end to end (issue 16 §5): values that used to escape as 500s are 400s in the family's
envelope naming the field — the official SDKs and raw httpx against a live `serve` process."""
from __future__ import annotations

import anthropic
import openai
import pytest

from gateway.jsonbody import MAX_JSON_DEPTH

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "grok-4.20-fast"
DEEP = 300  # past orjson's 255-level write limit, which is where the old 500 came from


def deep(levels: int):
    value: dict = {"type": "string"}
    for _ in range(levels):
        value = {"type": "object", "properties": {"x": value}}
    return value


def deep_array_text(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_it_rejects_a_chat_tool_schema_nested_too_deeply_naming_the_tool(env):
    with pytest.raises(openai.BadRequestError) as info:
        env.openai().chat.completions.create(
            model=FAST, messages=[{"role": "user", "content": "hi"}], stream=False,
            tools=[{"type": "function", "function": {"name": "f", "parameters": deep(DEEP)}}],
        )
    err = info.value.body
    assert info.value.status_code == 400 and err["code"] == "json_too_deep"
    assert err["param"] == "tools[0].function.parameters" and str(MAX_JSON_DEPTH) in err["message"]


def test_it_rejects_chat_tool_arguments_nested_too_deeply_naming_them(env):
    with pytest.raises(openai.BadRequestError) as info:
        env.openai().chat.completions.create(
            model=FAST, stream=False,
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": deep_array_text(DEEP)}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            ],
        )
    assert info.value.status_code == 400
    assert info.value.body["param"] == "messages[1].tool_calls[0].function.arguments"


def test_it_rejects_responses_tools_and_arguments_nested_too_deeply(env):
    client = env.openai()
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=FAST, input="hi", stream=False,
                                tools=[{"type": "function", "name": "f", "parameters": deep(DEEP)}])
    assert info.value.status_code == 400 and info.value.body["param"] == "tools[0].parameters.properties"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=FAST, stream=False, input=[
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": deep_array_text(DEEP)},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        ])
    assert info.value.status_code == 400 and info.value.body["param"] == "input[0].arguments"


def test_it_rejects_anthropic_schemas_and_tool_inputs_nested_too_deeply(env):
    client = env.anthropic()
    tool = {"name": "f", "description": "d", "input_schema": deep(DEEP)}
    for call in (
        lambda: client.messages.create(model=FAST, max_tokens=16, tools=[tool], messages=[{"role": "user", "content": "hi"}]),
        lambda: client.messages.count_tokens(model=FAST, tools=[tool], messages=[{"role": "user", "content": "hi"}]),
    ):
        with pytest.raises(anthropic.BadRequestError) as info:
            call()
        body = info.value.body
        assert info.value.status_code == 400 and body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error" and "'tools[0].input_schema.properties'" in body["error"]["message"]
    nested: list = []
    for _ in range(DEEP):
        nested = [nested]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=FAST, max_tokens=16, messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": nested}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        ])
    assert "'messages[1].content[0]'" in info.value.body["error"]["message"]


def test_a_schema_at_the_depth_limit_is_accepted(env):
    env.account("basic", "depth")
    env.ready(FAST)
    # the body, tools, tools[0], function, parameters = 4 levels above the schema's own nesting
    schema = deep((MAX_JSON_DEPTH - 5) // 2)
    out = env.openai().chat.completions.create(
        model=FAST, messages=[{"role": "user", "content": "hi"}], stream=False,
        tools=[{"type": "function", "function": {"name": "f", "parameters": schema}}],
    )
    assert out.choices[0].message.content


@pytest.mark.parametrize("value", ["²", "9" * 5000, "١٢", "1e3", " 12x"])
def test_it_rejects_media_integers_that_are_not_plain_ascii_numbers_naming_the_field(env, value):
    with env.http() as http:
        headers = {"Authorization": f"Bearer {env.key}"}
        r = http.post("/v1/images/generations", headers=headers,
                      json={"model": "grok-imagine-image", "prompt": "a cat", "n": value})
        assert r.status_code == 400 and r.json()["error"]["param"] == "n", r.text
        r = http.post("/v1/videos", headers=headers, data={"model": "grok-imagine-video", "prompt": "waves", "seconds": value},
                      files={"unused": ("x.txt", b"x")})
        assert r.status_code == 400 and r.json()["error"]["param"] == "seconds", r.text
        r = http.post("/v1/chat/completions", headers=headers, json={
            "model": "grok-imagine-image", "messages": [{"role": "user", "content": "a cat"}], "image_config": {"n": value}})
        assert r.status_code == 400 and r.json()["error"]["param"] == "image_config.n", r.text
