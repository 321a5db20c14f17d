"""POST /v1/responses with the official `openai` SDK against `serve` and the simulator."""
from __future__ import annotations

import json

import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "grok-4.20-fast"
EXPERT = "grok-4.20-expert"
EVENT = TypeAdapter(ResponseStreamEvent)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _raw_events(env, body: dict) -> list[dict]:
    """POST a streamed request and return every SSE event's JSON, checking the framing."""
    with env.http().stream("POST", "/v1/responses", headers={"Authorization": f"Bearer {env.key}"},
                           json={**body, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = []
    for frame in text.split("\n\n"):
        lines = [ln for ln in frame.split("\n") if ln and not ln.startswith(":")]
        if not lines or lines == ["data: [DONE]"]:
            continue
        name = next(ln[7:] for ln in lines if ln.startswith("event: "))
        data = json.loads(next(ln[6:] for ln in lines if ln.startswith("data: ")))
        assert data["type"] == name
        events.append(data)
    return events


def _check_stream(events: list[dict]) -> None:
    for event in events:
        EVENT.validate_python(event)  # every event is a valid SDK ResponseStreamEvent
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[1]["type"] == "response.in_progress"
    # item events carry output_index; content events carry item_id and content_index
    for e in events:
        if e["type"].startswith("response.output_item."):
            assert isinstance(e["output_index"], int)
        if e["type"].startswith(("response.output_text.", "response.content_part.")):
            assert e["item_id"] and isinstance(e["content_index"], int)


def test_responses_create_returns_a_message_and_usage(env):
    env.account("basic", "r")
    env.ready(FAST)
    resp = env.openai().responses.create(stream=False, model=FAST, input="Tell me about kites", instructions="Be brief.")
    assert resp.id.startswith("resp_") and resp.status == "completed" and resp.object == "response"
    assert resp.output_text
    msg = [o for o in resp.output if o.type == "message"][0]
    assert msg.id.startswith("msg_") and msg.content[0].type == "output_text"
    u = resp.usage
    assert u.input_tokens > 4 and u.output_tokens > 0 and u.total_tokens == u.input_tokens + u.output_tokens
    assert u.output_tokens_details.reasoning_tokens == 0


def test_responses_stream_events_validate_and_final_matches_non_stream(env):
    env.account("basic", "rs")
    env.ready(FAST)
    body = {"model": FAST, "input": [{"role": "user", "content": [{"type": "input_text", "text": "Rivers please"}]}]}
    events = _raw_events(env, body)
    _check_stream(events)
    types = [e["type"] for e in events]
    assert types[-1] == "response.completed"
    assert types.index("response.output_item.added") < types.index("response.content_part.added") \
        < types.index("response.output_text.delta") < types.index("response.output_text.done") \
        < types.index("response.content_part.done") < types.index("response.output_item.done")
    completed = events[-1]["response"]
    streamed = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert completed["output"][0]["content"][0]["text"] == streamed
    assert completed["usage"]["total_tokens"] == completed["usage"]["input_tokens"] + completed["usage"]["output_tokens"]

    env.reset_simulator()  # same counters → the same canned answer for the same request
    whole = env.openai().responses.create(stream=False, **body)
    assert whole.output_text == streamed
    for field in ("input_tokens", "output_tokens", "total_tokens"):
        assert getattr(whole.usage, field) == completed["usage"][field]


def test_responses_stream_helper_get_final_response(env):
    env.account("basic", "rh")
    env.ready(FAST)
    with env.openai().responses.stream(model=FAST, input="Hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(deltas) and final.status == "completed"
    assert final.usage.output_tokens > 0


def test_responses_reasoning_shown_and_hidden(env):
    env.account("super", "rr")
    env.ready(EXPERT)
    events = _raw_events(env, {"model": EXPERT, "input": "Think about orchards"})
    _check_stream(events)
    types = [e["type"] for e in events]
    assert "response.reasoning_summary_text.delta" in types
    first_item = next(e for e in events if e["type"] == "response.output_item.added")["item"]
    assert first_item["type"] == "reasoning" and first_item["id"].startswith("rs_")
    completed = events[-1]["response"]
    assert [o["type"] for o in completed["output"]] == ["reasoning", "message"]
    assert completed["usage"]["output_tokens_details"]["reasoning_tokens"] > 0

    env.reset_simulator()
    hidden = env.openai().responses.create(stream=False, model=EXPERT, input="Think about orchards", reasoning={"effort": "none"})
    assert [o.type for o in hidden.output] == ["message"]
    assert hidden.usage.output_tokens_details.reasoning_tokens == 0


@pytest.mark.parametrize("stream", [False, True])
def test_encrypted_reasoning_is_included_and_accepted_back(env, stream):
    """Codex CLI's shape: include=["reasoning.encrypted_content"], store false, the whole output sent
    back as input on the next turn."""
    from core.crypto import decrypt

    env.account("super", f"enc{int(stream)}")
    env.ready(EXPERT)
    client = env.openai()
    ask = {"role": "user", "content": "Think about orchards"}
    asked = {"model": EXPERT, "input": [ask], "include": ["reasoning.encrypted_content"], "store": False}
    if stream:
        with client.responses.stream(**asked) as events:
            done = [e.item for e in events if e.type == "response.output_item.done"]
            resp = events.get_final_response()
        assert done[0].type == "reasoning" and done[0].encrypted_content == resp.output[0].encrypted_content
    else:
        resp = client.responses.create(**asked)
    reasoning = resp.output[0]
    assert reasoning.type == "reasoning" and isinstance(reasoning.encrypted_content, str)
    # opaque to the client, the reasoning text sealed with the gateway's at-rest key
    assert reasoning.summary[0].text not in reasoning.encrypted_content
    assert decrypt(reasoning.encrypted_content) == reasoning.summary[0].text

    again = client.responses.create(**{**asked, "input": [ask, *[o.model_dump(exclude_none=True) for o in resp.output],
                                                          {"role": "user", "content": "And now?"}]})
    assert again.status == "completed" and again.output_text
    assert again.output[0].type == "reasoning" and again.output[0].encrypted_content

    env.reset_simulator()
    plain = client.responses.create(model=EXPERT, input="Think about orchards")
    assert plain.output[0].type == "reasoning" and plain.output[0].encrypted_content is None


@pytest.mark.parametrize("stream", [False, True])
def test_responses_tool_round_trip(env, stream):
    env.account("basic", f"rt{int(stream)}")
    env.ready(FAST)
    client = env.openai()
    ask = {"role": "user", "content": "Weather in Oslo? #sim:tool=get_weather"}
    if stream:
        events = _raw_events(env, {"model": FAST, "input": [ask], "tools": [WEATHER]})
        _check_stream(events)
        types = [e["type"] for e in events]
        assert "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types
        call = next(o for o in events[-1]["response"]["output"] if o["type"] == "function_call")
    else:
        resp = client.responses.create(stream=False, model=FAST, input=[ask], tools=[WEATHER])
        call = next(o for o in resp.output if o.type == "function_call").model_dump()
    assert call["id"].startswith("fc_") and call["call_id"] and call["name"] == "get_weather"
    assert isinstance(json.loads(call["arguments"])["city"], str)

    follow = client.responses.create(stream=False, model=FAST, tools=[WEATHER], input=[
        ask,
        {"type": "function_call", "call_id": call["call_id"], "name": call["name"], "arguments": call["arguments"]},
        {"type": "function_call_output", "call_id": call["call_id"], "output": '{"temp_c": 4}'},
    ])
    assert follow.output_text and not [o for o in follow.output if o.type == "function_call"]


def test_responses_mid_stream_failure_is_response_failed_then_error(env):
    env.account("basic", "rdrop", "drop@3")
    env.ready(FAST)
    events = _raw_events(env, {"model": FAST, "input": "hi #sim:len=20"})
    _check_stream(events)
    assert [e["type"] for e in events[-2:]] == ["response.failed", "error"]
    assert events[-2]["response"]["status"] == "failed" and events[-2]["response"]["error"]["message"]
    assert events[-1]["code"] and events[-1]["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": FAST}, "input"),
        ({"model": FAST, "input": 42}, "input"),
        ({"model": FAST, "input": "hi", "stream": "no"}, "stream"),
        ({"model": FAST, "input": "hi", "tools": "x"}, "tools"),
        ({"model": FAST, "input": "hi", "conversation": "conv_1"}, "conversation"),
        ({"model": FAST, "input": "hi", "prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"model": FAST, "input": "hi", "include": ["message.output_text.logprobs"]}, "include[0]"),
        ({"model": FAST, "input": "hi", "include": ["reasoning.encrypted_content", "message.output_text.logprobs"]},
         "include[1]"),
        ({"model": FAST, "input": [{"type": "reasoning", "summary": [], "encrypted_content": 7},
                                   {"role": "user", "content": "hi"}]}, "input[0].encrypted_content"),
        ({"model": FAST, "input": "hi", "background": True, "store": False}, "store"),
        ({"model": FAST, "input": "hi", "truncation": "sometimes"}, "truncation"),
        ({"model": FAST, "input": "hi", "metadata": {"n": 1}}, "metadata.n"),
        ({"model": FAST, "input": "hi", "previous_response_id": ""}, "previous_response_id"),
    ],
)
def test_responses_bad_input_is_a_400_naming_the_parameter(env, body, param):
    r = env.http().post("/v1/responses", headers={"Authorization": f"Bearer {env.key}"}, json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]


def test_responses_errors_raise_the_sdk_typed_exceptions(env):
    client = env.openai()
    with pytest.raises(openai.NotFoundError):
        client.responses.create(stream=False, model="o3", input="hi")
    with pytest.raises(openai.AuthenticationError):
        env.openai(api_key="nope").responses.create(stream=False, model=FAST, input="hi")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(stream=False, model=FAST, input=[{"role": "wizard", "content": "x"}])
    r = env.http().post("/v1/responses", content=b"{", headers={"Authorization": f"Bearer {env.key}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


# Every setting of the request, as a client sends them; the response object must echo each one.
SETTINGS = {
    "instructions": "Answer with the tool.",
    "tools": [{**WEATHER, "strict": False}],
    "tool_choice": "required",
    "temperature": 0.3,
    "top_p": 0.9,
    "max_output_tokens": 500,
    "max_tool_calls": 3,
    "text": {"format": {"type": "text"}, "verbosity": "low"},
    "reasoning": {"effort": "low", "summary": "auto"},
    "truncation": "auto",
    "store": True,
    "metadata": {"ticket": "T-7"},
    "parallel_tool_calls": False,
    "user": "u-1",
}


def _check_object(obj: dict, settings: dict) -> Response:
    """Every documented field present, the SDK's strict type accepts it, every setting echoed."""
    missing = set(Response.model_fields) - set(obj)
    assert not missing, f"documented fields missing: {sorted(missing)}"
    parsed = Response.model_validate(obj, strict=True)
    for name, value in settings.items():
        if name == "tools":
            assert obj["tools"] == value
        elif name == "reasoning":
            assert obj["reasoning"]["effort"] == value["effort"] and obj["reasoning"]["summary"] == value["summary"]
        else:
            assert obj[name] == value, name
    assert obj["background"] is False and obj["service_tier"] == "default"
    return parsed


def test_the_response_object_has_every_documented_field_and_echoes_the_request(env):
    env.account("basic", "obj")
    env.ready(FAST)
    body = {"model": FAST, "input": "Weather in Oslo? #sim:tool=get_weather", **SETTINGS}
    r = env.http().post("/v1/responses", headers={"Authorization": f"Bearer {env.key}"}, json=body)
    assert r.status_code == 200
    obj = r.json()
    parsed = _check_object(obj, SETTINGS)
    assert parsed.status == "completed" and isinstance(obj["completed_at"], int) and obj["previous_response_id"] is None
    assert [o.type for o in parsed.output] == ["function_call"]


def test_a_plain_request_echoes_the_documented_defaults(env):
    env.account("basic", "objd")
    env.ready(FAST)
    obj = env.http().post("/v1/responses", headers={"Authorization": f"Bearer {env.key}"},
                          json={"model": FAST, "input": "hi"}).json()
    defaults = {"tools": [], "tool_choice": "auto", "store": True, "truncation": "disabled", "metadata": {},
                "parallel_tool_calls": True, "instructions": None, "max_output_tokens": None,
                "text": {"format": {"type": "text"}, "verbosity": "medium"}, "previous_response_id": None}
    _check_object(obj, defaults)


def test_every_stream_frame_carries_the_whole_object(env):
    env.account("basic", "objs")
    env.ready(FAST)
    events = _raw_events(env, {"model": FAST, "input": "Weather in Oslo? #sim:tool=get_weather", **SETTINGS})
    _check_stream(events)
    framed = [e for e in events if e["type"] in ("response.created", "response.in_progress", "response.completed")]
    assert [e["type"] for e in framed] == ["response.created", "response.in_progress", "response.completed"]
    for event in framed:
        _check_object(event["response"], SETTINGS)
    assert framed[0]["response"]["completed_at"] is None and isinstance(framed[-1]["response"]["completed_at"], int)


def test_the_failed_frame_carries_the_whole_object(env):
    env.account("basic", "objf", "drop@3")
    env.ready(FAST)
    settings = {"metadata": {"k": "v"}, "max_output_tokens": 5000, "temperature": 1.5}
    events = _raw_events(env, {"model": FAST, "input": "hi #sim:len=20", **settings})
    _check_stream(events)
    assert events[-2]["type"] == "response.failed"
    _check_object(events[-2]["response"], settings)


def test_the_incomplete_frame_carries_the_whole_object(env):
    env.account("basic", "obji")
    env.ready(FAST)
    settings = {"metadata": {"k": "w"}, "max_output_tokens": 4}
    events = _raw_events(env, {"model": FAST, "input": "Tell me a long story about the sea " * 3, **settings})
    _check_stream(events)
    assert events[-1]["type"] == "response.incomplete"
    _check_object(events[-1]["response"], settings)


def test_a_named_tool_choice_is_echoed_in_the_responses_shape(env):
    env.account("basic", "objn")
    env.ready(FAST)
    body = {"model": FAST, "input": "Weather in Oslo? #sim:tool=get_weather", "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}  # chat-completions nesting
    obj = env.http().post("/v1/responses", headers={"Authorization": f"Bearer {env.key}"}, json=body).json()
    _check_object(obj, {"tool_choice": {"type": "function", "name": "get_weather"}})
