"""TurnAssembler behaviour from fixture files chat_stream__<variant>.json (events in, pieces/result out)."""
from __future__ import annotations

import pytest

from gateway.translate.assembler import ReasoningPiece, TextPiece, ToolCallsPiece, TurnAssembler
from gateway.translate.common import ToolChoice, ToolSpec
from gateway.tests.translate.helpers import Ids, events_of, fixture_names, load


def run_fixture(fx: dict, **overrides):
    tools = [ToolSpec(t["name"], t.get("description", ""), t.get("parameters", {})) for t in fx.get("tools", [])]
    choice = ToolChoice(**fx["tool_choice"]) if "tool_choice" in fx else None
    kwargs = {"ids": Ids(), **fx.get("options", {}), **overrides}
    asm = TurnAssembler(tools=tools, tool_choice=choice, **kwargs)
    pieces = []
    for event in events_of(fx):
        pieces += asm.feed(event)
    pieces += asm.finish()
    return asm, pieces


STREAMS = fixture_names("chat_stream")


@pytest.mark.parametrize("name", STREAMS)
def test_it_assembles_the_fixture_stream(name):
    fx = load(name)
    asm, pieces = run_fixture(fx)
    exp = fx["expect"]
    res = asm.result
    if "text" in exp:
        assert res.text == exp["text"]
    if "reasoning" in exp:
        assert res.reasoning == exp["reasoning"]
    if "text_pieces" in exp:
        assert [p.text for p in pieces if isinstance(p, TextPiece)] == exp["text_pieces"]
    if "reasoning_pieces" in exp:
        assert [p.text for p in pieces if isinstance(p, ReasoningPiece)] == exp["reasoning_pieces"]
    if "tool_calls" in exp:
        assert [{"name": c.name, "arguments": c.arguments} for c in res.tool_calls] == exp["tool_calls"]
    if "annotations" in exp:
        assert res.annotations == exp["annotations"]
    if "search_sources" in exp:
        assert res.search_sources == exp["search_sources"]
    if "finish_reason" in exp:
        assert res.finish_reason == exp["finish_reason"]
    # the streamed text is exactly the result text, and annotations point at citation links in it
    assert "".join(p.text for p in pieces if isinstance(p, TextPiece)) == res.text
    for a in res.annotations:
        assert res.text[a["start_index"]:a["end_index"]] .startswith(" [[")
        assert res.text[a["start_index"]:a["end_index"]].endswith(f"]({a['url']})")


def test_it_marks_the_turn_started_only_when_something_visible_was_produced():
    fx = load("chat_stream__plain")
    asm = TurnAssembler()
    assert asm.feed(events_of(fx)[0]) == [] and not asm.started
    asm.feed(events_of(fx)[1])
    assert asm.started


def test_it_emits_tool_calls_once_with_ids_of_the_documented_shape():
    fx = load("chat_stream__tool_call")
    asm, pieces = run_fixture(fx, ids=None)
    calls = [p for p in pieces if isinstance(p, ToolCallsPiece)]
    assert len(calls) == 1
    for call in calls[0].calls:
        assert call.id.startswith("call_") and len(call.id) == len("call_") + 13 + 6
        int(call.id[5:], 16)


def test_it_uses_service_supplied_local_urls_for_local_and_base64_formats():
    fx = load("chat_stream__image_lite")
    url = "https://assets.grok.com/users/0a1b/generated/48b4/image.jpg"
    for fmt, expected in [
        ("local_url", "/v1/files/image?id=48b4"),
        ("local_md", "![image 1](/v1/files/image?id=48b4)"),
        ("base64", "![image 1](data:image/jpeg;base64,AAAA)"),
        ("grok_url", url),
    ]:
        asm = TurnAssembler(image_format=fmt)
        for event in events_of(fx):
            asm.feed(event)
        mapped = "data:image/jpeg;base64,AAAA" if fmt == "base64" else "/v1/files/image?id=48b4"
        asm.finish(media_urls={url: mapped})
        assert asm.result.text.endswith("\n\n" + expected), fmt
        assert [i.url for i in asm.result.images] == [url]


def test_it_formats_videos_as_html_when_asked():
    from grokweb.events import Completed, VideoProgress, VideoResult

    asm = TurnAssembler(video_format="grok_html")
    pieces = asm.feed(VideoProgress("v1", 37))
    assert pieces == [ReasoningPiece("Generating video 37%\n")]
    asm.feed(VideoResult("v1", "https://assets.grok.com/v.mp4", thumbnail_url="https://assets.grok.com/t.jpg"))
    asm.feed(Completed())
    asm.finish()
    assert asm.result.text == '<video controls src="https://assets.grok.com/v.mp4" poster="https://assets.grok.com/t.jpg"></video>'


def test_finish_is_idempotent():
    fx = load("chat_stream__sources_block")
    asm, _ = run_fixture(fx)
    assert asm.finish() == []


# --------------------------------------------------------------------------- forced tool choice


def _forced(choice: ToolChoice, tokens: list[str]):
    from grokweb.events import AnswerDelta

    tools = [ToolSpec("get_weather", "", {}), ToolSpec("get_time", "", {})]
    asm = TurnAssembler(tools=tools, tool_choice=choice, ids=Ids())
    pieces = []
    for token in tokens:
        pieces += asm.feed(AnswerDelta(token))
    return asm, pieces


def test_a_required_tool_choice_never_presents_text_as_the_answer():
    from grokweb.errors import ToolCallMissing

    asm, pieces = _forced(ToolChoice("required"), ["Hello ", "there, no tools today."])
    assert pieces == [] and asm.holding
    with pytest.raises(ToolCallMissing) as info:
        asm.finish()
    assert info.value.status == 502 and info.value.param == "tool_choice"


def test_a_named_tool_choice_drops_calls_to_other_tools():
    from grokweb.errors import ToolCallMissing

    xml = '<tool_calls><tool_call><tool_name>get_time</tool_name><parameters>{"zone":"UTC"}</parameters></tool_call></tool_calls>'
    asm, pieces = _forced(ToolChoice("function", "get_weather"), [xml])
    assert pieces == []
    with pytest.raises(ToolCallMissing, match="get_weather"):
        asm.finish()


def test_text_held_for_a_required_call_is_released_with_the_call():
    xml = '<tool_calls><tool_call><tool_name>get_weather</tool_name><parameters>{"city":"Paris"}</parameters></tool_call></tool_calls>'
    asm, pieces = _forced(ToolChoice("required"), ["Let me check. ", xml])
    pieces += asm.finish()
    assert [type(p) for p in pieces] == [TextPiece, ToolCallsPiece] and pieces[0].text == "Let me check."
    assert asm.result.finish_reason == "tool_calls" and asm.result.tool_calls[0].name == "get_weather"
