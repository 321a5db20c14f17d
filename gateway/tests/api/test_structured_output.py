"""Structured output (response_format / text.format) through the official SDKs' parse helpers, on a
live gateway + simulator: valid JSON for the schema, streamed and not, and clear errors otherwise."""
from __future__ import annotations

import json

import anthropic
import openai
import pytest
from pydantic import BaseModel

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "grok-4.20-fast"
EXPERT = "grok-4.20-expert"


class Address(BaseModel):
    city: str
    zip_code: str


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]
    address: Address


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_chat_parse_returns_the_model_streamed_and_not(env):
    env.account("basic", "sparse")
    env.ready(FAST)
    client = env.openai()
    done = client.chat.completions.parse(model=FAST, messages=_user("Describe a person"), response_format=Person)
    msg = done.choices[0].message
    assert isinstance(msg.parsed, Person) and msg.parsed.address.city
    assert msg.refusal is None and done.choices[0].finish_reason == "stop"
    assert json.loads(msg.content) == msg.parsed.model_dump()  # clean JSON, nothing around it
    with client.chat.completions.stream(model=FAST, messages=_user("Describe a person"),
                                        response_format=Person) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == msg.parsed


def test_json_in_a_fence_after_prose_is_extracted(env):
    env.account("basic", "sfence")
    env.ready(FAST)
    client = env.openai()
    done = client.chat.completions.parse(model=FAST, messages=_user("Describe a person #sim:json-fenced"),
                                         response_format=Person)
    assert done.choices[0].message.content.startswith("{") and isinstance(done.choices[0].message.parsed, Person)
    chunks = list(client.chat.completions.create(model=FAST, stream=True, response_format={"type": "json_object"},
                                                 messages=_user("Any JSON please #sim:json-fenced")))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {"answer": "example answer"}


def test_an_invalid_answer_is_a_502_naming_response_format(env):
    env.account("basic", "sbad")
    env.ready(FAST)
    client = env.openai()
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as info:
            got = client.chat.completions.create(model=FAST, stream=stream, response_format={"type": "json_object"},
                                                 messages=_user("Talk #sim:json-invalid"))
            list(got) if stream else None
        assert info.value.status_code == 502
        assert info.value.body["code"] == "structured_output_invalid" and info.value.body["param"] == "response_format"
        assert "not an object" in info.value.body["message"]


def test_an_invalid_answer_after_shown_reasoning_ends_the_stream_with_an_error_event(env):
    env.account("super", "sbadexp")
    env.ready(EXPERT)
    with env.http() as http, http.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {env.key}"},
                                         json={"model": EXPERT, "stream": True, "messages": _user("Think #sim:json-invalid"),
                                               "response_format": {"type": "json_object"}}) as resp:
        assert resp.status_code == 200  # reasoning went out first: the failure can only be in-band
        frames = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])["error"]
    assert error["code"] == "structured_output_invalid" and error["param"] == "response_format"
    content = "".join((json.loads(f)["choices"][0]["delta"].get("content") or "") for f in frames[:-2]
                      if json.loads(f).get("choices"))
    assert content == ""  # nothing of the invalid answer was shown as content


def test_responses_stream_after_shown_reasoning_fails_in_band(env):
    env.account("super", "srespexp")
    env.ready(EXPERT)
    events = list(env.openai().responses.create(model=EXPERT, input="Think #sim:json-invalid", stream=True,
                                                text={"format": {"type": "json_object"}}))
    assert events[0].type == "response.created" and events[0].response.text.format.type == "json_object"
    assert [e.type for e in events][-2:] == ["response.failed", "error"]
    assert events[-1].code == "structured_output_invalid"
    assert not [e for e in events if e.type == "response.output_text.delta"]


def test_responses_parse_and_stream_with_text_format(env):
    env.account("basic", "sresp")
    env.ready(FAST)
    client = env.openai()
    resp = client.responses.parse(model=FAST, input="Describe a person", text_format=Person)
    assert isinstance(resp.output_parsed, Person)
    assert resp.text.format.type == "json_schema" and resp.text.format.name == "Person"  # echoed
    with client.responses.stream(model=FAST, input="Describe a person", text_format=Person) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == resp.output_parsed
    with pytest.raises(openai.APIStatusError) as info:
        client.responses.create(model=FAST, input="Talk #sim:json-invalid", text={"format": {"type": "json_object"}})
    assert info.value.status_code == 502 and info.value.body["param"] == "text.format"


def test_a_strict_schema_outside_the_subset_is_refused_before_any_upstream_call(env):
    token = env.account("basic", "sstrict")
    env.ready(FAST)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    with pytest.raises(openai.BadRequestError) as info:
        env.openai().chat.completions.create(
            model=FAST, messages=_user("hi"),
            response_format={"type": "json_schema", "json_schema": {"name": "A", "strict": True, "schema": schema}})
    body = info.value.body
    assert body["code"] == "invalid_json_schema" and body["param"] == "response_format.json_schema.schema"
    assert "'additionalProperties' is required to be supplied and to be false" in body["message"]
    assert env.chat_requests(token) == []


def test_tool_calls_need_no_json(env):
    env.account("basic", "stool")
    env.ready(FAST)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    done = env.openai().chat.completions.create(model=FAST, tools=[tool], response_format={"type": "json_object"},
                                                messages=_user("Weather? #sim:tool=get_weather"))
    assert done.choices[0].finish_reason == "tool_calls" and done.choices[0].message.content is None


def test_media_models_refuse_a_json_format(env):
    with pytest.raises(openai.BadRequestError) as info:
        env.openai().chat.completions.create(model="grok-imagine-image", messages=_user("a cat"),
                                             response_format={"type": "json_object"})
    assert info.value.body["param"] == "response_format" and "needs a chat model" in info.value.body["message"]


def test_messages_parse_with_output_format_streamed_and_not(env):
    env.account("basic", "santh")
    env.ready(FAST)
    client = env.anthropic()
    msg = client.messages.parse(model=FAST, max_tokens=500, messages=_user("Describe a person"), output_format=Person)
    assert isinstance(msg.parsed_output, Person) and msg.stop_reason == "end_turn"
    assert json.loads(msg.content[0].text) == msg.parsed_output.model_dump()
    schema = {"type": "object", "properties": {"selected": {"type": "array", "items": {"type": "string"}}},
              "required": ["selected"], "additionalProperties": False}
    with client.messages.stream(model=FAST, max_tokens=500, messages=_user("Pick #sim:json-fenced"),
                                extra_body={"output_format": {"type": "json_schema", "schema": schema}}) as stream:
        final = stream.get_final_message()
    assert json.loads(final.content[0].text) == {"selected": ["example selected"]}


def test_messages_invalid_structured_answer_is_a_502_api_error(env):
    env.account("basic", "santhbad")
    env.ready(FAST)
    with pytest.raises(anthropic.APIStatusError) as info:
        env.anthropic().messages.parse(model=FAST, max_tokens=500, messages=_user("Talk #sim:json-invalid"),
                                       output_format=Person)
    assert info.value.status_code == 502 and info.value.body["error"]["type"] == "api_error"
    assert "could not be made into JSON" in info.value.body["error"]["message"]


@pytest.mark.parametrize("extra, message", [
    ({"response_format": {"type": "json_object"}}, "response_format: "),
    ({"output_format": {"type": "json_schema", "schema": {"type": "object"}},
      "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}, "output_format: Both"),
    ({"output_config": {"format": {"type": "json_schema", "schema": {"type": "integr"}}}},
     "output_config.format.schema: Invalid schema for output_config.format: "),
])
def test_messages_refuses_bad_or_foreign_output_formats_by_name(env, extra, message):
    token = env.account("basic", "santhref")
    env.ready(FAST)
    with pytest.raises(anthropic.BadRequestError) as info:
        env.anthropic().messages.create(model=FAST, max_tokens=50, messages=_user("hi"), extra_body=extra)
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert info.value.body["error"]["message"].startswith(message)
    assert env.chat_requests(token) == []
