"""The neutral event stream: what grokweb/parse.py produces from grok.com's NDJSON chat
stream and what every translator in gateway/translate/ consumes.

Events are plain frozen dataclasses (no Django, no httpx). Text is raw upstream text: answer
tokens may still contain `<grok:render …>` tags; cleaning them into citations is the translators'
job (gateway/translate/common.py). Failures are not events: the parser raises UpstreamError.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Conversation:
    conversation_id: str


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    """A non-thinking answer token (messageTag "final" or untagged), render tags included."""

    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """A thinking token. tag: "header" | "summary" | "analysis" | "" ; rollout_id: "Agent 2" in heavy mode."""

    text: str
    tag: str = ""
    rollout_id: str | None = None
    step_id: int | None = None
    # True when the first answer token was already emitted: keep it for non-stream output, do not
    # stream it (docs/upstream-protocol.md §4.7 rule 12).
    after_answer: bool = False


@dataclass(frozen=True, slots=True)
class ToolUsage:
    """A server-side tool call card (web_search, browse_page, code_execution, x_search, search_images)."""

    card_id: str
    tool_name: str  # snake_case
    args: dict[str, Any] = field(default_factory=dict)
    after_answer: bool = False  # the reasoning line is shown only while the answer has not started (§4.7 rule 10)


@dataclass(frozen=True, slots=True)
class SearchSource:
    url: str
    title: str
    type: str  # "web" | "x_post"


@dataclass(frozen=True, slots=True)
class SearchResults:
    sources: tuple[SearchSource, ...]


@dataclass(frozen=True, slots=True)
class Card:
    """A cardAttachment, decoded: citation cards, searched images, generated-image cards."""

    card_id: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ImageProgress:
    image_index: int
    progress: int
    url: str = ""  # absolute preview URL when known


@dataclass(frozen=True, slots=True)
class ImageResult:
    """A finished image. url is absolute (assets base joined for relative users/… paths)."""

    url: str
    image_index: int = 0
    moderated: bool = False
    asset_id: str = ""
    image_id: str = ""
    blob_b64: str = ""  # Imagine WebSocket finals carry the bytes already


@dataclass(frozen=True, slots=True)
class ImageFailed:
    image_index: int
    reason: str


@dataclass(frozen=True, slots=True)
class VideoProgress:
    video_id: str
    progress: int


@dataclass(frozen=True, slots=True)
class VideoResult:
    video_id: str
    url: str  # absolute; "" when moderated
    moderated: bool = False
    asset_id: str = ""
    video_post_id: str = ""
    thumbnail_url: str = ""


@dataclass(frozen=True, slots=True)
class SoftStop:
    pass


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """An empty token: the upstream is alive. Translators may turn a run of these into SSE comments."""


@dataclass(frozen=True, slots=True)
class Completed:
    """The stream finished successfully (modelResponse without streamErrors, or a soft stop at EOF).

    message: modelResponse.message (raw) or "" when it never came; the parser has already emitted
    any missing suffix as an AnswerDelta before this event.
    """

    message: str = ""
    generated_image_urls: tuple[str, ...] = ()
    file_attachments: tuple[str, ...] = ()
    title: str = ""
    had_model_response: bool = True


Event = (
    Conversation
    | AnswerDelta
    | ThinkingDelta
    | ToolUsage
    | SearchResults
    | Card
    | ImageProgress
    | ImageResult
    | ImageFailed
    | VideoProgress
    | VideoResult
    | SoftStop
    | KeepAlive
    | Completed
)
