"""E1/E2 chat streams of the simulator over a real socket: line order, modes, directives, determinism."""
from __future__ import annotations

import json
import re

import httpx
import pytest

from .helpers import CHAT, answer_text, call, chat, kinds, lines, model_response, responses

TOKEN = "sim-super-chat1"


def _collapse(seq: list[str]) -> list[str]:
    out: list[str] = []
    for k in seq:
        if k == "keepalive":
            continue
        if not out or out[-1] != k:
            out.append(k)
    return out


def test_plain_fast_chat_follows_the_observed_line_order(sim):
    resp = chat(sim, TOKEN, "[user]: Say hi in five words.")
    assert resp.status_code == 200
    objs = lines(resp)
    assert _collapse(kinds(objs)) == [
        "conversation", "userResponse", "uiLayout:SPLIT", "llmInfo", "uiLayout:FUNCTION_CALL",
        "token", "softStop", "modelResponse", "title",
    ]
    user = responses(objs)[0]["userResponse"]
    assert user["message"] == "[user]: Say hi in five words." and user["sender"] == "human"
    mr = model_response(objs)
    assert mr["message"] == answer_text(objs) and mr["message"]
    assert mr["parentResponseId"] == user["responseId"]
    assert mr["streamErrors"] == []
    assert mr["metadata"]["request_metadata"] == {"effort": "low", "mode": "fast", "model": "grok-3"}
    assert mr["requestMetadata"]["mode"] == "MODEL_MODE_FAST"
    assert objs[-1]["result"]["title"]["newTitle"]


def test_answer_tokens_are_a_few_characters_and_keepalives_are_interleaved(sim):
    objs = lines(chat(sim, TOKEN, "[user]: tell me a long story #sim:len=60"))
    toks = [r["token"] for r in responses(objs) if r.get("messageTag") == "final" and r.get("token")]
    assert len(toks) == 60
    assert max(len(t) for t in toks) <= 16
    assert "keepalive" in kinds(objs)


def test_expert_mode_thinks_with_header_and_summary_lines(sim):
    objs = lines(chat(sim, TOKEN, "[user]: Is 1001 prime?", mode="expert"))
    thinking = [r for r in responses(objs) if r.get("isThinking")]
    tags = {r["messageTag"] for r in thinking}
    assert tags == {"header", "summary"}
    assert all(r["token"].startswith("- ") for r in thinking if r["messageTag"] == "summary")
    assert all("messageStepId" in r for r in thinking)
    order = _collapse(kinds(objs))
    assert order.index("thinking") < order.index("token")
    assert model_response(objs)["metadata"]["request_metadata"]["mode"] == "expert"


def test_heavy_mode_switches_between_four_agents(sim):
    objs = lines(chat(sim, "sim-heavy-h1", "[user]: plan a trip", mode="heavy"))
    agents = [r.get("rolloutId") for r in responses(objs) if r.get("isThinking")]
    assert set(agents) == {"Agent 1", "Agent 2", "Agent 3", "Agent 4"}
    switches = sum(1 for a, b in zip(agents, agents[1:]) if a != b)
    assert switches >= 3


def test_fast_mode_never_thinks_and_auto_thinks_on_demand(sim):
    fast = lines(chat(sim, TOKEN, "[user]: anything #sim:think", mode="fast"))
    assert not [r for r in responses(fast) if r.get("isThinking")]
    forced = lines(chat(sim, TOKEN, "[user]: anything #sim:think", mode="auto"))
    assert [r for r in responses(forced) if r.get("isThinking")]
    # auto decides per prompt, deterministically: some prompts think, some do not.
    decisions = set()
    for i in range(12):
        objs = lines(chat(sim, TOKEN, f"[user]: question number {i}", mode="auto"))
        decisions.add(any(r.get("isThinking") for r in responses(objs)))
    assert decisions == {True, False}


def test_search_directive_sends_tool_card_results_and_citation_cards_before_their_render_tags(sim):
    objs = lines(chat(sim, TOKEN, "[user]: latest python release #sim:search", mode="auto"))
    rs = responses(objs)
    card = next(r for r in rs if r.get("messageTag") == "tool_usage_card")
    assert card["token"].startswith("<xai:tool_usage_card>") and "<xai:tool_name>web_search</xai:tool_name>" in card["token"]
    assert card["toolUsageCard"]["webSearch"]["args"]["query"]
    result = next(r for r in rs if r.get("messageTag") == "raw_function_result")
    urls = [x["url"] for x in result["webSearchResults"]["results"]]
    assert all(re.match(r"https://[a-z.]*example\.(com|org|net)/", u) for u in urls)
    seen_cards = set()
    tags_checked = 0
    for r in rs:
        if "cardAttachment" in r:
            seen_cards.add(json.loads(r["cardAttachment"]["jsonData"])["id"])
        for cid in re.findall(r'<grok:render card_id="([^"]+)"[^>]*type="render_inline_citation"', r.get("token", "")):
            assert cid in seen_cards, "citation card must arrive before its render tag"
            tags_checked += 1
    assert tags_checked == 2
    mr = model_response(objs)
    assert "render_inline_citation" in mr["message"]
    assert len(mr["cardAttachmentsJson"]) == 2 and mr["webSearchResults"]
    assert mr["steps"][0]["toolUsageCards"][0]["webSearch"]


def test_xsearch_code_browse_and_searched_images_produce_their_line_kinds(sim):
    objs = lines(chat(sim, TOKEN, "[user]: news #sim:xsearch #sim:code #sim:browse #sim:searchimages", mode="auto"))
    rs = responses(objs)
    names = re.findall(r"<xai:tool_name>(\w+)</xai:tool_name>", "".join(r.get("token", "") for r in rs))
    assert names == ["x_search", "browse_page", "code_execution", "search_images"]
    assert any("xSearchResults" in r for r in rs)
    assert any(r.get("codeExecutionResult", {}).get("stdout") == "42\n" for r in rs)
    assert any("toolUsageCardId" in r and "toolUsageCard" not in r and r.get("messageTag") is None for r in rs)
    cards = [json.loads(r["cardAttachment"]["jsonData"]) for r in rs if "cardAttachment" in r]
    searched = next(c for c in cards if c["type"] == "render_searched_image")
    image = httpx.get(searched["image"]["original"])
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    assert model_response(objs)["xposts"]


def test_raw_thinking_uses_analysis_and_untagged_fragments(sim):
    objs = lines(chat(sim, TOKEN, "[user]: why #sim:rawthink", mode="expert"))
    thinking = [r for r in responses(objs) if r.get("isThinking")]
    assert any(r.get("messageTag") == "analysis" for r in thinking)
    assert any("messageTag" not in r for r in thinking)


TOOL_PROMPT = (
    "[system]: You have access to the following tools.\nAVAILABLE TOOLS:\n\n"
    "Tool: get_weather\nDescription: weather for a city\n"
    'Parameters: {"type":"object","properties":{"city":{"type":"string","minLength":3},'
    '"unit":{"type":"string","enum":["c","f"]},"days":{"type":"integer","minimum":1,"maximum":7},'
    '"detailed":{"type":"boolean"},"tags":{"type":"array","items":{"type":"string"}},"note":{"type":"string"}},'
    '"required":["city","unit","days","detailed","tags"]}\n\n'
    "Tool: lookup\nDescription: lookup\nParameters: {\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}}}\n\n"
)


def _calls(text: str) -> list[tuple[str, dict]]:
    return [(n, json.loads(p)) for n, p in re.findall(
        r"<tool_name>(.*?)</tool_name>\s*<parameters>(.*?)</parameters>", text, re.S)]


def test_tool_directive_answers_with_canonical_xml_and_schema_valid_arguments(sim):
    objs = lines(chat(sim, TOKEN, TOOL_PROMPT + "[user]: weather in Paris? #sim:tool=get_weather"))
    text = answer_text(objs)
    assert text.startswith("<tool_calls>") and text.endswith("</tool_calls>")
    ((name, args),) = _calls(text)
    assert name == "get_weather"
    assert args["unit"] in ("c", "f") and len(args["city"]) >= 3
    assert isinstance(args["days"], int) and 1 <= args["days"] <= 7
    assert args["detailed"] is True and isinstance(args["tags"], list)
    assert "note" not in args  # optional properties are left out, as a model would
    assert len([r for r in responses(objs) if r.get("messageTag") == "final"]) > 3  # streamed in pieces


def test_tool_format_deviations_for_parser_fallbacks(sim):
    fenced = answer_text(lines(chat(sim, TOKEN, TOOL_PROMPT + "[user]: x #sim:tool=lookup #sim:tool-fenced")))
    assert "```xml" in fenced and "I'll call the tool now." in fenced and _calls(fenced)[0][0] == "lookup"
    as_json = json.loads(answer_text(lines(chat(sim, TOKEN, TOOL_PROMPT + "[user]: x #sim:tool-json"))))
    assert as_json["tool_calls"][0]["name"] == "get_weather"
    prose = answer_text(lines(chat(sim, TOKEN, TOOL_PROMPT + "[user]: x #sim:tool=lookup #sim:tool-prose")))
    assert not prose.startswith("<") and "<tool_calls>" in prose and not prose.endswith(">")


def test_tool_result_turn_gets_a_text_answer(sim):
    history = (TOOL_PROMPT + "[user]: weather? #sim:tool=get_weather\n\n[assistant]:\n<tool_calls>…</tool_calls>\n\n"
               "[tool result for call_1]:\nsunny, 21C")
    text = answer_text(lines(chat(sim, TOKEN, history)))
    assert "<tool_calls>" not in text and "sunny, 21C" in text


def test_gap_directive_omits_a_token_that_model_response_still_has(sim):
    objs = lines(chat(sim, TOKEN, "[user]: hello #sim:gap #sim:len=10"))
    streamed = answer_text(objs)
    full = model_response(objs)["message"]
    assert len(streamed) < len(full)
    assert sorted(streamed) != sorted(full)


def test_untagged_directive_sends_final_tokens_without_message_tag(sim):
    objs = lines(chat(sim, TOKEN, "[user]: hello #sim:untagged"))
    toks = [r for r in responses(objs) if r.get("token") and not r.get("isThinking")]
    assert toks and all("messageTag" not in r for r in toks)


def test_drawing_message_produces_two_images_with_preview_and_final_chunks(sim):
    objs = lines(chat(sim, TOKEN, "Drawing: a red apple on a wooden table", imageGenerationCount=2))
    rs = responses(objs)
    cards = [json.loads(r["cardAttachment"]["jsonData"]) for r in rs if "cardAttachment" in r]
    assert [c["image_chunk"] and c["image_chunk"]["progress"] for c in cards] == [None, 50, 100, None, 50, 100]
    assert len({c["id"] for c in cards}) == 2
    finals = [c["image_chunk"] for c in cards if c["image_chunk"] and c["image_chunk"]["progress"] == 100]
    assert [f["imageIndex"] for f in finals] == [0, 1] and all(f["moderated"] is False for f in finals)
    assert all("-part-0" in c["image_chunk"]["imageUrl"] for c in cards if c["image_chunk"] and c["image_chunk"]["progress"] == 50)
    mr = model_response(objs)
    assert mr["generatedImageUrls"] == [f["imageUrl"] for f in finals]
    assert 'type="render_file"' in mr["message"]
    for url in mr["generatedImageUrls"]:
        got = call(sim, "GET", "/" + url, TOKEN)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg" and got.content[:2] == b"\xff\xd8"
    # Lite images charge the fast window even when sent with another mode.
    assert sim.sim.quotas(TOKEN)["modes"]["fast"]["remaining"] == 139


def test_moderate_token_marks_images_moderated_and_serves_no_final(sim):
    objs = lines(chat(sim, TOKEN + "~moderate", "[user]: cat #sim:image"))
    cards = [json.loads(r["cardAttachment"]["jsonData"]) for r in responses(objs) if "cardAttachment" in r]
    finals = [c["image_chunk"] for c in cards if c["image_chunk"] and c["image_chunk"]["progress"] == 100]
    assert finals and all(f["moderated"] for f in finals)
    assert model_response(objs)["generatedImageUrls"] == []


def test_same_seed_and_requests_give_identical_streams(sim):
    first = chat(sim, TOKEN, "[user]: determinism please #sim:search", mode="expert").content
    sim.reset()
    again = chat(sim, TOKEN, "[user]: determinism please #sim:search", mode="expert").content
    assert first == again
    sim.sim.reset(seed=99)
    other = chat(sim, TOKEN, "[user]: determinism please #sim:search", mode="expert").content
    assert other != first


def test_follow_up_endpoint_uses_the_flat_wrapper_without_conversation_header(sim):
    resp = call(sim, "POST", "/rest/app-chat/conversations/abc/responses", TOKEN,
                json={"message": "[user]: more", "modeId": "fast", "parentResponseId": "x"})
    objs = lines(resp)
    assert all("conversation" not in o["result"] and "response" not in o["result"] for o in objs)
    assert any("modelResponse" in o["result"] for o in objs)


def test_chat_requires_a_message_and_a_known_mode(sim):
    assert call(sim, "POST", CHAT, TOKEN, json={"modeId": "fast"}).status_code == 400
    bad = call(sim, "POST", CHAT, TOKEN, json={"message": "hi", "modeId": "turbo"})
    assert bad.status_code == 400 and "turbo" in bad.json()["error"]["message"]
    assert call(sim, "POST", CHAT, TOKEN, content=b"{nope", headers={"content-type": "application/json"}).status_code == 400


@pytest.mark.parametrize("payload, mode", [
    ({"modelName": "grok-3", "modelMode": "MODEL_MODE_FAST"}, "fast"),
    ({"modelMode": "MODEL_MODE_EXPERT"}, "expert"),
    ({"modelName": "grok-420"}, "grok-420-computer-use-sa"),
    ({}, "auto"),
])
def test_older_model_name_and_mode_fields_select_the_mode(sim, payload, mode):
    resp = call(sim, "POST", CHAT, TOKEN, json={"message": "[user]: hi", **payload, "unknownField": 1})
    assert model_response(lines(resp))["metadata"]["request_metadata"]["mode"] == mode


@pytest.mark.parametrize("knob, expected", [("empty", {}), ("nonempty", {"followUpSuggestions": ["Tell me more"], "done": True})])
def test_final_metadata_knob(sim, knob, expected):
    sim.sim.configure(final_metadata=knob)
    objs = lines(chat(sim, TOKEN, "[user]: hi"))
    fm = [r["finalMetadata"] for r in responses(objs) if "finalMetadata" in r]
    assert fm == [expected]
    order = _collapse(kinds(objs))
    assert order.index("softStop") < order.index("finalMetadata") < order.index("modelResponse")


def test_say_directive_answers_exactly_its_text(sim):
    objs = lines(chat(sim, TOKEN, "[user]: show it #sim:say=![x](http://127.0.0.2:1/pixel)"))
    assert answer_text(objs) == "![x](http://127.0.0.2:1/pixel)"


def test_search_directive_with_a_url_puts_it_first_in_the_results(sim):
    objs = lines(chat(sim, TOKEN, "[user]: look #sim:search=javascript:alert(1)", mode="auto"))
    result = next(r for r in responses(objs) if r.get("messageTag") == "raw_function_result")
    assert result["webSearchResults"]["results"][0]["url"] == "javascript:alert(1)"
    cards = [json.loads(r["cardAttachment"]["jsonData"]) for r in responses(objs) if "cardAttachment" in r]
    assert cards[0]["url"] == "javascript:alert(1)"
