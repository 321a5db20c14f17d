"""The one error hierarchy of the gateway.

Every failure a client can see is a GatewayError carrying HTTP status, an OpenAI-style `type`,
a machine `code`, the offending `param` and a human message. grok2api/api.py renders it once per
API family: OpenAI envelope `{"error":{"message","type","param","code"}}` for /v1 OpenAI routes,
Anthropic envelope `{"type":"error","error":{"type","message"}}` for /v1/messages.
Upstream failures are UpstreamError (grokweb/classify.py), a subclass with pool hints.
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import Any

# The id of the request being served, set by the gateway's request-id middleware
# (gateway/requestid.py) in the request's task. It lives here, not there, because this package
# imports nothing of the apps above it; outside a request it is None.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}

    # -- renderers (used by grok2api/api.py and by the SSE encoders for mid-stream errors) --

    def client_message(self) -> str:
        """The message as the client sees it: with the request's id, so a report can be traced."""
        rid = request_id.get()
        return f"{self.message} (request id: {rid})" if rid else self.message

    def openai_body(self) -> dict[str, Any]:
        return {"error": {"message": self.client_message(), "type": self.type, "param": self.param, "code": self.code}}

    @property
    def anthropic_type(self) -> str:
        return ANTHROPIC_TYPE_BY_STATUS.get(self.status, "api_error")

    def anthropic_body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.anthropic_type, "message": self.client_message()}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, param={self.param!r}, message={self.message!r})"


ANTHROPIC_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str, *, param: str = "model") -> None:
        super().__init__(f"The model '{model}' does not exist or is not served by this gateway.", param=param)


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RequestTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    """No account can serve the request right now (every candidate exhausted or busy)."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class ToolCallMissing(GatewayError):
    """tool_choice demanded a call (required / a named function) but the model answered otherwise."""

    status = 502
    type = "upstream_error"
    code = "tool_call_missing"


class StructuredOutputInvalid(GatewayError):
    """response_format / text.format asked for JSON (a schema) and the model's answer could not be made valid."""

    status = 502
    type = "upstream_error"
    code = "structured_output_invalid"


class InternalError(GatewayError):
    status = 500
    type = "server_error"
    code = "internal_error"
