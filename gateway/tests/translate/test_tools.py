"""Function-tool emulation: the prompt per tool_choice, parsing of every format, the streaming sieve."""
from __future__ import annotations

import pytest

from gateway.translate.common import ToolCall, ToolChoice, ToolSpec
from gateway.translate.tools import ToolSieve, calls_to_xml, parse_tool_calls, tool_prompt
from gateway.tests.translate.helpers import Ids, load

FORMATS = load("tool_calls__formats")
CASES = FORMATS["cases"]
ALLOWED = FORMATS["tools"]


def run_sieve(chunks: list[str]) -> tuple[list[dict], str, int]:
    sieve = ToolSieve(allowed=ALLOWED, ids=Ids())
    items = []
    for chunk in chunks:
        items += sieve.feed(chunk)
    items += sieve.finish()
    calls = [c for item in items if not isinstance(item, str) for c in item]
    text = "".join(item for item in items if isinstance(item, str))
    batches = sum(1 for item in items if not isinstance(item, str))
    return [{"name": c.name, "arguments": c.arguments} for c in calls], text, batches


@pytest.mark.parametrize("case", CASES, ids=[c["doc"] for c in CASES])
def test_the_sieve_finds_calls_in_one_chunk(case):
    calls, text, batches = run_sieve([case["text"]])
    assert calls == case["calls"]
    assert text == case["released"]
    assert batches == (1 if case["calls"] else 0)


@pytest.mark.parametrize("case", CASES, ids=[c["doc"] for c in CASES])
def test_the_sieve_is_independent_of_chunk_boundaries(case):
    """Split the answer at every position (two chunks) and into single characters: same outcome."""
    text = case["text"]
    for cut in range(1, len(text)):
        assert run_sieve([text[:cut], text[cut:]])[:2] == (case["calls"], case["released"]), cut
    assert run_sieve(list(text))[:2] == (case["calls"], case["released"])


def test_the_sieve_forwards_plain_text_at_once_and_holds_only_a_possible_tag_prefix():
    sieve = ToolSieve(allowed=ALLOWED)
    assert sieve.feed("Hello") == ["Hello"]
    assert sieve.feed(" world <tool_c") == [" world "]
    assert sieve.feed("ute it") == ["<tool_cute it"]
    assert sieve.feed(" ``") == [" "]
    assert sieve.feed("x") == ["``x"]
    assert sieve.finish() == []


def test_parsed_calls_get_ids_of_the_documented_shape_and_compact_arguments():
    calls = parse_tool_calls('<tool_calls><tool_call><tool_name>f</tool_name><parameters>{ "a" : [1, 2] }'
                             "</parameters></tool_call></tool_calls>", allowed=["f"])
    assert len(calls) == 1 and calls[0].arguments == '{"a":[1,2]}'
    call_id = calls[0].id
    assert call_id.startswith("call_") and len(call_id) == 5 + 13 + 6
    int(call_id[5:], 16)


def test_history_calls_serialise_to_the_prompted_xml_and_parse_back():
    xml = calls_to_xml([ToolCall("call_1", "f", '{ "x": 1 }'), ToolCall("call_2", "g", "")])
    assert xml == ("<tool_calls>\n  <tool_call>\n    <tool_name>f</tool_name>\n    <parameters>{\"x\":1}</parameters>\n"
                   "  </tool_call>\n  <tool_call>\n    <tool_name>g</tool_name>\n    <parameters>{}</parameters>\n"
                   "  </tool_call>\n</tool_calls>")
    assert [(c.name, c.arguments) for c in parse_tool_calls(xml, allowed=["f", "g"])] == [("f", '{"x":1}'), ("g", "{}")]


TOOLS = [ToolSpec("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}}),
         ToolSpec("get_time", "", {})]


def test_the_tool_prompt_lists_every_tool_with_its_schema_on_one_line():
    prompt = tool_prompt(TOOLS, ToolChoice())
    assert "AVAILABLE TOOLS:" in prompt
    assert ("Tool: get_weather\nDescription: Weather for a city\n"
            'Parameters: {"type":"object","properties":{"city":{"type":"string"}}}') in prompt
    assert "Tool: get_time\n" in prompt
    assert "<tool_calls>\n  <tool_call>\n    <tool_name>TOOL_NAME</tool_name>" in prompt
    assert "```" in prompt and "WRONG" in prompt  # the counter-example


@pytest.mark.parametrize("choice,needle", [
    (ToolChoice("auto"), "only when the request clearly needs it"),
    (ToolChoice("required"), "You MUST answer with a <tool_calls> block"),
    (ToolChoice("function", "get_time"), "You MUST call the tool `get_time` now"),
])
def test_the_when_to_call_rule_follows_tool_choice(choice, needle):
    prompt = tool_prompt(TOOLS, choice)
    when = prompt[prompt.index("WHEN TO CALL:"):]
    assert needle in when
    assert "even if you believe you cannot fulfil the request" in when


def test_a_model_answer_with_arguments_nested_past_the_json_bound_is_dropped_not_raised():
    # orjson reads 1024 levels but writes only 255: such arguments used to raise while re-serialising.
    deep = "[" * 300 + "]" * 300
    calls = parse_tool_calls(f"<tool_calls><tool_call><tool_name>f</tool_name><parameters>{{\"a\": {deep}}}"
                             "</parameters></tool_call></tool_calls>", allowed=["f"])
    assert calls == []  # arguments that cannot be a bounded JSON object drop the call, as unparsable ones do
    assert calls_to_xml([ToolCall("call_1", "f", deep)]).count("[") == 300  # replayed verbatim
