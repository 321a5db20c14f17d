"""Short forms of messages shown to the operator (import reports, account reasons, admin lists)."""
from __future__ import annotations

import re
import textwrap

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def text_clip(text: str, limit: int) -> str:
    """`text` on one line if it fits in `limit` characters, else as many whole sentences as fit.

    A first sentence longer than `limit` is shortened at a word boundary and ends with "…", so a
    message never stops in the middle of a word or without saying it was shortened.
    """
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        longer = f"{kept} {sentence}" if kept else sentence
        if len(longer) > limit:
            break
        kept = longer
    return kept or textwrap.shorten(text, width=limit, placeholder=" …")
