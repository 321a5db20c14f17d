"""Request parsers of the three families, from fixture files <family>_request__<variant>.json."""
from __future__ import annotations

import re

import pytest

from grokweb.errors import InvalidRequest
from gateway.translate import anthropic, openai_chat, responses
from gateway.translate.common import ToolChoice, ToolSpec, flatten
from gateway.translate.tools import tool_prompt
from gateway.tests.translate.helpers import fixture_names, load

PARSERS = {"openai": openai_chat.parse_request, "responses": responses.parse_request,
           "anthropic": anthropic.parse_request}
GOOD = [n for n in fixture_names("chat_request") + fixture_names("responses_request") + fixture_names("anthropic_request")
        if not n.endswith("__bad_inputs")]
BAD = [
    (name, i, case)
    for name in ("chat_request__bad_inputs", "responses_request__bad_inputs", "anthropic_request__bad_inputs")
    for i, case in enumerate(load(name)["cases"])
]


@pytest.mark.parametrize("name", GOOD)
def test_it_parses_the_fixture_request(name):
    fx = load(name)
    req = PARSERS[fx["family"]](fx["body"], default_stream=fx["defaults"]["stream"],
                                default_thinking=fx["defaults"]["thinking"])
    exp = fx["expect"]
    assert req.family == fx["family"]
    assert req.model == fx["body"]["model"]
    for key in ("stream", "show_reasoning", "include_usage", "encrypted_reasoning"):
        if key in exp:
            assert getattr(req, key) == exp[key], key
    if "tool_choice" in exp:
        assert req.tool_choice == ToolChoice(**exp["tool_choice"])
    if "tools" in exp:
        assert [t.name for t in req.tools] == exp["tools"]
    if "attachments" in exp:
        got = [{"kind": a.kind, "mime": a.mime, "url": a.url, "data_len": None if a.data is None else len(a.data),
                "param": a.param} for a in req.attachments]
        assert got == exp["attachments"]
    flat = flatten(req)
    if "flat" in exp:
        assert flat == exp["flat"]
    if "flat_after_tool_prompt" in exp:
        head = f"[system]: {tool_prompt(req.tools, req.tool_choice)}\n\n"
        assert flat.startswith(head)
        assert flat[len(head):] == exp["flat_after_tool_prompt"]


@pytest.mark.parametrize("name,index,case", BAD, ids=[f"{n.split('__')[0]}-{c['doc']}" for n, _, c in BAD])
def test_it_rejects_bad_input_naming_the_parameter(name, index, case):
    family = load(name)["family"]
    with pytest.raises(InvalidRequest) as info:
        PARSERS[family](case["body"], default_stream=False, default_thinking=True)
    exc = info.value
    assert exc.param == case["param"], exc.message
    assert exc.status == 400
    assert exc.message
    if case["param"] and family == "anthropic":
        # Anthropic's wording: "<dotted.path>: <what is wrong>" (messages.0.content: ...)
        path = re.sub(r"\[(\d+)\]", r".\1", case["param"])
        assert exc.message.startswith((f"{path}: ", "messages: ")), exc.message
    elif case["param"]:
        assert f"'{case['param']}" in exc.message, "the message names the parameter so a human can fix the request"
    assert exc.openai_body()["error"]["param"] == case["param"]
    assert exc.anthropic_body() == {"type": "error", "error": {"type": "invalid_request_error", "message": exc.message}}


def test_chat_defaults_apply_when_stream_and_reasoning_effort_are_absent():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    on = openai_chat.parse_request(body, default_stream=True, default_thinking=True)
    off = openai_chat.parse_request(body, default_stream=False, default_thinking=False)
    assert (on.stream, on.show_reasoning, off.stream, off.show_reasoning) == (True, True, False, False)
    for effort in ("minimal", "low", "medium", "high", "xhigh"):
        assert openai_chat.parse_request({**body, "reasoning_effort": effort}, default_stream=False,
                                         default_thinking=False).show_reasoning


def test_chat_passes_image_and_video_config_through():
    body = {"model": "grok-imagine-image-lite", "messages": [{"role": "user", "content": "a red apple"}],
            "image_config": {"n": 2, "size": "1024x1024"}, "video_config": {"seconds": 6}}
    req = openai_chat.parse_request(body, default_stream=False, default_thinking=True)
    assert req.image_config == {"n": 2, "size": "1024x1024"} and req.video_config == {"seconds": 6}
    assert req.last_user_text == "a red apple"


def test_anthropic_tool_result_may_reference_a_tool_use_from_an_earlier_message_only():
    ok = {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}]}
    req = anthropic.parse_request(ok, default_stream=False, default_thinking=True)
    assert req.turns[-1].role == "tool" and req.turns[-1].tool_call_id == "t1"
    swapped = {**ok, "messages": [ok["messages"][0], ok["messages"][2], ok["messages"][1]]}
    with pytest.raises(InvalidRequest) as info:
        anthropic.parse_request(swapped, default_stream=False, default_thinking=True)
    assert info.value.param == "messages[1].content[0].tool_use_id" and "t1" in info.value.message


def test_anthropic_tool_choice_forms_map_to_the_neutral_choice():
    base = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    cases = {"auto": ToolChoice("auto"), "any": ToolChoice("required"), "none": ToolChoice("none")}
    for kind, expected in cases.items():
        req = anthropic.parse_request({**base, "tool_choice": {"type": kind}}, default_stream=False, default_thinking=True)
        assert req.tool_choice == expected
    req = anthropic.parse_request({**base, "tool_choice": {"type": "tool", "name": "f"}}, default_stream=False,
                                  default_thinking=True)
    assert req.tool_choice == ToolChoice("function", "f")
    assert req.tools == [ToolSpec("f", "", {"type": "object"})]


def test_anthropic_count_tokens_matches_the_prompt_estimate_and_needs_no_max_tokens():
    from gateway.translate.tokens import count_tokens

    body = {"model": "m", "system": "Be brief.", "messages": [{"role": "user", "content": "Hello there"}]}
    assert anthropic.count_tokens(body) == {"input_tokens": count_tokens("[system]: Be brief.\n\n[user]: Hello there") + 4}
    with pytest.raises(InvalidRequest) as info:
        anthropic.count_tokens({"model": "m", "messages": []})
    assert info.value.param == "messages"


def test_responses_tool_choice_string_forms():
    base = {"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}]}
    for mode in ("auto", "none", "required"):
        assert responses.parse_request({**base, "tool_choice": mode}, default_stream=False,
                                       default_thinking=True).tool_choice == ToolChoice(mode)
    allowed = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]}
    assert responses.parse_request({**base, "tool_choice": allowed}, default_stream=False,
                                   default_thinking=True).tool_choice == ToolChoice("required")


def test_the_sources_marker_is_stripped_only_at_a_line_start_of_assistant_messages():
    from gateway.translate.common import strip_sources

    assert strip_sources("Answer\n\n[grok2api-sources]: #\n## Sources\n- [a](b)") == "Answer"
    assert strip_sources("quoting `[grok2api-sources]: #` inline") == "quoting `[grok2api-sources]: #` inline"
    body = {"model": "m", "messages": [{"role": "user", "content": "x\n[grok2api-sources]: #\nkept"}]}
    assert flatten(openai_chat.parse_request(body, default_stream=False, default_thinking=True)) == \
        "[user]: x\n[grok2api-sources]: #\nkept"


def test_anthropic_system_messages_inside_messages_are_folded_where_they_stand():
    # Claude Code 2.1 (anthropic-beta mid-conversation-system-…) sends roles user, system.
    body = {"model": "m", "max_tokens": 5, "system": "Top.", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "Now answer in French."}]},
        {"role": "assistant", "content": "bonjour"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "and then?"},
    ]}
    req = anthropic.parse_request(body, default_stream=False, default_thinking=True)
    assert flatten(req) == ("[system]: Top.\n\n[user]: hi\n\n[system]: Now answer in French.\n\n"
                            "[assistant]: bonjour\n\n[system]: Be brief.\n\n[user]: and then?")


@pytest.mark.parametrize("body,message", [
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens: Field required"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, "model: Field required"),
    ({"model": "m", "max_tokens": "5", "messages": [{"role": "user", "content": "hi"}]},
     "max_tokens: Input should be a valid integer"),
    ({"model": "m", "max_tokens": 5, "messages": {"role": "user"}}, "messages: Input should be a valid list"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user"}]}, "messages.0.content: Field required"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "foo", "content": "x"}]},
     'messages: Unexpected role "foo". Allowed roles are "user", "assistant" or "system"'),
])
def test_anthropic_errors_are_worded_like_anthropics_own(body, message):
    with pytest.raises(InvalidRequest) as info:
        anthropic.parse_request(body, default_stream=False, default_thinking=True)
    assert info.value.message.startswith(message), info.value.message
    assert info.value.anthropic_body()["error"] == {"type": "invalid_request_error", "message": info.value.message}


def test_a_background_request_and_its_queued_object():
    from openai.types.responses import Response

    fx = load("responses_request__background")
    req = responses.parse_request(fx["body"], default_stream=False, default_thinking=True)
    assert req.background is True and req.store is True and req.echo["background"] is True
    queued = fx["expect"]["queued"]
    obj = responses.snapshot(request=req, rid=queued["id"], created=queued["created_at"], status="queued")
    assert {k: obj[k] for k in queued} == queued
    Response.model_validate(obj, strict=True)
    req.response_id, req.created_at = queued["id"], queued["created_at"]
    encoder = responses.StreamEncoder(model=req.model, prompt_tokens=1, request=req)
    assert b'"id":"resp_1"' in encoder.begin()  # a background run streams under the queued id
