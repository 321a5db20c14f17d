"""The /v1 request schemas (gateway/schemas/) and their rule (docs/api.md, "Request schemas"):

- the schema never refuses a body its family's translator accepts (hypothesis, on bodies built
  around a valid one), and where both refuse, the translator's error is the one raised;
- through a live `serve` on a real socket: a refused body is a 400 in the family's envelope naming
  the parameter in the translator's words, caps come before the schema, form bodies still work,
  and Ninja's own 400/422 bodies never show.
"""
from __future__ import annotations

import json
import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from grokweb.errors import GatewayError, InvalidRequest
from gateway.schemas.anthropic import CountTokensRequest, MessageCreateRequest
from gateway.schemas.chat import ChatCompletionRequest
from gateway.schemas.media import ImageGenerationRequest, VideoCreateRequest
from gateway.schemas.responses import ResponseCreateRequest
from gateway.tests.test_fuzz import JSON
from gateway.translate import anthropic, openai_chat, responses
from media.params import image_generation_params, video_params

PROPERTY = settings(max_examples=int(os.environ.get("SCHEMA_EXAMPLES", "150")), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

# Values that are often valid for some field, mixed with arbitrary JSON.
PLAUSIBLE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-3, max_value=300), st.floats(min_value=-3, max_value=3),
    st.sampled_from(["auto", "none", "required", "any", "low", "high", "none", "enabled", "disabled", "text",
                     "function", "custom", "tool", "url", "b64_json", "1024x1024", "1024X1024", " 6 ", "10", "480p",
                     "720P", "Spicy", "disabled", "auto", "x", ""]),
    st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool", "none", "enabled", "disabled", "function",
                                                    "text", "json_object"])},
                          optional={"name": st.just("f"), "budget_tokens": st.integers(0, 5000),
                                    "function": st.fixed_dictionaries({"name": st.just("f")}),
                                    "include_usage": st.booleans(), "effort": st.sampled_from(["low", "none", "x"])}),
    st.lists(st.sampled_from(["a", "stop", "file_search_call.results"]), max_size=3),
    JSON,
)
PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "refusal", "input_text", "output_text", "tool_use", "tool_result",
                              "thinking", "image", "document"])},
    optional={"text": st.one_of(st.text(max_size=5), PLAUSIBLE), "refusal": st.text(max_size=5), "id": st.just("t"),
              "name": st.just("f"), "input": PLAUSIBLE, "tool_use_id": st.just("t"), "content": PLAUSIBLE,
              "image_url": st.one_of(st.just("data:image/png;base64,AAAA"), PLAUSIBLE)},
)
CONTENT = st.one_of(st.text(max_size=8), st.lists(PART, max_size=3), PLAUSIBLE)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "bot"])},
    optional={"content": CONTENT, "name": st.one_of(st.just("n"), PLAUSIBLE), "tool_call_id": st.just("c"),
              "tool_calls": st.one_of(st.just([{"id": "c", "type": "function",
                                                "function": {"name": "f", "arguments": "{}"}}]), PLAUSIBLE),
              "type": st.sampled_from(["message", "function_call", "function_call_output"]),
              "call_id": st.just("c"), "arguments": st.just("{}"), "output": PLAUSIBLE},
)
TOOL = st.fixed_dictionaries(
    {}, optional={"type": st.sampled_from(["function", "custom", "web_search"]), "name": st.just("f"),
                  "input_schema": st.just({"type": "object"}), "parameters": st.just({"type": "object"}),
                  "function": st.fixed_dictionaries({"name": st.sampled_from(["f", "bad name"])},
                                                    optional={"parameters": st.just({"type": "object"})})})

CHAT_FIELDS = ["stream", "stream_options", "temperature", "top_p", "presence_penalty", "frequency_penalty",
               "max_tokens", "max_completion_tokens", "n", "seed", "stop", "parallel_tool_calls", "logprobs",
               "response_format", "metadata", "user", "reasoning_effort", "tool_choice", "image_config",
               "video_config", "modalities", "unknown_field"]
RESPONSES_FIELDS = ["instructions", "stream", "temperature", "top_p", "max_output_tokens", "max_tool_calls", "store",
                    "background", "parallel_tool_calls", "include", "previous_response_id", "truncation", "reasoning",
                    "text", "metadata", "tool_choice", "user", "safety_identifier", "prompt_cache_key", "unknown"]
ANTHROPIC_FIELDS = ["system", "thinking", "tool_choice", "stream", "stop_sequences", "temperature", "top_p", "top_k",
                    "metadata", "unknown"]


def _body(required: dict, fields: list[str], extra: dict):
    optional = {name: PLAUSIBLE for name in fields} | extra
    return st.fixed_dictionaries(required, optional=optional)


CHAT = _body({"model": st.just("grok-4.20-fast"), "messages": st.lists(MESSAGE, min_size=1, max_size=3)},
             CHAT_FIELDS, {"tools": st.one_of(st.lists(TOOL, max_size=2), PLAUSIBLE)})
RESPONSES = _body({"model": st.just("grok-4.20-fast"),
                   "input": st.one_of(st.text(max_size=5), st.lists(MESSAGE, min_size=1, max_size=3))},
                  RESPONSES_FIELDS, {"tools": st.one_of(st.lists(TOOL, max_size=2), PLAUSIBLE)})
ANTHROPIC = _body({"model": st.just("grok-4.20-fast"), "max_tokens": st.one_of(st.just(64), PLAUSIBLE),
                   "messages": st.lists(MESSAGE, min_size=1, max_size=3)},
                  ANTHROPIC_FIELDS, {"tools": st.one_of(st.lists(TOOL, max_size=2), PLAUSIBLE)})
IMAGES = _body({"prompt": st.one_of(st.just("a cat"), PLAUSIBLE)}, ["n", "size", "response_format"],
               {"model": st.sampled_from(["grok-imagine-image", "grok-imagine-image-lite", "nope"])})
VIDEOS = _body({"prompt": st.one_of(st.just("a cat"), PLAUSIBLE)}, ["seconds", "size", "resolution_name", "preset"],
               {"model": st.sampled_from(["grok-imagine-video", "grok-4.20-fast"])})


def _outcome(call) -> GatewayError | None:
    try:
        call()
    except GatewayError as exc:
        return exc
    return None


def _rule_holds(schema, translate, body) -> None:
    body = json.loads(json.dumps(body))  # what a client can send
    expected = _outcome(lambda: translate(body))
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        pytest.fail(f"the schema refused a body the translator {'accepts' if expected is None else 'refuses'}:"
                    f" {exc}\n{body}") if expected is None else pytest.fail(
                    f"a schema error escaped where the translator words the refusal: {exc}")
    except GatewayError as exc:
        assert expected is not None and type(exc) is type(expected) and exc.message == expected.message
        assert exc.param == expected.param


def _parse(module):
    return lambda body: module.parse_request(body, default_stream=False, default_thinking=True)


@PROPERTY
@given(body=CHAT)
def test_chat_schema_accepts_what_the_translator_accepts(body):
    _rule_holds(ChatCompletionRequest, _parse(openai_chat), body)


@PROPERTY
@given(body=RESPONSES)
def test_responses_schema_accepts_what_the_translator_accepts(body):
    _rule_holds(ResponseCreateRequest, _parse(responses), body)


@PROPERTY
@given(body=ANTHROPIC)
def test_messages_schema_accepts_what_the_translator_accepts(body):
    _rule_holds(MessageCreateRequest, _parse(anthropic), body)
    body.pop("max_tokens", None)
    _rule_holds(CountTokensRequest, anthropic.count_tokens, body)


@PROPERTY
@given(body=IMAGES)
def test_images_schema_accepts_what_the_media_check_accepts(db, body):
    _rule_holds(ImageGenerationRequest, lambda b: image_generation_params(
        model=b.get("model") or "grok-imagine-image-lite", prompt=b.get("prompt"), n=b.get("n"), size=b.get("size"),
        response_format=b.get("response_format")), body)


@PROPERTY
@given(body=VIDEOS)
def test_videos_schema_accepts_what_the_media_check_accepts(db, body):
    _rule_holds(VideoCreateRequest, lambda b: video_params(
        model=b.get("model") or None, prompt=b.get("prompt"), seconds=b.get("seconds"), size=b.get("size"),
        resolution_name=b.get("resolution_name"), preset=b.get("preset")), body)


# --------------------------------------------------------------------------- through a live server


# Shapes real agent clients send, which the translators accept: the schema must not refuse them
# (each of these once did, and Claude Code and Codex CLI failed on their first request).
REAL_CLIENT_BODIES = [
    (MessageCreateRequest, _parse(anthropic),  # Claude Code 2.1: adaptive thinking, a server tool
     {"model": "grok-4.20-fast", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}],
      "thinking": {"type": "adaptive"},
      "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
                {"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]}),
    (ResponseCreateRequest, _parse(responses),  # Codex CLI: hosted tools beside its functions
     {"model": "grok-4.20-fast", "input": "hi",
      "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
                {"type": "web_search"}, {"type": "local_shell"}]}),
]


@pytest.mark.parametrize("schema,translate,body", REAL_CLIENT_BODIES)
def test_bodies_real_clients_send_pass_the_schema_as_they_pass_the_translator(schema, translate, body):
    assert _outcome(lambda: translate(body)) is None
    schema.model_validate(body)


@pytest.fixture()
def http(gateway_server):
    with httpx.Client(base_url=gateway_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {gateway_server.api_key}"}) as client:
        yield client


def _translator_error(call) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        call()
    return info.value


def test_a_refused_chat_body_is_the_translators_400_in_openais_envelope(http):
    body = {"model": "grok-4.20-fast", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}
    expected = _translator_error(lambda: _parse(openai_chat)(body))
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "temperature" == expected.param and error["type"] == "invalid_request_error"
    assert error["message"].startswith(expected.message) and error["code"] == expected.code


def test_a_refused_messages_body_is_anthropics_envelope_in_anthropics_words(http):
    r = http.post("/v1/messages", json={"model": "grok-4.20-fast", "messages": [{"role": "user", "content": "hi"}]},
                  headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 400
    answer = r.json()
    assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"].startswith("max_tokens: Field required")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/images/generations",
                                  "/v1/messages/count_tokens"])
def test_bodies_that_are_not_json_objects_get_the_gateways_words_not_ninjas(http, path):
    for content, wanted in ((b"", "The request body is empty"), (b"{nope", "We could not parse the JSON body"),
                            (b"[1, 2]", "The request body must be a JSON object")):
        r = http.post(path, content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, content, r.text)
        message = r.json()["error"]["message"]
        assert message.startswith(wanted), (path, content, message)
        assert "Cannot parse request body" not in message


def test_the_depth_cap_comes_before_the_schema(http):
    deep = {"model": "grok-4.20-fast", "messages": [{"role": "user", "content": "hi"}],
            "metadata": json.loads("[" * 80 + "]" * 80)}
    r = http.post("/v1/chat/completions", json=deep)
    assert r.status_code == 400 and r.json()["error"]["code"] == "json_too_deep"
    assert r.json()["error"]["param"] == "metadata[0][0][0]"  # the first four segments of the path


def test_unknown_parameters_pass_the_schema_and_keep_the_translators_wording(http):
    body = {"model": "grok-4.20-fast", "input": "hi", "conversation": "conv_1"}
    expected = _translator_error(lambda: _parse(responses)(body))
    r = http.post("/v1/responses", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "conversation"
    assert r.json()["error"]["message"].startswith(expected.message)


def test_a_video_form_body_is_checked_by_value_with_the_parameter_named(http):
    r = http.post("/v1/videos", data={"prompt": "p", "seconds": "7"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "seconds"
    r = http.post("/v1/videos", files={"prompt": (None, "p"), "resolution_name": (None, "1080p")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "resolution_name"
