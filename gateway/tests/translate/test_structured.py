"""Structured output (gateway/translate/structured.py) from fixture files structured_<operation>__<variant>.json:
request parsing, the prompt, JSON extraction and validation, and the assembler holding the answer."""
from __future__ import annotations

import json

import pytest

from grokweb.errors import InvalidRequest, StructuredOutputInvalid, ToolCallMissing
from gateway.translate import openai_chat, responses
from gateway.translate.assembler import ReasoningPiece, TextPiece, ToolCallsPiece, TurnAssembler
from gateway.translate.common import ToolChoice, ToolSpec, flatten
from gateway.translate.structured import SCHEMA_LINE, format_parse, format_prompt, structured_answer
from gateway.tests.translate.helpers import Ids, events_of, load
from grokweb.events import AnswerDelta, Completed
from grokweb.simulator import content

EXTRACTION = load("structured_answer__extraction")
BAD = load("structured_request__bad_inputs")
STREAM = load("structured_stream__fenced")


def _fmt(raw: dict, *, nested: bool = True, param: str = "response_format"):
    return format_parse(raw=raw, param=param, nested=nested)


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize("case", EXTRACTION["cases"], ids=[c["doc"] for c in EXTRACTION["cases"]])
def test_the_answer_becomes_clean_json_or_a_clear_error(case):
    fmt = _fmt(EXTRACTION["formats"][case["format"]])
    if "content" in case:
        assert structured_answer(case["text"], fmt) == case["content"]
    else:
        with pytest.raises(StructuredOutputInvalid) as info:
            structured_answer(case["text"], fmt)
        assert case["error"] in info.value.message
        assert info.value.status == 502 and info.value.param == "response_format"
        assert info.value.openai_body()["error"]["code"] == "structured_output_invalid"


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize("case", BAD["cases"], ids=[c["doc"] for c in BAD["cases"]])
def test_bad_formats_are_refused_naming_the_field(case):
    with pytest.raises(InvalidRequest) as info:
        _fmt(case["raw"], nested=case["nested"], param=case.get("param_root", "response_format"))
    assert info.value.param == case["param"]
    assert info.value.code == case["code"]
    assert case["param"] in info.value.message or "message" in case
    if "message" in case:
        assert case["message"] in info.value.message


def test_chat_and_responses_parsers_carry_the_format():
    schema = EXTRACTION["formats"]["person"]
    chat = openai_chat.parse_request({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                      "response_format": schema}, default_stream=False, default_thinking=False)
    assert chat.output_format.kind == "json_schema" and chat.output_format.strict
    assert chat.output_format.name == "Person" and chat.output_format.param == "response_format"
    flat = {"type": "json_schema", **schema["json_schema"]}
    resp = responses.parse_request({"model": "m", "input": "hi", "text": {"format": flat}},
                                   default_stream=False, default_thinking=False)
    assert resp.output_format.kind == "json_schema" and resp.output_format.param == "text.format"
    assert resp.echo["text"]["format"] == flat  # echoed in the response object as sent
    plain = openai_chat.parse_request({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                       "response_format": {"type": "text"}}, default_stream=False,
                                      default_thinking=False)
    assert not plain.output_format.active and "RESPONSE FORMAT" not in flatten(plain)


def test_the_prompt_comes_last_with_the_schema_on_one_line_and_the_simulator_reads_it():
    schema = EXTRACTION["formats"]["person"]
    req = openai_chat.parse_request({"model": "m", "messages": [{"role": "user", "content": "Who? #sim:len=3"}],
                                     "response_format": schema}, default_stream=False, default_thinking=False)
    message = flatten(req)
    last = message.split("\n\n")[-1]
    assert last.startswith("[system]: RESPONSE FORMAT:") and SCHEMA_LINE in last
    assert "If you call a tool" not in last  # said only when tools are declared
    with_tools = openai_chat.parse_request({"model": "m", "messages": [{"role": "user", "content": "Who?"}],
                                            "tools": [{"type": "function", "function": {"name": "f"}}],
                                            "response_format": schema}, default_stream=False, default_thinking=False)
    assert "If you call a tool" in flatten(with_tools).split("\n\n")[-1]
    line = next(x for x in last.splitlines() if x.startswith(SCHEMA_LINE))
    assert json.loads(line[len(SCHEMA_LINE):]) == schema["json_schema"]["schema"]
    prompt = content.parse_prompt(message)
    assert prompt.last_role == "user" and prompt.has("len")  # directives still come from the user turn
    assert prompt.response_schema == schema["json_schema"]["schema"]
    # the simulator's answer satisfies the schema, and its fenced variant is extracted
    assert json.loads(structured_answer(content.structured_answer(prompt), req.output_format))["name"]
    prompt.directives["json-fenced"] = ""
    assert structured_answer(content.structured_answer(prompt), req.output_format)
    prompt.directives = {"json-invalid": ""}
    with pytest.raises(StructuredOutputInvalid):
        structured_answer(content.structured_answer(prompt), req.output_format)


def test_json_object_prompt_has_no_schema_and_the_simulator_answers_an_object():
    fmt = _fmt({"type": "json_object"})
    text = format_prompt(fmt)
    assert SCHEMA_LINE not in text and "JSON object" in text
    prompt = content.parse_prompt(f"[user]: hi\n\n[system]: {text}")
    assert prompt.response_schema == {}
    assert json.loads(structured_answer(content.structured_answer(prompt), fmt)) == {"answer": "example answer"}


def test_the_simulator_fills_pydantic_style_refs():
    schema = {"type": "object", "additionalProperties": False, "required": ["owner", "pets"],
              "properties": {"owner": {"$ref": "#/$defs/Person"},
                             "pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}}},
              "$defs": {"Person": {"type": "object", "additionalProperties": False, "required": ["name"],
                                   "properties": {"name": {"type": "string"}}},
                        "Pet": {"type": "object", "additionalProperties": False, "required": ["kind"],
                                "properties": {"kind": {"enum": ["cat", "dog"]}}}}}
    fmt = _fmt({"type": "json_schema", "json_schema": {"name": "Household", "strict": True, "schema": schema}})
    prompt = content.parse_prompt(f"[user]: hi\n\n[system]: {format_prompt(fmt)}")
    value = json.loads(structured_answer(content.structured_answer(prompt), fmt))
    assert value["pets"] == [{"kind": "cat"}] and isinstance(value["owner"]["name"], str)


# --------------------------------------------------------------------------- the assembler


def _run(events, fmt, chunks=None, **kw):
    asm = TurnAssembler(ids=Ids(), output_format=fmt, **kw)
    pieces, held_flags = [], []
    for event in events:
        pieces += asm.feed(event)
        held_flags.append(asm.holding)
    pieces += asm.finish()
    return asm, pieces, held_flags


def test_the_answer_is_held_and_emitted_once_as_clean_json():
    fmt = _fmt(STREAM["format"])
    asm, pieces, _ = _run(events_of(STREAM), fmt, show_reasoning=True)
    texts = [p.text for p in pieces if isinstance(p, TextPiece)]
    assert texts == [STREAM["expect"]["text"]]  # one piece, after the reasoning
    assert isinstance(pieces[0], ReasoningPiece)
    assert asm.result.text == STREAM["expect"]["text"] and asm.result.finish_reason == "stop"


def test_the_outcome_does_not_depend_on_token_boundaries():
    fmt = _fmt(STREAM["format"])
    answer = "".join(e.text for e in events_of(STREAM) if isinstance(e, AnswerDelta))
    for cut in range(1, len(answer)):
        events = [AnswerDelta(answer[:cut]), AnswerDelta(answer[cut:]), Completed()]
        asm, pieces, held = _run(events, fmt, show_reasoning=False)
        assert [p.text for p in pieces if isinstance(p, TextPiece)] == [STREAM["expect"]["text"]]
        assert held[:2] == [True, True]  # nothing was visible before finish(): a failure is still an HTTP error


def test_an_invalid_answer_raises_at_finish():
    fmt = _fmt(STREAM["format"])
    asm = TurnAssembler(output_format=fmt)
    assert asm.feed(AnswerDelta("I will not answer in JSON.")) == []
    with pytest.raises(StructuredOutputInvalid):
        asm.finish()


def test_a_tool_call_is_the_answer_and_needs_no_json():
    fmt = _fmt(STREAM["format"])
    tools = [ToolSpec("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}})]
    call = '<tool_calls><tool_call><tool_name>get_weather</tool_name><parameters>{"city":"Paris"}</parameters></tool_call></tool_calls>'
    asm, pieces, _ = _run([AnswerDelta(call), Completed()], fmt, tools=tools, tool_choice=ToolChoice())
    assert [type(p) for p in pieces] == [ToolCallsPiece] and asm.result.finish_reason == "tool_calls"


def test_forced_tool_choice_still_wins_over_the_format():
    fmt = _fmt(STREAM["format"])
    tools = [ToolSpec("get_weather")]
    asm = TurnAssembler(output_format=fmt, tools=tools, tool_choice=ToolChoice("required"))
    asm.feed(AnswerDelta('{"name": "Ada", "age": 36}'))
    with pytest.raises(ToolCallMissing):
        asm.finish()


def test_cut_at_max_tokens_the_unfinished_json_is_shown_with_length():
    fmt = _fmt(STREAM["format"])
    asm, pieces, _ = _run([AnswerDelta('{"name": "Ada Lovelace the first programmer", "age": 36}'), Completed()],
                          fmt, max_tokens=3)
    assert asm.result.finish_reason == "length"
    assert asm.result.text and asm.result.text == "".join(p.text for p in pieces if isinstance(p, TextPiece))


def test_sources_and_citations_do_not_break_the_json():
    fmt = _fmt({"type": "json_object"})
    asm = TurnAssembler(output_format=fmt, show_search_sources=True)
    from grokweb.events import SearchResults, SearchSource

    asm.feed(SearchResults(sources=(SearchSource(url="https://example.com/", title="Ex", type="web"),)))
    asm.feed(AnswerDelta('{"a": 1}'))
    pieces = asm.finish()
    assert [p.text for p in pieces if isinstance(p, TextPiece)] == ['{"a":1}']
    assert asm.result.search_sources and asm.result.annotations == []


# --------------------------------------------------------------------------- fuzz: 400 or a format, never a 500

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_WORDS = ["type", "object", "string", "integer", "array", "properties", "required", "items", "$ref", "$defs",
          "#", "#/$defs/a", "#/$defs/b", "a", "b", "$schema", "$id", "$dynamicRef", "$dynamicAnchor", "anyOf",
          "additionalProperties", "enum", "const", "pattern", "format", "email", "minimum", "name", "schema",
          "strict", "json_schema", "json_object", "text", "https://json-schema.org/draft/2020-12/schema",
          "http://json-schema.org/draft-04/schema#", "definitions", "#/definitions/a", "(", "not", "allOf"]
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(_WORDS), st.text(max_size=6))
_TREE = st.recursive(_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(st.sampled_from(_WORDS), inner, max_size=5)),
                     max_leaves=25)
_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow])


_SCHEMAS = st.dictionaries(st.sampled_from(_WORDS), _TREE, max_size=6)
_WRAPPED = st.builds(lambda schema, strict: {"type": "json_schema", "json_schema": {
    "name": "x", "strict": strict, "schema": schema}}, _SCHEMAS, st.booleans())


@_SETTINGS
@given(raw=st.one_of(_WRAPPED, _TREE), answer=st.one_of(st.text(max_size=40), _TREE.map(json.dumps)))
def test_any_format_parses_or_is_refused_and_any_answer_is_json_or_a_502(raw, answer):
    try:
        fmt = _fmt(raw, nested=True)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.param
        return
    if not fmt.active:
        return
    try:
        out = structured_answer(answer, fmt)
    except StructuredOutputInvalid as exc:
        assert exc.status == 502
        return
    json.loads(out)


ANTHROPIC = load("structured_request__anthropic")


@pytest.mark.parametrize("case", ANTHROPIC["cases"], ids=[c["doc"] for c in ANTHROPIC["cases"]])
def test_messages_output_formats(case):
    from gateway.translate import anthropic

    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **case["extra"]}
    if "error" in case:
        with pytest.raises(InvalidRequest) as info:
            anthropic.parse_request(body, default_stream=False, default_thinking=False)
        assert info.value.message.startswith(case["error"])
        return
    req = anthropic.parse_request(body, default_stream=False, default_thinking=False)
    if case["param"] is None:
        assert not req.output_format.active
    else:
        assert req.output_format.kind == "json_schema" and req.output_format.param == case["param"]
        assert SCHEMA_LINE in flatten(req)


def test_a_cached_schema_verdict_refuses_the_same_bad_schema_every_time():
    raw = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integr"}}}
    for _ in range(2):
        with pytest.raises(InvalidRequest) as info:
            _fmt(raw)
        assert info.value.code == "invalid_json_schema" and "'integr'" in info.value.message
    good = {"type": "json_schema", "json_schema": {"name": "y", "schema": {"type": "object"}}}
    assert _fmt(good).schema == _fmt(good).schema == {"type": "object"}
