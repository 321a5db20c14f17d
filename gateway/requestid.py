"""Request ids and the per-request trace, set by one async middleware in front of every path.

Every answer carries `x-request-id`: the client's own when it is well formed (1–128 characters of
`A-Z a-z 0-9 . _ : -`, so it is safe in a header, a log line and the ledger), else a new
`req_<32 hex>`. The id reaches the usage row (gateway/usage.py), the request's log line and the
message of every error rendered for it ("… (request id: X)", grokweb/errors.py), through the
`RequestTrace` held in a context variable for the request's task.

One log line per /v1 request (logger `grok2api.requests`) is written when its answer is over — for a
stream, at its end — with the id, status, key label, model, account id, token counts and timings:
`key=value` pairs, or one JSON object with LOG_FORMAT=json. Never the key itself.

The trace also carries the key's limit grant (gateway/limits.py, taken when the key is
authenticated): the middleware adds the rate-limit headers to the answer and, when the answer is
over — for a plain response when the middleware returns it, for a streamed one after its last part
(or its cancellation) — starts the grant's release, which frees the concurrency slot and counts the
answer's tokens (recorded on the grant by the usage ledger) in one call. The release is not
awaited: the client never waits for it.

The middleware is async-only (Django's `sync_capable = False; async_capable = True`): the /v1
views are async and the id must be set in the task that later streams the body.
"""
from __future__ import annotations

import logging
import os
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from asgiref.sync import markcoroutinefunction

from grokweb.errors import request_id as error_request_id

log = logging.getLogger("grok2api.requests")

REQUEST_ID_HEADER = "x-request-id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(slots=True)
class RequestTrace:
    request_id: str
    started: float = field(default_factory=time.monotonic)
    grant: Any = None  # gateway.limits.Grant when the key has limits
    key_label: str = ""
    usage: Any = None  # the request's gateway.usage.UsageEntry, once recorded


_trace: ContextVar[RequestTrace | None] = ContextVar("request_trace", default=None)


def _trace_set(trace: RequestTrace | None) -> None:
    """The trace, and its id for the messages of errors (grokweb/errors.py keeps its own variable:
    the client package imports no app)."""
    _trace.set(trace)
    error_request_id.set(trace.request_id if trace is not None else None)


def request_trace() -> RequestTrace | None:
    return _trace.get()


def current_request_id() -> str | None:
    trace = _trace.get()
    return trace.request_id if trace is not None else None


def request_id_pick(presented: str | None) -> str:
    """The client's id when well formed, else a new one."""
    if presented and _WELL_FORMED.fullmatch(presented):
        return presented
    return "req_" + uuid.uuid4().hex


def request_trace_start(presented: str | None) -> RequestTrace:
    trace = RequestTrace(request_id=request_id_pick(presented))
    _trace_set(trace)  # not reset after the view: a streamed body is sent later in this same task
    return trace


async def _settled_at_end(content, trace: RequestTrace, request, status: int):
    """The streamed body as is; when it ends or is closed the key's grant is released (its slot and
    the answer's tokens, recorded by then) and the request's log line is written (with the tokens)."""
    from gateway.limits import key_limits_release

    try:
        async for part in content:
            yield part
    finally:
        try:
            await content.aclose()
        finally:
            if trace.grant is not None:
                key_limits_release(grant=trace.grant)
            _log_request(trace, request, status)
            _trace_set(None)


def _log_format() -> str:
    return os.environ.get("LOG_FORMAT", "text").strip().lower()


def _log_request(trace: RequestTrace, request, status: int) -> None:
    """One line per /v1 request, at its end. Never a key: only the key's label."""
    if not request.path.startswith("/v1/") or not log.isEnabledFor(logging.INFO):
        return
    u = trace.usage
    fields = {
        "request_id": trace.request_id, "method": request.method, "path": request.path, "status": status,
        "key": trace.key_label or None, "model": u.model if u else None, "account_id": u.account_id if u else None,
        "stream": u.stream if u else None, "outcome": u.status if u else None,
        "prompt_tokens": u.prompt_tokens if u else None, "completion_tokens": u.completion_tokens if u else None,
        "duration_ms": int((time.monotonic() - trace.started) * 1000), "ttft_ms": u.ttft_ms if u else None,
    }
    if _log_format() == "json":
        log.info(orjson.dumps(fields).decode())
        return
    log.info(" ".join(f"{k}={v}" for k, v in fields.items() if v is not None))


class RequestIdMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)  # async-only: Django hands us an async get_response

    async def __call__(self, request):
        trace = request_trace_start(request.headers.get(REQUEST_ID_HEADER))
        response = await self.get_response(request)
        return await request_trace_finish(trace, request=request, response=response)


async def request_trace_finish(trace: RequestTrace, *, request, response):
    """Stamp the answer (request id, rate-limit headers) and settle the key's grant."""
    from gateway.limits import key_limits_headers, key_limits_release

    response[REQUEST_ID_HEADER] = trace.request_id
    grant = trace.grant
    if grant is not None:
        for name, value in key_limits_headers(grant=grant, anthropic=request.path.startswith("/v1/messages")).items():
            response[name] = value
    if response.streaming and response.is_async:
        response.streaming_content = _settled_at_end(response.streaming_content, trace, request, response.status_code)
        return response
    if grant is not None:  # the view is over and has recorded the answer's tokens
        key_limits_release(grant=grant)
    _log_request(trace, request, response.status_code)
    # Over: asgiref copies context changes back to a sync caller (Django's test client, a sync
    # server), where a leftover trace would lend its id to unrelated work.
    _trace_set(None)
    return response
