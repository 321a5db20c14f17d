"""Wire details clients rely on (stream openings, model lists, base-URL probes) and forced tool
choices, through the official SDKs on a live gateway + simulator."""
from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "grok-4.20-fast"
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"name": "get_time", "description": "Current time in a time zone",
        "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}


def _openai_tool(tool: dict) -> dict:
    return {"type": "function", "function": {"name": tool["name"], "description": tool["description"],
                                             "parameters": tool["input_schema"]}}


def _sse_names(env, path: str, body: dict, headers: dict) -> list[str]:
    with env.http().stream("POST", path, json=body, headers=headers) as r:
        assert r.status_code == 200
        text = r.read().decode()
    return [line[7:] for line in text.split("\n") if line.startswith("event: ")]


# --------------------------------------------------------------------------- stream openings


def test_an_anthropic_stream_begins_with_message_start_while_a_tool_call_is_buffered(env):
    env.account("basic", "toolstart")
    env.ready(FAST)
    names = _sse_names(env, "/v1/messages", {
        "model": FAST, "max_tokens": 200, "stream": True, "tools": [WEATHER],
        "messages": [{"role": "user", "content": "Weather in Paris? #sim:tool=get_weather"}],
    }, {"x-api-key": env.key, "anthropic-version": "2023-06-01"})
    assert names[0] == "message_start" and names.count("message_start") == 1
    assert "content_block_start" in names and names[-1] == "message_stop"


def test_a_responses_stream_begins_with_response_created_while_a_tool_call_is_buffered(env):
    env.account("basic", "respstart")
    env.ready(FAST)
    names = _sse_names(env, "/v1/responses", {
        "model": FAST, "stream": True, "input": "Weather in Paris? #sim:tool=get_weather",
        "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER["input_schema"]}],
    }, {"Authorization": f"Bearer {env.key}"})
    assert names[:2] == ["response.created", "response.in_progress"] and names[-1] == "response.completed"


# --------------------------------------------------------------------------- models and base URL


def test_models_answer_in_anthropic_shape_to_an_anthropic_client(env):
    env.account("basic", "anmodels")
    env.ready(FAST)
    client = env.anthropic()
    page = client.models.list(limit=2)
    assert len(page.data) == 2 and page.has_more and page.first_id == page.data[0].id
    assert page.last_id == page.data[-1].id
    everything = list(client.models.list(limit=2))  # the SDK pages on with after_id
    ids = [m.id for m in everything]
    assert FAST in ids and len(ids) == len(set(ids)) and ids[:2] == [m.id for m in page.data]
    model = client.models.retrieve(FAST)
    assert model.type == "model" and model.display_name == "Grok 4.20 Fast" and model.created_at.year >= 2026
    raw = env.http().get("/v1/models", headers={"x-api-key": env.key, "anthropic-version": "2023-06-01"}).json()
    assert set(raw) == {"data", "has_more", "first_id", "last_id"}
    assert set(raw["data"][0]) == {"type", "id", "display_name", "created_at"}


def test_models_created_is_stable_between_calls(env):
    env.account("basic", "stable")
    env.ready(FAST)
    first = {m.id: m.created for m in env.openai().models.list()}
    time.sleep(1.1)  # a listing in the next second must not carry a new time
    second = {m.id: m.created for m in env.openai().models.list()}
    assert first == second and env.openai().models.retrieve(FAST).created == first[FAST]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_base_url_answers_a_probe(env, method):
    r = env.http().request(method, "/")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    if method == "GET":
        assert r.json()["status"] == "ok"


# --------------------------------------------------------------------------- tool choice


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_required_with_a_text_answer_is_an_error_not_a_success(env, stream):
    env.account("basic", f"req{stream}")
    env.ready(FAST)
    with pytest.raises(openai.APIStatusError) as info:
        done = env.openai().chat.completions.create(
            stream=stream, model=FAST, tools=[_openai_tool(WEATHER)], tool_choice="required",
            messages=[{"role": "user", "content": "Just say hello"}])
        list(done) if stream else None
    assert info.value.status_code == 502 and info.value.body["code"] == "tool_call_missing"
    assert info.value.body["param"] == "tool_choice"


def test_a_named_tool_choice_ignores_calls_to_other_tools_and_says_so(env):
    env.account("basic", "named")
    env.ready(FAST)
    with pytest.raises(anthropic.APIStatusError) as info:
        env.anthropic().messages.create(
            stream=False, model=FAST, max_tokens=100, tools=[WEATHER, TIME],
            tool_choice={"type": "tool", "name": "get_weather"},
            messages=[{"role": "user", "content": "What time is it? #sim:tool=get_time"}])
    assert info.value.status_code == 502 and info.value.body["error"]["type"] == "api_error"
    assert "get_weather" in info.value.body["error"]["message"]


def test_a_forced_tool_choice_returns_the_call(env):
    env.account("basic", "forced")
    env.ready(FAST)
    done = env.openai().chat.completions.create(
        stream=False, model=FAST, tools=[_openai_tool(WEATHER), _openai_tool(TIME)],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "Paris? #sim:tool=get_weather"}])
    assert done.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in done.choices[0].message.tool_calls] == ["get_weather"]


def test_several_tool_calls_in_one_answer_come_back_as_several_calls(env):
    env.account("basic", "multi")
    env.ready(FAST)
    prompt = "Weather and time in Paris? #sim:tool=get_weather,get_time"
    done = env.openai().chat.completions.create(
        stream=False, model=FAST, tools=[_openai_tool(WEATHER), _openai_tool(TIME)], tool_choice="required",
        messages=[{"role": "user", "content": prompt}])
    calls = done.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"] and len({c.id for c in calls}) == 2
    assert all(isinstance(json.loads(c.function.arguments), dict) for c in calls)
    env.reset_simulator()
    with env.anthropic().messages.stream(model=FAST, max_tokens=200, tools=[WEATHER, TIME],
                                         messages=[{"role": "user", "content": prompt}]) as stream:
        final = stream.get_final_message()
    assert [b.name for b in final.content if b.type == "tool_use"] == ["get_weather", "get_time"]
    assert final.stop_reason == "tool_use"
