"""max_tokens and stop sequences (gateway/translate/limits.py) through TurnAssembler, as all three encoders see them."""
from __future__ import annotations

import pytest

from gateway.translate import anthropic, openai_chat, responses
from gateway.translate.assembler import TextPiece, TurnAssembler
from gateway.translate.limits import OutputLimit
from gateway.translate.tokens import count_tokens, usage_for
from grokweb.events import AnswerDelta, ThinkingDelta

ANSWER = "The quick brown fox jumps over the lazy dog. Then it sleeps under the old oak tree until dawn."


def run(tokens, **limits):
    asm = TurnAssembler(**limits)
    pieces = []
    for token in tokens:
        pieces += asm.feed(AnswerDelta(token))
    pieces += asm.finish()
    streamed = "".join(p.text for p in pieces if isinstance(p, TextPiece))
    assert streamed == asm.result.text, "what streams is what the non-stream body says"
    return asm


def splits(text, size):
    return [text[i:i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 40, 200])
def test_it_cuts_at_the_first_stop_sequence_whatever_the_token_boundaries(size):
    asm = run(splits(ANSWER, size), stop=("lazy dog", "oak"))
    assert asm.result.text == "The quick brown fox jumps over the "
    assert asm.result.finish_reason == "stop" and asm.result.stop_sequence == "lazy dog"
    assert asm.done


def test_the_earliest_match_wins_over_the_order_of_the_list():
    asm = run([ANSWER], stop=("oak", "fox"))
    assert asm.result.text == "The quick brown " and asm.result.stop_sequence == "fox"


def test_a_stream_holds_back_only_a_possible_start_of_a_sequence():
    asm = TurnAssembler(stop=("END!",))
    assert asm.feed(AnswerDelta("abc ")) == [TextPiece("abc ")]
    assert asm.feed(AnswerDelta("xyz E")) == [TextPiece("xyz ")]  # "E" may start "END!"
    assert asm.feed(AnswerDelta("ND")) == []
    assert asm.feed(AnswerDelta(" no")) == [TextPiece("END no")]
    assert asm.finish() == [] and asm.result.text == "abc xyz END no"
    assert asm.result.finish_reason == "stop" and asm.result.stop_sequence is None


def test_a_held_back_tail_is_released_at_the_end():
    asm = run(["abc", " E"], stop=("END!",))
    assert asm.result.text == "abc E" and asm.result.stop_sequence is None and not asm.done


@pytest.mark.parametrize("limit", [1, 3, 10, 19])
@pytest.mark.parametrize("size", [1, 4, 500])
def test_it_stops_the_answer_at_max_tokens(limit, size):
    asm = run(splits(ANSWER, size), max_tokens=limit)
    text = asm.result.text
    assert ANSWER.startswith(text) and 0 < count_tokens(text) <= limit
    assert count_tokens(text) >= limit - 1, "nearly the whole budget is used"
    assert asm.result.finish_reason == "length" and asm.done
    assert usage_for(prompt_tokens=5, result=asm.result).completion_tokens <= limit


def test_an_answer_within_max_tokens_is_untouched():
    asm = run(splits(ANSWER, 6), max_tokens=count_tokens(ANSWER))
    assert asm.result.text == ANSWER and asm.result.finish_reason == "stop" and not asm.done


def test_reasoning_counts_against_max_tokens():
    asm = TurnAssembler(max_tokens=6, show_reasoning=True)
    asm.feed(ThinkingDelta("one two three four", tag="analysis"))
    for token in splits(ANSWER, 5):
        asm.feed(AnswerDelta(token))
    asm.finish()
    usage = usage_for(prompt_tokens=1, result=asm.result)
    assert usage.reasoning_tokens > 0 and usage.completion_tokens <= 6
    assert asm.result.finish_reason == "length"


def test_the_three_families_report_the_cut():
    length = run([ANSWER], max_tokens=3).result
    stopped = run([ANSWER], stop=("fox",)).result
    assert openai_chat.body(result=length, model="m", prompt_tokens=1)["choices"][0]["finish_reason"] == "length"
    assert openai_chat.body(result=stopped, model="m", prompt_tokens=1)["choices"][0]["finish_reason"] == "stop"
    r = responses.body(result=length, model="m", prompt_tokens=1)
    assert r["status"] == "incomplete" and r["incomplete_details"] == {"reason": "max_output_tokens"}
    assert r["output"][0]["status"] == "incomplete" and r["output"][0]["content"][0]["text"] == length.text
    assert responses.body(result=stopped, model="m", prompt_tokens=1)["status"] == "completed"
    a = anthropic.body(result=length, model="m", prompt_tokens=1)
    assert (a["stop_reason"], a["stop_sequence"]) == ("max_tokens", None)
    a = anthropic.body(result=stopped, model="m", prompt_tokens=1)
    assert (a["stop_reason"], a["stop_sequence"]) == ("stop_sequence", "fox")


def test_a_limit_that_is_never_reached_changes_nothing():
    limit = OutputLimit(max_tokens=1000, stop=("zzz",))
    assert limit.text("abc z") == "abc " and limit.flush() == "z" and limit.reason is None
