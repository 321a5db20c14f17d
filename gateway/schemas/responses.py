"""POST /v1/responses: the request body (OpenAI Responses), checked by
gateway/translate/responses.py. Values and limits: docs/api.md."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from gateway.schemas.base import LooseStr, Part, RequestBody
from gateway.translate import responses


class InputItem(Part):
    type: str | None = Field(None, description="message (default), function_call, function_call_output, reasoning")
    role: Literal["system", "developer", "user", "assistant"] | None = None
    content: str | list[dict[str, Any]] | None = Field(
        None, description="a string or parts: input_text, output_text, input_image")
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: Any = None


class ResponsesTool(Part):
    type: str = Field(description="function; hosted tool types (web_search, file_search, …) are accepted and "
                                  "left out: Grok searches the web by itself (Codex CLI sends them)")
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    function: dict[str, Any] | None = Field(None, description="the nested chat-completions form")


class Reasoning(Part):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = Field(None, description="accepted, not applied")


class ResponseCreateRequest(RequestBody):
    """An OpenAI Responses create request."""

    refusal = staticmethod(lambda body: responses.parse_request(body, default_stream=False, default_thinking=True))

    model: Annotated[str, Field(min_length=1)]
    input: Annotated[str, Field(min_length=1)] | Annotated[list[InputItem], Field(min_length=1)]
    instructions: str | None = None
    stream: bool | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = Field(None, description="echoed, not applied")
    top_p: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description="echoed, not applied")
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    max_tool_calls: Annotated[int, Field(ge=1)] | None = None
    store: bool | None = Field(None, description="default true")
    background: bool | None = Field(None, description="run on a worker: answers `queued` at once; needs storage (store not false)")
    parallel_tool_calls: bool | None = None
    include: list[str] | None = None
    previous_response_id: Annotated[str, Field(min_length=1)] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    reasoning: Reasoning | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, str] | None = Field(None, description="at most 16 string values")
    tools: list[ResponsesTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    user: LooseStr = None  # echoed when a string, else left out
    safety_identifier: LooseStr = None
    prompt_cache_key: LooseStr = None
