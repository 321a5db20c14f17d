"""Anthropic Messages routes: POST /v1/messages and POST /v1/messages/count_tokens.

Wire format: Anthropic's Messages API (a `message` object; streamed as `event: <type>` +
`data: {json}` frames, no `[DONE]`, `ping` events during gaps). Auth by `x-api-key` or
`Authorization: Bearer`; the `anthropic-version` header is accepted and not required. Errors use
Anthropic's envelope `{"type":"error","error":{"type","message"}}` (grok2api/api.py renders every
/v1/messages path that way).
"""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from gateway import services
from gateway.api._common import read_body, render
from gateway.auth import api_auth

router = Router(tags=["anthropic"])


@router.post("/messages", auth=api_auth)
async def messages_create(request: HttpRequest):
    raw = read_body(request)
    return render(await services.chat_handle(family="anthropic", raw=raw, principal=request.auth))


@router.post("/messages/count_tokens", auth=api_auth)
async def messages_count_tokens(request: HttpRequest):
    raw = read_body(request)
    return render(services.messages_count_tokens(raw=raw, principal=request.auth))
