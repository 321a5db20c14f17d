"""POST /v1/chat/completions: the request body (OpenAI Chat Completions), checked by
gateway/translate/openai_chat.py. Values and limits: docs/api.md."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from gateway.schemas.base import LooseStr, Part, RequestBody
from gateway.translate import openai_chat

Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class ImageUrl(Part):
    url: str = Field(description="http(s) URL or data:image/...;base64, URI")
    detail: str | None = None


class ContentPart(Part):
    type: Literal["text", "image_url", "input_audio", "file", "refusal"]
    text: str | None = None
    image_url: ImageUrl | str | None = None
    input_audio: dict[str, Any] | None = Field(None, description="{data: base64, format: wav|mp3}")
    file: dict[str, Any] | None = Field(None, description="{file_data: data URI or base64, filename}")
    refusal: str | None = None


class ToolCallFunction(Part):
    name: str
    arguments: str = Field(description="the arguments as JSON text")


class ToolCall(Part):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class _Message(Part):
    content: str | list[ContentPart] | None = None
    name: LooseStr = None  # read only when it is a string


class SystemMessage(_Message):
    role: Literal["system", "developer"]


class UserMessage(_Message):
    role: Literal["user"]


class AssistantMessage(_Message):
    role: Literal["assistant"]
    tool_calls: list[ToolCall] | None = None


class ToolMessage(_Message):
    role: Literal["tool"]
    tool_call_id: str | None = None


# Fields of another role are ignored by the translator, so each role documents (and checks) its own.
ChatMessage = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]


class FunctionDef(Part):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON Schema of the arguments")
    strict: bool | None = None


class ChatTool(Part):
    type: Literal["function"]
    function: FunctionDef


class StreamOptions(Part):
    include_usage: bool | None = None


class ChatCompletionRequest(RequestBody):
    """An OpenAI chat completion request."""

    refusal = staticmethod(lambda body: openai_chat.parse_request(body, default_stream=False, default_thinking=True))

    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = Field(None, description="accepted, not applied")
    top_p: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description="accepted, not applied")
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = Field(None, description="deprecated: max_completion_tokens")
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = Field(None, description="one choice per request")
    seed: int | None = None
    stop: str | Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=4)] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: Literal[False] | None = Field(None, description="log probabilities are not available")
    response_format: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = None
    reasoning_effort: Effort | None = Field(None, description="`none` hides the reasoning")
    tools: list[ChatTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    image_config: dict[str, Any] | None = Field(None, description="for grok-imagine image models: n, size, response_format")
    video_config: dict[str, Any] | None = Field(None, description="for grok-imagine video models")
    modalities: list[str] | None = None
