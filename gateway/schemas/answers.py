"""What /v1 answers: the error envelopes of both families and the top-level shapes of the success
objects, for /v1/openapi.json. Views return ready HttpResponses, so Ninja does not re-validate or
re-serialise them; the fuzz test (gateway/tests/test_fuzz.py) checks the answers against these."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.schemas.base import Answer


class OpenAIErrorDetail(Answer):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(Answer):
    """OpenAI's error envelope; `param` names the offending parameter."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(Answer):
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, not_found_error, "
                                  "request_too_large, rate_limit_error, api_error, overloaded_error")
    message: str


class AnthropicError(Answer):
    """Anthropic's error envelope."""

    type: Literal["error"]
    error: AnthropicErrorDetail


ERROR_STATUSES = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504)


def responses_for(family: str, ok: Any, *, statuses: tuple[int, ...] = ERROR_STATUSES, ok_status: int = 200) -> dict:
    """Ninja's `response=` mapping: the success shape and every error status in the family's envelope."""
    envelope = AnthropicError if family == "anthropic" else OpenAIError
    return {ok_status: ok, statuses: envelope}


# --------------------------------------------------------------------------- success objects


class Usage(Answer):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(Answer):
    """A `chat.completion` object (streamed instead as `chat.completion.chunk` SSE frames)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage


class ResponseObject(Answer):
    """A `response` object (streamed instead as `response.*` SSE events)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None


class ResponseDeleted(Answer):
    id: str
    object: Literal["response"]
    deleted: Literal[True]


class ItemList(Answer):
    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class AnthropicMessage(Answer):
    """A `message` object (streamed instead as Anthropic SSE events)."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: dict[str, Any]


class TokenCount(Answer):
    input_tokens: int


class ModelList(Answer):
    """OpenAI `{object: "list", data}`; Anthropic `{data, has_more, first_id, last_id}` when the request
    carries `anthropic-version`."""

    data: list[dict[str, Any]]


class ModelObject(Answer):
    """OpenAI `{id, object: "model", created, owned_by}`; Anthropic `{type: "model", id, display_name,
    created_at}` when the request carries `anthropic-version`."""

    id: str


class ImagesResponse(Answer):
    created: int
    data: list[dict[str, Any]] = Field(description="{url} or {b64_json} per image")


class VideoJob(Answer):
    id: str
    object: Literal["video"]
    created_at: int
    status: str
    model: str
    progress: int
