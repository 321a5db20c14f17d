"""Fuzzing (issue 16 §5, issue 17 §7): no input gets a 5xx, every answer is the one the published
schema documents, and the request parsers raise nothing but InvalidRequest.

1. schemathesis against the OpenAPI schema a live `serve` process publishes at /v1/openapi.json, with
   a valid API key and the simulator as grok.com. Every answer is checked with `not_a_server_error`
   and against the document: its status is documented (`status_code_conformance`), its content
   type too (`content_type_conformance`), and its body matches the documented schema — the success
   object or the family's error envelope (`response_schema_conformance`). Every /v1 body is
   documented (gateway/schemas/), so schemathesis draws bodies from those schemas, valid ones and
   (its negative mode) invalid ones, which must be refused with a 4xx (`negative_data_rejection`):
   they reach the real parsers through the real server.
2. hypothesis property tests of the pure parsers behind those routes — the three chat families'
   `parse_request`, Anthropic `count_tokens`, `json_body_parse`, and the media parameter
   validators — fed arbitrary JSON-like values: each either parses or raises the gateway's own
   InvalidRequest (a 400 naming the field), never another exception (which would be a 500).

Example counts are bounded (FUZZ_EXAMPLES per operation, PROPERTY_EXAMPLES per property) so the
module stays well under a minute; raise them locally with the environment variables of the same name.
"""
from __future__ import annotations

import json
import os

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from grokweb.errors import InvalidRequest, ModelNotFound
from gateway.jsonbody import json_body_parse
from gateway.translate import anthropic, openai_chat, responses
from gateway.translate.common import flatten
from gateway.translate.tokens import prompt_tokens
from media.params import image_edit_params, image_generation_params, video_params

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
PROPERTY_EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "80"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# --------------------------------------------------------------------------- the live schema


@pytest.fixture(scope="session")
def served_schema(gateway_server):
    document = httpx.get(gateway_server.url + "/v1/openapi.json", timeout=10).json()
    return schemathesis.openapi.from_dict(document)


def test_every_post_operation_documents_its_body_security_and_errors(gateway_server):
    document = httpx.get(gateway_server.url + "/v1/openapi.json", timeout=10).json()
    assert set(document["components"]["securitySchemes"]) == {"BearerKey", "HeaderKey"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            if method == "post" and not path.endswith("/cancel"):  # cancel takes no body, as OpenAI's
                assert "requestBody" in operation, label
            if path.startswith("/v1/files/"):
                continue  # signed media links: no API key (gateway/api/files.py)
            assert operation["security"] == [{"BearerKey": []}, {"HeaderKey": []}], label
            envelope = "AnthropicError" if path.startswith("/v1/messages") else "OpenAIError"
            for status in ("401", "404", "429", "500"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": f"#/components/schemas/{envelope}"}, (label, status)


def _operation_labels() -> list[str]:
    """`METHOD /path` of every operation the API publishes (read in-process, at collection)."""
    from grok2api.api import api

    paths = api.get_openapi_schema()["paths"]
    return [f"{method.upper()} {path}" for path, ops in paths.items() for method in ops]


# One hypothesis run per operation, driven through schemathesis' public strategy API: its pytest
# integration (`schemathesis.pytest.from_fixture`) reads a pytest node attribute that pytest 9
# no longer has (AttributeError `_nodeid`).
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("label", _operation_labels())
def test_every_operation_answers_as_documented(label, mode, served_schema, gateway_server):
    """Valid inputs (drawn from the schema) and invalid ones (schemathesis' negative mode, which
    must also be refused with a 4xx: `negative_data_rejection`)."""
    operation = served_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served /v1/openapi.json"
    headers = {"Authorization": f"Bearer {gateway_server.api_key}"}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        checks = CHECKS + [negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
        case.call_and_validate(base_url=gateway_server.url, headers=headers, checks=checks, timeout=30)

    run()


# --------------------------------------------------------------------------- the parsers

# JSON-like values: what orjson can hand a parser. Keys are drawn from the fields the parsers read
# (so generated values reach deep into them) or are arbitrary text.
FIELDS = [
    "model", "messages", "role", "content", "type", "text", "image_url", "url", "input_audio", "data", "format",
    "file", "file_data", "file_id", "filename", "tool_calls", "id", "function", "name", "arguments", "tool_call_id",
    "tools", "parameters", "description", "tool_choice", "stream", "stream_options", "include_usage",
    "reasoning_effort", "temperature", "top_p", "n", "max_tokens", "max_completion_tokens", "seed", "stop",
    "input", "instructions", "reasoning", "effort", "call_id", "output", "input_image", "input_text",
    "system", "thinking", "budget_tokens", "input_schema", "source", "media_type", "tool_use_id", "is_error",
    "image_config", "video_config", "size", "response_format", "seconds", "resolution_name", "preset", "prompt",
    "top_k", "stop_sequences", "metadata", "presence_penalty", "frequency_penalty", "max_output_tokens",
]
KEYS = st.one_of(st.sampled_from(FIELDS), st.text(max_size=8))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["user", "assistant", "system", "developer", "tool", "text", "image_url", "function", "auto",
                     "none", "required", "any", "enabled", "disabled", "base64", "url", "tool_use", "tool_result",
                     "input_text", "input_image", "function_call", "function_call_output", "message", "image",
                     "document", "grok-4.20-fast", "grok-imagine-image", "grok-imagine-video", "data:image/png;base64,AAAA",
                     "https://example.com/a.png", "²", "1" * 5000]),
)
# Now and then a leaf is a tower of nested arrays up to 300 deep: past orjson's 255-level writer.
DEEP = st.integers(min_value=1, max_value=300).map(lambda depth: orjson.loads(b"[" * depth + b"]" * depth))
JSON = st.recursive(st.one_of(SCALARS, DEEP), lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                      st.dictionaries(KEYS, inner, max_size=6)),
                    max_leaves=20)
BODIES = st.dictionaries(KEYS, JSON, max_size=8)
PROPERTY = settings(max_examples=PROPERTY_EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _parses_or_refuses(call) -> None:
    try:
        call()
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.message
    except ModelNotFound:
        pass  # a 404 naming `model`, also the gateway's own answer


def _chat_pipeline(module, body: dict) -> None:
    """What a chat request goes through before the upstream: the body parser (with its depth
    bound), the family's parser, the flattened upstream message (tool prompt included) and the
    prompt-token count."""
    req = module.parse_request(json_body_parse(json.dumps(body).encode()), default_stream=False, default_thinking=True)
    prompt_tokens(flatten(req))


@pytest.mark.parametrize("module", [openai_chat, responses, anthropic], ids=["chat", "responses", "anthropic"])
@PROPERTY
@given(body=BODIES)
def test_the_chat_family_parsers_parse_or_refuse_any_json_object(module, body):
    _parses_or_refuses(lambda: _chat_pipeline(module, body))


@pytest.mark.parametrize("module", [openai_chat, responses, anthropic], ids=["chat", "responses", "anthropic"])
@PROPERTY
@given(tool=JSON, args=JSON, depth=st.integers(min_value=0, max_value=300))
def test_the_chat_family_parsers_parse_or_refuse_any_tool_schema_or_arguments(module, tool, args, depth):
    """Tools and tool calls in each family's own shape, with arbitrary (possibly very deep) schemas
    and arguments: where the 500s of issue 16 §5 were."""
    schema = json.loads("[" * depth + json.dumps(tool) + "]" * depth)
    text = json.dumps(args)
    if module is anthropic:
        body = {"model": "grok-4.20-fast", "max_tokens": 8, "tools": [{"name": "f", "input_schema": schema}],
                "messages": [{"role": "user", "content": "hi"},
                             {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": args}]},
                             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}]}
    elif module is responses:
        body = {"model": "grok-4.20-fast", "tools": [{"type": "function", "name": "f", "parameters": schema}],
                "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": text},
                          {"type": "function_call_output", "call_id": "c", "output": "ok"}]}
    else:
        body = {"model": "grok-4.20-fast", "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
                "messages": [{"role": "user", "content": "hi"},
                             {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                                   "function": {"name": "f", "arguments": text}}]},
                             {"role": "tool", "tool_call_id": "c", "content": "ok"}]}
    _parses_or_refuses(lambda: _chat_pipeline(module, body))


@PROPERTY
@given(body=BODIES)
def test_anthropic_token_counting_parses_or_refuses_any_json_object(body):
    _parses_or_refuses(lambda: anthropic.count_tokens(body))


@PROPERTY
@given(value=JSON, depth=st.integers(min_value=0, max_value=300))
def test_the_body_parser_accepts_or_refuses_any_json_text(value, depth):
    raw = ("[" * depth + json.dumps(value) + "]" * depth).encode()
    _parses_or_refuses(lambda: json_body_parse(raw, require_object=False))


MEDIA_VALUES = st.one_of(JSON, st.sampled_from(["²", "١٢", "9" * 5000, " 6 ", "-1", "1e3", "0x10", "６"]))


@PROPERTY
@given(model=MEDIA_VALUES, prompt=MEDIA_VALUES, n=MEDIA_VALUES, size=MEDIA_VALUES, fmt=MEDIA_VALUES,
       seconds=MEDIA_VALUES, resolution=MEDIA_VALUES, preset=MEDIA_VALUES)
def test_the_media_validators_accept_or_refuse_any_value(model, prompt, n, size, fmt, seconds, resolution, preset):
    _parses_or_refuses(lambda: image_generation_params(model=model, prompt=prompt, n=n, size=size, response_format=fmt))
    _parses_or_refuses(lambda: image_edit_params(model=model, prompt=prompt, n=n, size=size, response_format=fmt))
    _parses_or_refuses(lambda: video_params(model=model, prompt=prompt, seconds=seconds, size=size,
                                            resolution_name=resolution, preset=preset))
