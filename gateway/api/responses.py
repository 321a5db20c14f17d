"""OpenAI Responses route: POST /v1/responses.

Wire format: OpenAI's Responses API (a `response` object; streamed as `event: <type>` +
`data: {json}` frames with strictly increasing `sequence_number`). Errors use OpenAI's envelope.
"""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from gateway import services
from gateway.api._common import read_body, render
from gateway.auth import api_auth

router = Router(tags=["responses"])


@router.post("/responses", auth=api_auth)
async def responses_create(request: HttpRequest):
    raw = read_body(request)
    return render(await services.chat_handle(family="responses", raw=raw, principal=request.auth))
