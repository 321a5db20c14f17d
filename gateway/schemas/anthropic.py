"""POST /v1/messages and /v1/messages/count_tokens: the request bodies (Anthropic Messages),
checked by gateway/translate/anthropic.py. Values and limits: docs/api.md."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from gateway.schemas.base import Part, RequestBody
from gateway.translate import anthropic


class ContentBlock(Part):
    type: str = Field(description="text, image, document, tool_use, tool_result (thinking blocks are skipped)")
    text: str | None = None
    source: dict[str, Any] | None = Field(None, description="{type: base64|url, media_type, data|url}")
    id: str | None = None
    name: str | None = None
    input: Any = None
    tool_use_id: str | None = None
    content: str | list[dict[str, Any]] | None = None
    is_error: bool | None = None


class AnthropicMessage(Part):
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class AnthropicTool(Part):
    type: str | None = Field(None, description="custom (or absent) for a client tool; server tool types "
                                               "(web_search_…, bash_…) are accepted and left out: Grok uses its own")
    name: str | None = Field(None, description="required for a client tool")
    description: str | None = None
    input_schema: dict[str, Any] | None = Field(None, description="required for a client tool")


# The translator's own list, so the two cannot drift (Claude Code 2.1 sends "adaptive").
ThinkingType = Literal[tuple(sorted(anthropic.THINKING_TYPES))]


class Thinking(Part):
    type: ThinkingType
    budget_tokens: Annotated[int, Field(ge=1)] | None = None


class ToolChoice(Part):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class TextBlock(Part):
    type: Literal["text"]
    text: str


class _MessagesBody(RequestBody):
    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[AnthropicMessage], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    thinking: Thinking | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: ToolChoice | None = None


class MessageCreateRequest(_MessagesBody):
    """An Anthropic Messages create request."""

    refusal = staticmethod(lambda body: anthropic.parse_request(body, default_stream=False, default_thinking=True))

    max_tokens: Annotated[int, Field(ge=1)]
    stream: bool | None = None
    stop_sequences: Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=16)] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description="accepted, not applied")
    top_p: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description="accepted, not applied")
    top_k: Annotated[int, Field(ge=0)] | None = Field(None, description="accepted, not applied")
    metadata: dict[str, Any] | None = None


class CountTokensRequest(_MessagesBody):
    """An Anthropic count_tokens request: a Messages body without max_tokens."""

    refusal = staticmethod(anthropic.count_tokens)
