"""Output limits shared by the three client families: a token budget (`max_tokens`,
`max_completion_tokens`, `max_output_tokens`) and stop sequences (`stop`, `stop_sequences`).

Grok Web has neither knob, so the gateway enforces both on what it shows the client, streamed or
not, inside TurnAssembler (the one place all three encoders read from):

- The budget counts the visible reasoning and the answer together, with the same o200k_base count
  the usage report uses (tokens.py), so the reported `completion_tokens` never exceeds the limit.
  The text that crosses the limit is cut at a token boundary.
- Stop sequences apply to the answer text. A stream holds back only the tail that could still be
  the start of a sequence (at most the longest sequence minus one character); the first match
  ends the answer, the sequence itself excluded.

Once `reason` is set the answer is over: the service stops reading the upstream stream and closes
it (the account still served the request, so the pool records a success).
"""
from __future__ import annotations

from gateway.translate.tokens import count_tokens, decode_prefix

LENGTH = "length"
STOP_SEQUENCE = "stop_sequence"


class OutputLimit:
    def __init__(self, *, max_tokens: int | None = None, stop: tuple[str, ...] = ()) -> None:
        self.max_tokens = max_tokens
        self.stop = tuple(s for s in stop if s)
        self.reason: str | None = None  # LENGTH | STOP_SEQUENCE once the answer is cut
        self.stop_sequence: str | None = None
        self._reasoning = ""
        self._text = ""
        self._held = ""
        # Sum of the token counts of the pieces let through: never below the exact count of their
        # concatenation in practice, so the exact (whole-text) count is only needed near the limit.
        self._estimate = 0

    @property
    def done(self) -> bool:
        return self.reason is not None

    # ------------------------------------------------------------------ reasoning and text

    def reasoning(self, text: str) -> str:
        """The part of this reasoning text that fits the budget."""
        if self.done or not text:
            return ""
        return self._budget(text, reasoning=True)

    def text(self, text: str) -> str:
        """The part of this answer text to show now (some may be held back for a stop sequence)."""
        if self.done or not text:
            return ""
        if not self.stop:
            return self._budget(text, reasoning=False)
        buf = self._held + text
        self._held = ""
        cut, seq = self._first_match(buf)
        if seq is not None:
            shown = self._budget(buf[:cut], reasoning=False)
            if not self.done:
                self.reason, self.stop_sequence = STOP_SEQUENCE, seq
            return shown
        hold = self._partial_tail(buf)
        self._held = buf[len(buf) - hold:] if hold else ""
        return self._budget(buf[:len(buf) - hold], reasoning=False)

    def flush(self) -> str:
        """At the end of the answer: the held-back tail was no stop sequence after all."""
        held, self._held = self._held, ""
        return self._budget(held, reasoning=False) if held and not self.done else ""

    # ------------------------------------------------------------------ internals

    def _first_match(self, buf: str) -> tuple[int, str | None]:
        best, found = len(buf), None
        for seq in self.stop:
            at = buf.find(seq)
            if at != -1 and (at < best or (at == best and found is not None and len(seq) > len(found))):
                best, found = at, seq
        return best, found

    def _partial_tail(self, buf: str) -> int:
        """Length of the longest tail of `buf` that begins some stop sequence (a match in the making)."""
        longest = 0
        for seq in self.stop:
            for n in range(min(len(seq) - 1, len(buf)), longest, -1):
                if buf.endswith(seq[:n]):
                    longest = n
                    break
        return longest

    def _budget(self, text: str, *, reasoning: bool) -> str:
        if self.max_tokens is None or not text:
            self._keep(text, reasoning)
            return text
        estimate = self._estimate + count_tokens(text)
        if estimate <= self.max_tokens:
            self._estimate = estimate
            self._keep(text, reasoning)
            return text
        mine = (self._reasoning if reasoning else self._text) + text
        other = count_tokens(self._text if reasoning else self._reasoning)
        exact = other + count_tokens(mine)
        if exact <= self.max_tokens:
            self._estimate = exact
            self._keep(text, reasoning)
            return text
        # Over the limit: keep the tokens that fit, cut at a token boundary.
        kept_before = len(mine) - len(text)
        prefix = decode_prefix(mine, max(0, self.max_tokens - other))
        shown = prefix[kept_before:] if len(prefix) > kept_before else ""
        self._keep(shown, reasoning)
        self.reason = LENGTH
        self._held = ""
        return shown

    def _keep(self, text: str, reasoning: bool) -> None:
        if reasoning:
            self._reasoning += text
        else:
            self._text += text
