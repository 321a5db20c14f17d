"""TurnAssembler: the one state machine between the neutral upstream events
(grokweb/events.py) and the three client encoders.

In: events, one at a time, on the streaming hot path. Out: Pieces —
  ReasoningPiece(text)   reasoning/thinking text to show (docs/upstream-protocol.md §4.8)
  TextPiece(text)        answer text, render tags already cleaned into citations (§4.6)
  ToolCallsPiece(calls)  emulated function calls found by the sieve (§5.4); ends the answer
  ImagePiece / VideoPiece  media produced inside the chat (informational for the service:
                         it may download them and pass `media_urls` to finish()).
`finish()` flushes held text, appends media references (per `image_format` / `video_format`) and
the optional "## Sources" block, and fixes `.result` for non-stream bodies and usage.
Output limits (limits.py: max_tokens, stop sequences) cut text and reasoning here; `done` then
tells the service to stop reading upstream. With tool_choice required / a named function, text
is held until the call arrives; `finish()` raises ToolCallMissing when it never does.
With a structured `output_format` (structured.py) the answer text is held too: `finish()` turns it
into the clean JSON (one TextPiece) or raises StructuredOutputInvalid; a tool call releases it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grokweb.errors import ToolCallMissing
from gateway.translate.common import SOURCES_MARKER, IdFactory, ToolCall, ToolChoice, ToolSpec
from gateway.translate.limits import LENGTH, STOP_SEQUENCE, OutputLimit
from gateway.translate.reasoning import ReasoningFormatter, tool_line
from gateway.translate.render import RenderCleaner
from gateway.translate.structured import OutputFormat, structured_answer
from gateway.translate.tools import ToolSieve
from grokweb.events import (
    AnswerDelta,
    Card,
    Completed,
    ImageFailed,
    ImageProgress,
    ImageResult,
    SearchResults,
    ThinkingDelta,
    ToolUsage,
    VideoProgress,
    VideoResult,
)

IMAGE_FORMATS = frozenset({"grok_url", "local_url", "grok_md", "local_md", "base64"})
VIDEO_FORMATS = frozenset({"grok_url", "local_url", "grok_html", "local_html"})


@dataclass(frozen=True, slots=True)
class ReasoningPiece:
    text: str


@dataclass(frozen=True, slots=True)
class TextPiece:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallsPiece:
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class ImagePiece:
    url: str
    index: int = 0
    image_id: str = ""
    asset_id: str = ""
    blob_b64: str = ""


@dataclass(frozen=True, slots=True)
class VideoPiece:
    url: str
    video_id: str = ""
    asset_id: str = ""
    thumbnail_url: str = ""


Piece = ReasoningPiece | TextPiece | ToolCallsPiece | ImagePiece | VideoPiece


@dataclass(slots=True)
class TurnResult:
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    search_sources: list[dict[str, str]] = field(default_factory=list)
    images: list[ImagePiece] = field(default_factory=list)
    videos: list[VideoPiece] = field(default_factory=list)
    finish_reason: str = "stop"  # "stop" | "tool_calls" | "length"
    stop_sequence: str | None = None  # the stop sequence that ended the answer, if one did


class TurnAssembler:
    def __init__(
        self,
        *,
        tools: list[ToolSpec] | tuple = (),
        tool_choice: ToolChoice | None = None,
        show_reasoning: bool = True,
        thinking_summary: bool = False,
        show_search_sources: bool = False,
        image_format: str = "grok_url",
        video_format: str = "grok_url",
        image_count: int = 2,
        assets_base_url: str = "",
        ids: IdFactory | None = None,
        max_tokens: int | None = None,
        stop: tuple[str, ...] = (),
        output_format: OutputFormat | None = None,
    ) -> None:
        choice = tool_choice or ToolChoice()
        # Grok Web has no length or stop knob: both are enforced here, for all three encoders.
        self._limit = OutputLimit(max_tokens=max_tokens, stop=stop) if (max_tokens or stop) else None
        self.show_reasoning = show_reasoning
        self.thinking_summary = thinking_summary
        self.show_search_sources = show_search_sources
        self.image_format = image_format if image_format in IMAGE_FORMATS else "grok_url"
        self.video_format = video_format if video_format in VIDEO_FORMATS else "grok_url"
        self.image_count = max(1, image_count)
        self.assets_base_url = assets_base_url.rstrip("/")
        self.result = TurnResult()
        self.started = False
        self._cards: dict[str, dict[str, Any]] = {}
        self._titles: dict[str, str] = {}
        self._source_urls: set[str] = set()
        self._cleaner = RenderCleaner(self._cards, self._titles)
        active = bool(tools) and choice.mode != "none"
        self._sieve = ToolSieve(allowed=[t.name for t in tools], ids=ids) if active else None
        # tool_choice "required" / a named function: the answer must be that call. Text is held
        # (never shown as if it were the answer) until a call arrives or the answer ends.
        self._must_call = active and choice.mode in ("required", "function")
        self._forced_name = choice.name if active and choice.mode == "function" else None
        self._held_text: list[str] = []
        # response_format / text.format: the answer must be JSON, so text is held and cleaned at the end
        self._format = output_format if output_format is not None and output_format.active else None
        self._fmt = ReasoningFormatter()
        self._text_parts: list[str] = []
        self._reasoning_parts: list[str] = []
        self._answer_started = False
        self._summary_sent = False
        self._finished = False
        self._image_urls: set[str] = set()

    @property
    def holding(self) -> bool:
        """Answer text is held until a tool call decides it (tool_choice required / named), or until
        the end with a structured output_format: the service opens no stream while this is true."""
        return (self._must_call or self._format is not None) and not self.started

    @property
    def done(self) -> bool:
        """The answer reached max_tokens or a stop sequence: the rest of the upstream stream is not needed."""
        return self._limit is not None and self._limit.done

    # ------------------------------------------------------------------ feeding

    def feed(self, event: Any) -> list[Piece]:
        kind = type(event)
        if kind is AnswerDelta:
            return self._answer(event.text) if event.text else []
        if kind is ThinkingDelta:
            if not self.show_reasoning or not event.text:
                return []
            return self._reason(self._fmt.thinking(event.text, event.tag, event.rollout_id))
        if kind is ToolUsage:
            if not self.show_reasoning or self._answer_started:
                return []
            return self._reason(self._fmt.line(tool_line(event.tool_name, event.args)))
        if kind is SearchResults:
            for src in event.sources:
                if src.url and src.url not in self._source_urls:
                    self._source_urls.add(src.url)
                    self.result.search_sources.append({"url": src.url, "title": src.title or src.url, "type": src.type})
                    self._titles.setdefault(src.url, src.title or src.url)
            return []
        if kind is Card:
            self._cards[event.card_id] = event.data
            return []
        if kind is ImageProgress:
            return self._progress(f"Generating image {event.progress}% ({event.image_index + 1}/{self.image_count})")
        if kind is ImageResult:
            if event.moderated or not event.url:
                return self._progress(f"Image {event.image_index + 1} was moderated and is not shown")
            return self._add_image(
                ImagePiece(event.url, event.image_index, event.image_id, event.asset_id, event.blob_b64)
            )
        if kind is ImageFailed:
            return self._progress(f"Image {event.image_index + 1} failed: {event.reason}")
        if kind is VideoProgress:
            return self._progress(f"Generating video {event.progress}%")
        if kind is VideoResult:
            if event.moderated or not event.url:
                return self._progress("The video was moderated and is not shown")
            piece = VideoPiece(event.url, event.video_id, event.asset_id, event.thumbnail_url)
            self.result.videos.append(piece)
            return [piece]
        if kind is Completed:
            if not self.result.images:
                out: list[Piece] = []
                for i, url in enumerate(event.generated_image_urls):
                    out += self._add_image(ImagePiece(self._absolute(url), i))
                return out
            return []
        return []  # Conversation, SoftStop, KeepAlive

    def _absolute(self, url: str) -> str:
        if url.startswith(("http://", "https://")) or not self.assets_base_url:
            return url
        return f"{self.assets_base_url}/{url.lstrip('/')}"

    def _add_image(self, piece: ImagePiece) -> list[Piece]:
        if piece.url in self._image_urls:
            return []
        self._image_urls.add(piece.url)
        self.result.images.append(piece)
        return [piece]

    def _progress(self, line: str) -> list[Piece]:
        if not self.show_reasoning:
            return []
        return self._reason(self._fmt.line(line))

    def _reason(self, text: str) -> list[Piece]:
        if self._limit is not None:
            text = self._limit.reasoning(text)
        if not text:
            return []
        if self._answer_started:
            # kept for the non-stream body, not streamed (docs/upstream-protocol.md §4.7 rule 12)
            if not self.thinking_summary:
                self._reasoning_parts.append(text)
            return []
        if self.thinking_summary:
            return []
        self._reasoning_parts.append(text)
        self.started = True
        return [ReasoningPiece(text)]

    def _summary(self) -> list[Piece]:
        if self._summary_sent or not self.thinking_summary or not self.show_reasoning:
            return []
        self._summary_sent = True
        text = self._fmt.summary()
        if self._limit is not None:
            text = self._limit.reasoning(text)
        if not text:
            return []
        self._reasoning_parts.append(text)
        self.started = True
        return [ReasoningPiece(text)]

    def _answer(self, token: str) -> list[Piece]:
        if (self._sieve is not None and self._sieve.done) or self.done:
            return []  # calls were emitted: the rest of the answer is not the client's
        cleaned = self._cleaner.feed(token)
        if not cleaned:
            return []  # e.g. a generated-image render tag: nothing visible, the answer has not started
        out: list[Piece] = []
        if not self._answer_started:
            self._answer_started = True
            out += self._summary()
        self._route(cleaned, out)
        return out

    def _route(self, cleaned: str, out: list[Piece]) -> None:
        if self._sieve is None:
            self._text(cleaned, out)
            return
        for item in self._sieve.feed(cleaned):
            self._item(item, out)

    def _item(self, item: str | list[ToolCall], out: list[Piece]) -> None:
        if isinstance(item, str):
            self._text(item, out)
        elif not self.done:
            if self._forced_name is not None:
                item = [c for c in item if c.name == self._forced_name]
                if not item:
                    return  # a call to another tool is not what tool_choice asked for
            self._release_held(out)
            self.result.tool_calls = list(item)
            self.result.finish_reason = "tool_calls"
            self.started = True
            out.append(ToolCallsPiece(tuple(item)))

    def _text(self, text: str, out: list[Piece]) -> None:
        if self._limit is not None:
            text = self._limit.text(text)
        if text and (self._must_call or self._format is not None) and not self.result.tool_calls:
            self._held_text.append(text)
            return
        if text:
            self._text_parts.append(text)
            self.started = True
            out.append(TextPiece(text))

    def _release_held(self, out: list[Piece]) -> None:
        held = "".join(self._held_text).strip()
        self._held_text = []
        if held:
            self._text_parts.append(held)
            self.started = True
            out.append(TextPiece(held))

    # ------------------------------------------------------------------ finishing

    def finish(self, *, media_urls: Mapping[str, str] | None = None) -> list[Piece]:
        if self._finished:
            return []
        self._finished = True
        out: list[Piece] = self._summary()
        if self._sieve is None or not self._sieve.done:
            tail = self._cleaner.finish()
            if tail:
                self._route(tail, out)
            if self._sieve is not None:
                for item in self._sieve.finish():
                    self._item(item, out)
        if not self.result.tool_calls and not self.done and self._format is None:
            extra = self._media_text(media_urls or {}) + self._sources_text()
            if extra:
                text_so_far = "".join(self._text_parts)
                if not text_so_far:
                    extra = extra.lstrip("\n")
                self._text(extra, out)
        if self._limit is not None:
            held = self._limit.flush()
            if held and (self._must_call or self._format is not None) and not self.result.tool_calls:
                self._held_text.append(held)
            elif held:
                self._text_parts.append(held)
                self.started = True
                out.append(TextPiece(held))
            # Calls that were complete before the limit are the answer: they keep "tool_calls".
            if not self.result.tool_calls and self._limit.reason == LENGTH:
                self.result.finish_reason = LENGTH
            elif not self.result.tool_calls and self._limit.reason == STOP_SEQUENCE:
                self.result.finish_reason = "stop"
                self.result.stop_sequence = self._limit.stop_sequence
        if self._must_call and not self.result.tool_calls:
            if self.result.finish_reason != LENGTH:
                what = f"a call to '{self._forced_name}'" if self._forced_name else "a tool call"
                raise ToolCallMissing(f"tool_choice required {what}, but the model answered with text instead. "
                                      "Retry the request, or use tool_choice 'auto'.", param="tool_choice")
            self._must_call = False  # cut at max_tokens before a call could complete: show the text
            self._release_held(out)
        if self._format is not None and not self.result.tool_calls:
            held = "".join(self._held_text)
            self._held_text = []
            # Cut at max_tokens the JSON is unfinished: it is shown as it is with "length", the way
            # OpenAI does (its SDK's parse() then reports the cut); otherwise only clean JSON goes out.
            shown = held if self.result.finish_reason == LENGTH else structured_answer(held, self._format)
            if shown:
                self._text_parts.append(shown)
                self.started = True
                out.append(TextPiece(shown))
        res = self.result
        res.text = "".join(self._text_parts)
        res.reasoning = "".join(self._reasoning_parts)
        limit = len(res.text)
        # citation offsets point into the raw answer, not into the re-serialised JSON
        res.annotations = [] if self._format is not None else [
            a for a in self._cleaner.annotations if a["end_index"] <= limit]
        return out

    def _media_text(self, media_urls: Mapping[str, str]) -> str:
        lines = []
        fmt = self.image_format
        for image in self.result.images:
            url = image.url
            if fmt in ("local_url", "local_md", "base64"):
                url = media_urls.get(image.url, image.url)
            if fmt in ("grok_md", "local_md", "base64"):
                lines.append(f"![image {image.index + 1}]({url})")
            else:
                lines.append(url)
        for video in self.result.videos:
            url = video.url
            if self.video_format in ("local_url", "local_html"):
                url = media_urls.get(video.url, video.url)
            if self.video_format.endswith("_html"):
                poster = f' poster="{video.thumbnail_url}"' if video.thumbnail_url else ""
                lines.append(f'<video controls src="{url}"{poster}></video>')
            else:
                lines.append(url)
        return "\n\n" + "\n".join(lines) if lines else ""

    def _sources_text(self) -> str:
        if not self.show_search_sources or not self.result.search_sources:
            return ""
        items = "\n".join(
            f"- [{s['title'].replace('[', '(').replace(']', ')')}]({s['url']})" for s in self.result.search_sources
        )
        return f"\n\n{SOURCES_MARKER}\n## Sources\n{items}"
