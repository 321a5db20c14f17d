"""Render-tag cleaning and citations (docs/upstream-protocol.md §4.6), independent of how tokens are split."""
from __future__ import annotations

from gateway.translate.assembler import TurnAssembler
from gateway.translate.render import RenderCleaner
from grokweb.events import AnswerDelta, Card, Completed, SearchResults, SearchSource
from gateway.tests.translate.helpers import events_of, load

CITE = ('<grok:render card_id="05a0cb" card_type="citation_card" type="render_inline_citation">'
        '<argument name="citation_id">0</argument></grok:render>')
SOURCES = SearchResults((SearchSource("https://www.python.org/downloads/", "Download Python | Python.org", "web"),))
CARD = Card("05a0cb", {"id": "05a0cb", "type": "render_inline_citation", "url": "https://www.python.org/downloads/"})


def test_the_spec_16_3_citation_gets_offsets_50_to_91_for_every_token_split():
    answer = "The latest stable release is listed on python.org." + CITE
    for cut in range(1, len(answer)):
        asm = TurnAssembler()
        asm.feed(SOURCES)
        asm.feed(CARD)
        asm.feed(AnswerDelta(answer[:cut]))
        asm.feed(AnswerDelta(answer[cut:]))
        asm.feed(Completed())
        asm.finish()
        assert asm.result.text == "The latest stable release is listed on python.org. [[1]](https://www.python.org/downloads/)"
        assert asm.result.annotations == [{"url": "https://www.python.org/downloads/",
                                           "title": "Download Python | Python.org", "start_index": 50, "end_index": 91}]


def test_every_fixture_answer_cleans_the_same_when_split_into_characters():
    for name in ("chat_stream__citations", "chat_stream__citation_numbering", "chat_stream__split_render_tag"):
        fx = load(name)
        events = events_of(fx)
        answer = "".join(e.text for e in events if isinstance(e, AnswerDelta))
        others = [e for e in events if not isinstance(e, AnswerDelta)]
        asm = TurnAssembler()
        for e in others[:-1]:
            asm.feed(e)
        for ch in answer:
            asm.feed(AnswerDelta(ch))
        asm.feed(others[-1])
        asm.finish()
        assert asm.result.text == fx["expect"]["text"], name
        if "annotations" in fx["expect"]:
            assert asm.result.annotations == fx["expect"]["annotations"], name


def test_a_card_title_wins_over_search_results_and_unknown_cards_vanish():
    cleaner = RenderCleaner({"c": {"type": "render_inline_citation", "url": "https://u.example", "title": "Card title"}},
                            {"https://u.example": "Search title"})
    out = cleaner.feed("A" + CITE.replace("05a0cb", "c") + CITE + "B")
    assert out == "A [[1]](https://u.example)B"
    assert cleaner.annotations[0]["title"] == "Card title"


def test_an_unterminated_render_tag_is_dropped_at_the_end_and_a_lone_angle_bracket_kept():
    cleaner = RenderCleaner({}, {})
    assert cleaner.feed("x < y and <grok:render card_id=") == "x < y and "
    assert cleaner.finish() == ""
    cleaner = RenderCleaner({}, {})
    assert cleaner.feed("a <") == "a "
    assert cleaner.finish() == "<"


def test_plain_text_passes_straight_through():
    cleaner = RenderCleaner({}, {})
    assert cleaner.feed("no tags here") == "no tags here"
    assert cleaner.pos == len("no tags here")
