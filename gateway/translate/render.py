"""Cleaning of Grok's inline render tags into client text (docs/upstream-protocol.md §4.6).

Input: raw answer tokens that may contain (possibly split across tokens)
    <grok:render card_id="05a0cb" card_type="citation_card" type="render_inline_citation">
      <argument name="citation_id">0</argument></grok:render>
plus leftovers of older formats (`<xai:tool_usage_card>…</xai:tool_usage_card>`, `<xaiArtifact …>`).
Output: clean text where an inline citation becomes ` [[n]](url)` (n = order of first appearance
of the URL; a citation repeating the one just emitted collapses), a searched image becomes a
markdown image, generated-image and unknown cards disappear; and `url_citation` annotations with
absolute character offsets into the cleaned text.
"""
from __future__ import annotations

import re
from typing import Any

_RENDER_OPEN = "<grok:render"
_RENDER_CLOSE = "</grok:render>"
_CARD_OPEN = "<xai:tool_usage_card"
_CARD_CLOSE = "</xai:tool_usage_card>"
# Markers that start something to clean; lower-cased for the artifact tags.
_STARTS = (_RENDER_OPEN, _CARD_OPEN, "<xaiartifact", "</xaiartifact")
_ATTR = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def _partial(text: str) -> int:
    tail = text[-24:].lower()
    best = 0
    for marker in _STARTS:
        for n in range(min(len(marker) - 1, len(tail)), best, -1):
            if marker.startswith(tail[-n:]):
                best = n
                break
    return best


class RenderCleaner:
    """Stateful cleaner for one answer. `feed(token) -> str`, `finish() -> str`.

    `cards` is shared with the assembler (filled from Card events); `titles` maps URL → title from
    search results. `annotations` collects url_citation dicts; `pos` is the length of text released.
    """

    __slots__ = ("cards", "titles", "annotations", "pos", "_buf", "_urls", "_last_url", "_since_cite")

    def __init__(self, cards: dict[str, dict[str, Any]], titles: dict[str, str]) -> None:
        self.cards = cards
        self.titles = titles
        self.annotations: list[dict[str, Any]] = []
        self.pos = 0
        self._buf = ""
        self._urls: dict[str, int] = {}
        self._last_url = ""
        self._since_cite = True  # text was released since the last citation

    def feed(self, token: str) -> str:
        if not self._buf and "<" not in token:
            return self._emit(token)
        self._buf += token
        return self._drain(final=False)

    def finish(self) -> str:
        return self._drain(final=True)

    # -- internals

    def _emit(self, text: str) -> str:
        if text:
            self.pos += len(text)
            if not self._since_cite and text.strip():
                self._since_cite = True
        return text

    def _drain(self, *, final: bool) -> str:
        out: list[str] = []
        buf = self._buf
        while buf:
            low = buf.lower()
            at = -1
            which = ""
            for marker in _STARTS:
                i = low.find(marker)
                if i >= 0 and (at < 0 or i < at):
                    at, which = i, marker
            if at < 0:
                keep = 0 if final else _partial(buf)
                out.append(self._emit(buf[: len(buf) - keep]))
                buf = buf[len(buf) - keep:]
                break
            out.append(self._emit(buf[:at]))
            buf = buf[at:]
            if which == _RENDER_OPEN:
                end = buf.find(_RENDER_CLOSE)
                if end < 0:
                    if final:
                        buf = ""  # an unterminated render tag is never shown
                    break
                tag = buf[: end + len(_RENDER_CLOSE)]
                buf = buf[end + len(_RENDER_CLOSE):]
                out.append(self._render(tag))
            elif which == _CARD_OPEN:
                end = buf.find(_CARD_CLOSE)
                if end < 0:
                    if final:
                        buf = ""
                    break
                buf = buf[end + len(_CARD_CLOSE):]
            else:  # <xaiArtifact …> / </xaiArtifact>: drop the tag, keep its content
                end = buf.find(">")
                if end < 0:
                    if final:
                        buf = ""
                    break
                buf = buf[end + 1:]
        self._buf = buf
        return "".join(out)

    def _render(self, tag: str) -> str:
        head = tag[: tag.find(">") + 1]
        attrs = dict(_ATTR.findall(head))
        card = self.cards.get(attrs.get("card_id", ""))
        if card is None:
            return ""
        kind = card.get("type") or attrs.get("type", "")
        if kind == "render_inline_citation":
            url = card.get("url")
            if not isinstance(url, str) or not url:
                return ""
            if url == self._last_url and not self._since_cite:
                return ""  # consecutive duplicate collapses
            n = self._urls.setdefault(url, len(self._urls) + 1)
            text = f" [[{n}]]({url})"
            title = card.get("title") or self.titles.get(url) or url
            start = self.pos
            self._emit(text)
            self.annotations.append({"url": url, "title": title, "start_index": start, "end_index": self.pos})
            self._last_url = url
            self._since_cite = False
            return text
        if kind == "render_searched_image":
            image = card.get("image") or {}
            src = image.get("original") or image.get("thumbnail")
            if not src:
                return ""
            title = (image.get("title") or "image").replace("[", "(").replace("]", ")")
            md = f"![{title}]({src})"
            if image.get("link"):
                md = f"[{md}]({image['link']})"
            return self._emit(md)
        return ""  # generated images (emitted separately) and unknown cards
