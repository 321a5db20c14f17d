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
from gateway.api._common import API_KEY, render, streams
from gateway.schemas.anthropic import CountTokensRequest, MessageCreateRequest
from gateway.schemas.answers import AnthropicMessage, TokenCount, responses_for

router = Router(tags=["anthropic"])


@router.post("/messages", auth=API_KEY, response=responses_for("anthropic", AnthropicMessage), openapi_extra=streams())
async def messages_create(request: HttpRequest, body: MessageCreateRequest):
    return render(await services.chat_handle(family="anthropic", raw=request.body, principal=request.auth))


@router.post("/messages/count_tokens", auth=API_KEY, response=responses_for("anthropic", TokenCount))
async def messages_count_tokens(request: HttpRequest, body: CountTokensRequest):
    return render(services.messages_count_tokens(raw=request.body, principal=request.auth))
