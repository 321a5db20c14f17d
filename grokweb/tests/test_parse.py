"""Parser tests from fixture files (grokweb/tests/fixtures/chat__<variant>.ndjson).

Every fixture is also fed in awkward chunk sizes (1, 7, 64 bytes and whole) and must yield the same
events: bytes may split a line, a UTF-8 character or a JSON string anywhere.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx2
import orjson
import pytest

from grokweb.classify import UpstreamError, UpstreamKind
from grokweb.events import (
    AnswerDelta,
    Card,
    Completed,
    Conversation,
    ImageFailed,
    ImageProgress,
    ImageResult,
    KeepAlive,
    SearchResults,
    SearchSource,
    SoftStop,
    ThinkingDelta,
    ToolUsage,
    VideoProgress,
    VideoResult,
)
from grokweb.parse import ChatStreamParser, iter_chat_events, split_objects

FIXTURES = Path(__file__).parent / "fixtures"
ASSETS = "https://assets.sim.test"
USER = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CHUNK_SIZES = (1, 7, 64, None)  # None = the whole body in one feed()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def run(data: bytes, chunk: int | None = None, **kw) -> tuple[list, UpstreamError | None]:
    """Feed `data` in `chunk`-sized pieces, then finish; returns (events, error raised or None)."""
    kw.setdefault("assets_base_url", ASSETS)
    parser = ChatStreamParser(**kw)
    events: list = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    try:
        for piece in pieces:
            events += parser.feed(piece)
            if parser.completed:
                break
        if not parser.completed:
            events += parser.finish()
        parser.check()
    except UpstreamError as exc:
        return events, exc
    return events, None


def without_title(events: list) -> list:
    # Completed.title is filled only when the title line is already buffered in the same feed()
    # (docs/upstream-protocol.md §4.7), so it legitimately depends on chunking; everything else must not.
    return [dataclasses.replace(e, title="") if isinstance(e, Completed) else e for e in events]


def run_all_chunkings(name: str, **kw) -> tuple[list, UpstreamError | None]:
    data = fixture(name)
    whole, whole_err = run(data, None, **kw)
    for size in CHUNK_SIZES[:-1]:
        events, err = run(data, size, **kw)
        assert without_title(events) == without_title(whole), f"chunk size {size} changed the events of {name}"
        assert (err is None) == (whole_err is None)
        if err is not None:
            assert (err.kind, err.status, err.code) == (whole_err.kind, whole_err.status, whole_err.code)
    return whole, whole_err


def of(events: list, cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def answer(events: list) -> str:
    return "".join(e.text for e in of(events, AnswerDelta))


# ---------------------------------------------------------------------------------- transcripts


def test_it_parses_the_plain_chat_transcript_into_answer_deltas_and_completed():
    events, err = run_all_chunkings("chat__plain.ndjson")
    assert err is None
    assert events == [
        Conversation("8f2d6c1a-4b7e-4c3d-9a51-2e6f0b7d9c34"),
        AnswerDelta("Hi"),
        AnswerDelta(" there,"),
        AnswerDelta(" hope you're"),
        AnswerDelta(" well!"),
        SoftStop(),
        Completed(message="Hi there, hope you're well!", title="Friendly Five-Word Greeting"),
    ]


def test_it_never_emits_the_user_echo_ui_layout_or_model_fingerprint():
    events, _ = run_all_chunkings("chat__plain.ndjson")
    assert "Say hi in five words" not in repr(events)
    assert "modelHash" not in repr(events) and "SPLIT" not in repr(events)


def test_it_leaves_completed_title_empty_when_the_title_line_arrives_in_a_later_chunk():
    events, _ = run(fixture("chat__plain.ndjson"), 7)
    assert of(events, Completed)[0].title == ""


def test_it_emits_header_and_summary_thinking_with_step_ids_for_expert_mode():
    events, err = run_all_chunkings("chat__reasoning_expert.ndjson")
    assert err is None
    thinking = of(events, ThinkingDelta)
    assert [(t.tag, t.step_id) for t in thinking] == [("header", 0), ("header", 1), ("summary", 1), ("summary", 1)]
    assert thinking[2].text == "- 1001 is odd and its digit sum is 2, so not divisible by 2 or 3."
    assert not any(t.after_answer for t in thinking)
    assert answer(events) == "No — 1001 = 7 × 11 × 13."
    # all thinking precedes the answer
    assert events.index(thinking[-1]) < events.index(of(events, AnswerDelta)[0])


def test_it_tags_heavy_mode_thinking_with_the_agent_rollout_id():
    events, err = run_all_chunkings("chat__heavy_agents.ndjson")
    assert err is None
    thinking = of(events, ThinkingDelta)
    assert [t.rollout_id for t in thinking if t.tag in ("header", "summary")] == [
        "Agent 1", "Agent 1", "Agent 2", "Agent 3", "Agent 4", "Agent 2"]


def test_it_emits_raw_analysis_and_untagged_thinking_fragments_verbatim():
    events, _ = run_all_chunkings("chat__heavy_agents.ndjson")
    raw = [t for t in of(events, ThinkingDelta) if t.tag in ("analysis", "")]
    assert [(t.text, t.tag) for t in raw] == [("partial wor", "analysis"), ("ds here", "")]


def test_it_marks_thinking_that_arrives_after_the_answer_started():
    events, _ = run_all_chunkings("chat__heavy_agents.ndjson")
    late = [t for t in of(events, ThinkingDelta) if t.after_answer]
    assert [t.text for t in late] == ["- Late thought from Agent 2."]
    assert answer(events) == "Forty-two."


def test_it_reports_web_search_tool_card_sources_and_citation_card():
    events, err = run_all_chunkings("chat__search_citations.ndjson")
    assert err is None
    assert of(events, ToolUsage) == [
        ToolUsage("27b923a2-f399-4402-9d86-cbb4c3629613", "web_search", {"query": "latest Python release"})]
    assert of(events, SearchResults) == [SearchResults((
        SearchSource("https://www.python.org/downloads/", "Download Python | Python.org", "web"),
        SearchSource("https://docs.python.org/3/whatsnew/", "What's New in Python", "web"),
    ))]
    cards = of(events, Card)
    assert cards[0].card_id == "05a0cb" and cards[0].data["url"] == "https://www.python.org/downloads/"
    # render tags stay in the answer text: cleaning them is the translators' job
    assert '<grok:render card_id="05a0cb"' in answer(events)
    # the XML tool-card token is never answer or thinking text
    assert "xai:tool_usage_card" not in repr(of(events, AnswerDelta) + of(events, ThinkingDelta))
    # the card comes before the token that renders it
    assert events.index(cards[0]) < events.index(next(e for e in events if "grok:render" in getattr(e, "text", "")))


def test_it_reads_every_tool_card_kind_and_ignores_card_id_follow_ups_and_raw_results():
    events, err = run_all_chunkings("chat__tool_cards.ndjson")
    assert err is None
    assert [(t.card_id, t.tool_name, t.args, t.after_answer) for t in of(events, ToolUsage)] == [
        ("tc-1", "code_execution", {"code": "print(1)", "language": ""}, False),
        ("tc-2", "browse_page", {"url": "https://example.org/page"}, False),  # repeated card: once
        ("tc-3", "search_images", {"query": "red apples"}, False),
        ("", "x_search", {"query": "from:python"}, False),  # XML-only card, read from the token
        ("tc-5", "web_search", {"query": "late"}, True),
    ]
    assert answer(events) == "Answer"
    assert not of(events, ThinkingDelta) and not of(events, KeepAlive)


def test_it_builds_x_post_sources_and_dedupes_sources_by_url_across_the_stream():
    events, _ = run_all_chunkings("chat__x_search.ndjson")
    sources = [s for r in of(events, SearchResults) for s in r.sources]
    assert sources[0] == SearchSource(
        "https://x.com/ThePSF/status/1790000000000000001",
        "𝕏/@ThePSF: " + "Python 3.14 is out! Download it now from python.org and enjoy the new features."[:50],
        "x_post",
    )
    assert sources[1].url == "https://x.com/gvanrossum/status/1790000000000000002"
    assert [s.url for s in sources] == [
        "https://x.com/ThePSF/status/1790000000000000001",
        "https://x.com/gvanrossum/status/1790000000000000002",
        "https://www.python.org/",
        "https://peps.python.org/pep-0745/",  # only in modelResponse.webSearchResults
    ]
    assert len({s.url for s in sources}) == len(sources)


# ----------------------------------------------------------------------------------------- media


def test_it_turns_lite_image_cards_into_progress_and_an_absolute_final_url():
    events, err = run_all_chunkings("chat__lite_image.ndjson")
    assert err is None
    final = f"{ASSETS}/users/{USER}/generated/48b432d3-5c1e-4f7a-9e2b-6d8c0a1f3e57/image.jpg"
    assert of(events, ImageProgress) == [
        ImageProgress(0, 50, f"{ASSETS}/users/{USER}/generated/48b432d3-5c1e-4f7a-9e2b-6d8c0a1f3e57-part-0/image.jpg")]
    assert of(events, ImageResult) == [ImageResult(final, 0, image_id="48b432d3-5c1e-4f7a-9e2b-6d8c0a1f3e57")]
    # a card with image_chunk null is still a card (translators cache it for the render tag)
    assert of(events, Card)[0].data["image_chunk"] is None
    # generatedImageUrls repeats the same image: no duplicate result
    assert of(events, Completed)[0].generated_image_urls == (
        f"users/{USER}/generated/48b432d3-5c1e-4f7a-9e2b-6d8c0a1f3e57/image.jpg",)


def test_it_reports_moderated_and_failed_lite_images_and_falls_back_to_generated_image_urls():
    events, err = run_all_chunkings("chat__lite_image_moderated.ndjson")
    assert err is None
    results = of(events, ImageResult)
    assert [(r.image_index, r.moderated, r.url.rsplit("/generated/", 1)[-1]) for r in results] == [
        (0, False, "48b432d3-5c1e-4f7a-9e2b-6d8c0a1f3e57/image.jpg"),  # repeated final chunk: once
        (1, True, ""),
        (2, False, "7a7a7a7a-0000-4000-8000-000000000003/image.jpg"),  # only in generatedImageUrls
    ]
    assert of(events, ImageFailed) == [ImageFailed(2, "rate_limit")]
    # numeric-string progress is accepted; invalid card JSON is skipped without failing the stream
    assert [p.progress for p in of(events, ImageProgress)] == [50, 50]
    assert len(of(events, Card)) == 8  # every valid card, including repeats


def test_it_prefers_the_asset_content_url_for_image_edit_results():
    events, err = run_all_chunkings("chat__image_edit.ndjson")
    assert err is None
    assert [(p.image_index, p.progress) for p in of(events, ImageProgress)] == [(0, 50), (1, 50)]
    results = of(events, ImageResult)
    assert [(r.image_index, r.url, r.asset_id) for r in results] == [
        (0, f"{ASSETS}/users/{USER}/a0a0a0a0-0000-4000-8000-00000000000a/content", "a0a0a0a0-0000-4000-8000-00000000000a"),
        (1, f"{ASSETS}/users/{USER}/a1a1a1a1-0000-4000-8000-00000000000b/content", "a1a1a1a1-0000-4000-8000-00000000000b"),
    ]  # generatedImageUrls / fileAttachments repeat them: no duplicates


def test_it_uses_file_attachments_as_the_image_edit_fallback():
    events, err = run_all_chunkings("chat__image_edit_fallback.ndjson")
    assert err is None
    assert of(events, ImageResult) == [ImageResult(
        f"{ASSETS}/users/{USER}/a0a0a0a0-0000-4000-8000-00000000000a/content", 0,
        asset_id="a0a0a0a0-0000-4000-8000-00000000000a")]


def test_it_streams_video_progress_and_the_final_video_url():
    events, err = run_all_chunkings("chat__video.ndjson")
    assert err is None
    vid = "d5f1c0de-0000-4000-8000-0000000000v1"
    assert [p.progress for p in of(events, VideoProgress)] == [1, 5, 13, 22, 29, 38, 46, 57, 95]
    assert of(events, VideoResult) == [VideoResult(
        vid, f"{ASSETS}/users/{USER}/generated/{vid}/generated_video.mp4", asset_id=vid, video_post_id="post-77",
        thumbnail_url=f"{ASSETS}/users/{USER}/generated/{vid}/preview_image.jpg")]
    assert len(of(events, KeepAlive)) == 9  # interleaved empty tokens
    assert answer(events) == "I generated a video"
    assert of(events, Completed)[0].file_attachments == (vid,)


def test_it_reports_a_video_moderated_at_100_without_url():
    events, err = run_all_chunkings("chat__video_moderated.ndjson")
    assert err is None
    assert of(events, VideoResult) == [VideoResult("vm-1", "", moderated=True, video_post_id="vm-1")]


def test_it_builds_the_video_url_from_file_attachments_when_the_final_line_is_missing():
    events, err = run_all_chunkings("chat__video_fallback.ndjson", user_id=USER)
    assert err is None
    assert of(events, VideoResult) == [VideoResult(
        "vf-1", f"{ASSETS}/users/{USER}/vf-asset-1/content", asset_id="vf-asset-1", video_post_id="vf-1")]


# ---------------------------------------------------------------------------------- fill-in rule


def test_it_emits_the_missing_suffix_of_model_response_message_before_completed():
    events, err = run_all_chunkings("chat__gap_fill.ndjson")
    assert err is None
    assert events[-2:] == [AnswerDelta(", friend."), Completed(message="Hi there, friend.", title="Gap")]
    assert answer(events) == "Hi there, friend."


def test_it_emits_the_whole_model_response_message_when_nothing_was_streamed():
    events, _ = run_all_chunkings("chat__message_only.ndjson")
    assert of(events, AnswerDelta) == [AnswerDelta("Only in the model response.")]


def test_it_does_not_repeat_text_when_model_response_matches_the_stream():
    events, _ = run_all_chunkings("chat__plain.ndjson")
    assert answer(events) == "Hi there, hope you're well!"


def test_it_keeps_the_stream_when_model_response_message_is_not_an_extension():
    body = b"\n".join([
        b'{"result":{"response":{"token":"Hello","messageTag":"final"}}}',
        b'{"result":{"response":{"token":"","isSoftStop":true}}}',
        b'{"result":{"response":{"modelResponse":{"message":"Different text","streamErrors":[]}}}}',
    ]) + b"\n"
    events, err = run(body)
    assert err is None and answer(events) == "Hello"
    assert of(events, Completed)[0].message == "Different text"


# ------------------------------------------------------------------------------------ framing


def test_it_accepts_sse_framing_with_event_lines_comments_and_done():
    events, err = run_all_chunkings("chat__sse_framing.ndjson")
    assert err is None
    assert answer(events) == "Hello world"
    assert isinstance(events[-1], Completed)


def test_it_stops_at_done_and_ignores_anything_after_it():
    body = b'data: {"result":{"response":{"token":"A"}}}\n\ndata: {"result":{"response":{"token":"","isSoftStop":true}}}\n\ndata: [DONE]\n\ndata: {"result":{"response":{"token":"B"}}}\n'
    parser = ChatStreamParser(assets_base_url=ASSETS)
    events = parser.feed(body)
    assert parser.done
    events += parser.finish()
    assert answer(events) == "A"
    assert events[-1] == Completed(had_model_response=False)


def test_it_treats_done_before_the_soft_stop_as_truncation():
    events, err = run(b'data: {"result":{"response":{"token":"A"}}}\ndata: [DONE]\n')
    assert answer(events) == "A" and err is not None and err.kind is UpstreamKind.TRUNCATED


def test_it_splits_objects_concatenated_on_one_line_respecting_strings_and_escapes():
    events, err = run_all_chunkings("chat__concatenated.ndjson")
    assert err is None
    assert of(events, AnswerDelta)[:3] == [
        AnswerDelta('a {brace} "quoted" }{ text'), AnswerDelta(' back\\slash \\" end'), AnswerDelta("é漢字🙂")]
    assert of(events, KeepAlive) == [KeepAlive()]
    assert events[-1] == Completed(message=answer(events), title="Concatenated")


def test_split_objects_reports_an_unfinished_trailing_object():
    parts, rest = split_objects(b'data: {"a":"}"}{"b":{"c":"\\\\"}}{"open":"x\\"')
    assert [orjson.loads(p) for p in parts] == [{"a": "}"}, {"b": {"c": "\\"}}]
    assert rest == len(b'data: {"a":"}"}{"b":{"c":"\\\\"}}')


def test_it_accepts_the_flat_wrapper_of_the_follow_up_endpoint():
    events, err = run_all_chunkings("chat__flat_wrapper.ndjson")
    assert err is None
    assert events == [AnswerDelta("P"), SoftStop(), AnswerDelta("ONG2"), Completed(message="PONG2")]


def test_it_accepts_crlf_line_endings_and_a_final_line_without_newline():
    data = fixture("chat__crlf_no_final_newline.ndjson")
    assert b"\r\n" in data and not data.endswith(b"\n")
    events, err = run_all_chunkings("chat__crlf_no_final_newline.ndjson")
    assert err is None
    assert answer(events) == "Windows lines"
    assert events[-1] == Completed(message="Windows lines")


def test_it_splits_utf8_characters_across_chunks_without_damage():
    events, err = run(fixture("chat__reasoning_expert.ndjson"), 1)
    assert err is None and "7 × 11 × 13" in answer(events)


def test_it_emits_untagged_non_thinking_tokens_as_answer_and_ignores_other_tags():
    events, err = run_all_chunkings("chat__untagged_tokens.ndjson")
    assert err is None
    assert answer(events) == "Untagged mixed end"
    assert "IGNORED" not in repr(events[:-1])


def test_it_emits_keep_alives_for_empty_tokens_only():
    events, _ = run(b'{"result":{"response":{"token":"","isThinking":false,"isSoftStop":false,"responseId":"r"}}}\n')
    assert events == [KeepAlive()]
    events, _ = run(b'{"result":{"response":{"token":"","messageTag":"raw_function_result","toolUsageCardId":"t"}}}\n')
    assert events == []


def test_it_ignores_unknown_keys_and_unknown_line_kinds():
    body = b"\n".join([
        b'{"result":{"response":{"token":"A","messageTag":"final","brandNewField":{"x":1}}}}',
        b'{"result":{"somethingNew":{"x":1}}}',
        b'{"unrelated":true}',
        b'{"result":{"response":{"uiLayout":{"reasoningUiLayout":"SPLIT"},"llmInfo":{"modelHash":"x"}}}}',
        b'{"result":{"response":{"token":"","isSoftStop":true}}}',
    ]) + b"\n"
    parser = ChatStreamParser(assets_base_url=ASSETS)
    events = parser.feed(body)
    assert events == [AnswerDelta("A"), SoftStop()]
    assert parser.malformed == 0


# ----------------------------------------------------------------------------- stop and truncation


def test_it_treats_empty_final_metadata_as_no_stop_and_non_empty_as_a_soft_stop():
    events, err = run_all_chunkings("chat__final_metadata.ndjson")
    assert err is None
    assert events[1:] == [AnswerDelta("Before"), AnswerDelta(" after"), SoftStop(),
                          Completed(had_model_response=False)]


def test_it_completes_without_model_response_when_eof_follows_the_soft_stop():
    events, err = run_all_chunkings("chat__soft_stop_eof.ndjson")
    assert err is None
    assert events[-1] == Completed(message="", had_model_response=False)


def test_it_raises_truncated_when_the_stream_ends_before_the_soft_stop():
    events, err = run_all_chunkings("chat__truncated.ndjson")
    assert answer(events) == "This answer is cut off"
    assert err is not None and err.kind is UpstreamKind.TRUNCATED
    assert err.status == 502 and err.code == "upstream_protocol_error" and err.retry_elsewhere
    assert "/rest/app-chat/conversations/new" in err.message


def test_it_raises_truncated_for_an_empty_body():
    events, err = run(b"")
    assert events == [] and err.kind is UpstreamKind.TRUNCATED
    assert "before any line" in err.message


def test_it_ignores_lines_after_completed_except_the_title():
    body = fixture("chat__plain.ndjson") + b'{"error":{"code":8,"message":"Too many requests"}}\n'
    parser = ChatStreamParser(assets_base_url=ASSETS)
    events = parser.feed(body)
    parser.check()
    assert parser.completed and isinstance(events[-1], Completed)
    assert parser.title == "Friendly Five-Word Greeting"
    assert parser.finish() == []


# ------------------------------------------------------------------------------ in-band errors


def test_it_raises_a_whole_line_error_as_rate_limited_after_returning_earlier_events():
    events, err = run_all_chunkings("chat__inband_line.ndjson")
    assert answer(events) == "Hel"  # the token after the error is never emitted
    assert err.kind is UpstreamKind.RATE_LIMITED and err.status == 429 and err.code == "rate_limit_exceeded"
    assert err.upstream_status is None and err.retry_elsewhere and err.detail == "Too many requests"


def test_it_raises_a_response_level_usage_limit_error_as_quota_exhausted():
    events, err = run_all_chunkings("chat__inband_response.ndjson")
    assert err.kind is UpstreamKind.QUOTA_EXHAUSTED and err.status == 429
    assert "usage limit" in err.detail


def test_it_raises_stream_errors_of_model_response_instead_of_completing():
    events, err = run_all_chunkings("chat__stream_errors.ndjson")
    assert not of(events, Completed)
    assert err.kind is UpstreamKind.RATE_LIMITED


def test_it_raises_the_pending_error_on_every_later_call():
    parser = ChatStreamParser(assets_base_url=ASSETS)
    events = parser.feed(fixture("chat__inband_line.ndjson"))
    assert answer(events) == "Hel"
    with pytest.raises(UpstreamError):
        parser.check()
    with pytest.raises(UpstreamError):
        parser.feed(b'{"result":{"response":{"token":"x"}}}\n')
    with pytest.raises(UpstreamError):
        parser.finish()


def test_it_passes_endpoint_and_mode_into_inband_errors():
    parser = ChatStreamParser(assets_base_url=ASSETS, endpoint="/rest/app-chat/conversations/new", mode="expert")
    with pytest.raises(UpstreamError) as info:
        parser.feed(b'{"error":{"code":7,"message":"Request rejected by anti-bot rules.","details":[]}}\n')
    assert info.value.kind is UpstreamKind.ANTI_BOT and info.value.mode == "expert"
    assert info.value.endpoint == "/rest/app-chat/conversations/new"
    assert info.value.retry_elsewhere is False


# ------------------------------------------------------------------------------ malformed input


def test_it_skips_isolated_malformed_lines_and_counts_them():
    parser = ChatStreamParser(assets_base_url=ASSETS)
    events = parser.feed(fixture("chat__malformed.ndjson")) + parser.finish()
    parser.check()
    assert answer(events) == "One two three"
    assert parser.malformed == 4


def test_it_raises_protocol_after_three_consecutive_malformed_lines():
    events, err = run_all_chunkings("chat__malformed_run.ndjson")
    assert answer(events) == "Start"
    assert err.kind is UpstreamKind.PROTOCOL and err.code == "upstream_protocol_error" and err.status == 502
    assert "3 consecutive malformed lines" in err.message


def test_it_honours_a_configured_malformed_limit():
    events, err = run(fixture("chat__malformed.ndjson"), max_malformed=2)
    assert err is not None and err.kind is UpstreamKind.PROTOCOL  # "<html>" then "[1,2,3]" in a row


def test_it_treats_a_non_string_token_as_malformed():
    parser = ChatStreamParser(assets_base_url=ASSETS)
    assert parser.feed(b'{"result":{"response":{"token":{"x":1},"messageTag":"final","cardAttachment":null}}}\n') == []
    assert parser.malformed == 1


# --------------------------------------------------------------------------------- 8 MiB object cap


def _token_line(text_len: int) -> bytes:
    return b'{"result":{"response":{"token":"' + b"a" * text_len + b'","messageTag":"final"}}}'


def test_it_accepts_an_object_just_below_the_8_mib_cap():
    events, err = run(_token_line(7 * 1024 * 1024) + b"\n", 1024 * 1024)
    assert err is not None and err.kind is UpstreamKind.TRUNCATED  # no soft stop, but the token got through
    assert len(answer(events)) == 7 * 1024 * 1024


def test_it_raises_protocol_for_a_complete_line_above_the_8_mib_cap():
    events, err = run(_token_line(9 * 1024 * 1024) + b"\n")
    assert events == [] and err.kind is UpstreamKind.PROTOCOL
    assert "exceeded 8388608 bytes" in err.message


def test_it_raises_protocol_while_an_unterminated_object_grows_past_the_cap():
    parser = ChatStreamParser(assets_base_url=ASSETS)
    data = _token_line(9 * 1024 * 1024)
    with pytest.raises(UpstreamError) as info:
        for i in range(0, len(data), 1024 * 1024):
            parser.feed(data[i : i + 1024 * 1024])
    assert info.value.kind is UpstreamKind.PROTOCOL
    assert i < len(data) - 1024 * 1024  # raised before the body ended


def test_it_extracts_concatenated_objects_from_a_long_line_without_newlines():
    body = _token_line(3 * 1024 * 1024) * 3 + b'{"result":{"response":{"token":"","isSoftStop":true}}}'
    events, err = run(body, 512 * 1024)
    assert err is None
    assert len(of(events, AnswerDelta)) == 3 and events[-1] == Completed(had_model_response=False)


# --------------------------------------------------------------------------------- iter_chat_events


async def _agen(pieces, consumed: list, closed: list):
    try:
        for piece in pieces:
            consumed.append(piece)
            if isinstance(piece, BaseException):
                raise piece
            yield piece
    finally:
        closed.append(True)


async def test_iter_chat_events_stops_reading_after_completed_and_closes_the_body():
    data = fixture("chat__plain.ndjson")
    pieces = [data, b'{"result":{"response":{"token":"late"}}}\n', b"never read\n"]
    consumed, closed = [], []
    events = [e async for e in iter_chat_events(_agen(pieces, consumed, closed), assets_base_url=ASSETS)]
    assert isinstance(events[-1], Completed) and events[-1].title == "Friendly Five-Word Greeting"
    assert len(consumed) == 1 and closed == [True]


async def test_iter_chat_events_yields_events_before_raising_an_inband_error():
    consumed, closed = [], []
    seen = []
    with pytest.raises(UpstreamError) as info:
        async for event in iter_chat_events(_agen([fixture("chat__inband_line.ndjson")], consumed, closed),
                                            assets_base_url=ASSETS):
            seen.append(event)
    assert answer(seen) == "Hel" and info.value.kind is UpstreamKind.RATE_LIMITED
    assert closed == [True]


async def test_iter_chat_events_classifies_a_connection_reset_mid_stream():
    pieces = [b'{"result":{"response":{"token":"Hi","messageTag":"final"}}}\n', httpx2.ReadError("Connection reset by peer")]
    seen = []
    with pytest.raises(UpstreamError) as info:
        async for event in iter_chat_events(_agen(pieces, [], []), assets_base_url=ASSETS):
            seen.append(event)
    assert seen == [AnswerDelta("Hi")]
    assert info.value.kind is UpstreamKind.TRANSPORT and info.value.status == 502
    assert info.value.code == "upstream_connection_error"


async def test_iter_chat_events_classifies_a_stall_past_the_deadline_as_timeout():
    pieces = [b'{"result":{"response":{"token":"Hi"}}}\n', httpx2.ReadTimeout("timed out")]
    with pytest.raises(UpstreamError) as info:
        async for _ in iter_chat_events(_agen(pieces, [], []), assets_base_url=ASSETS):
            pass
    assert info.value.kind is UpstreamKind.TIMEOUT and info.value.status == 504


async def test_iter_chat_events_raises_truncated_at_eof_before_the_soft_stop():
    with pytest.raises(UpstreamError) as info:
        async for _ in iter_chat_events(_agen([fixture("chat__truncated.ndjson")], [], []), assets_base_url=ASSETS):
            pass
    assert info.value.kind is UpstreamKind.TRUNCATED


async def test_iter_chat_events_parses_a_final_line_without_newline():
    data = fixture("chat__crlf_no_final_newline.ndjson")
    events = [e async for e in iter_chat_events(_agen([data[:50], data[50:]], [], []), assets_base_url=ASSETS)]
    assert events[-1] == Completed(message="Windows lines")


def test_it_tolerates_a_byte_order_mark_before_the_first_line():
    events, err = run(b"\xef\xbb\xbf" + fixture("chat__plain.ndjson"), 1)
    assert err is None and events[0] == Conversation("8f2d6c1a-4b7e-4c3d-9a51-2e6f0b7d9c34")


def test_it_never_emits_text_from_raw_function_result_lines():
    events, _ = run(b'{"result":{"response":{"token":"stdout: 1","isThinking":true,"messageTag":"raw_function_result"}}}\n')
    assert events == []
