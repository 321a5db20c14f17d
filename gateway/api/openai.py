"""OpenAI-compatible routes: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions.

Wire format: OpenAI's public API (list/model objects; chat.completion and chat.completion.chunk
over text/event-stream, `data: [DONE]` last). Errors use OpenAI's envelope
`{"error":{"message","type","param","code"}}` (rendered by grok2api/api.py).
Each route: authenticate (gateway.auth.api_auth) → one service call → render.
"""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from gateway import services
from gateway.api._common import read_body, render
from gateway.auth import api_auth

router = Router(tags=["openai"])


@router.get("/models", auth=api_auth)
async def models_list(request: HttpRequest):
    return render(services.models_list(principal=request.auth))


@router.get("/models/{model_id}", auth=api_auth)
async def model_retrieve(request: HttpRequest, model_id: str):
    return render(services.model_retrieve(model_id=model_id, principal=request.auth))


@router.post("/chat/completions", auth=api_auth)
async def chat_completions(request: HttpRequest):
    raw = read_body(request)
    return render(await services.chat_handle(family="openai", raw=raw, principal=request.auth))
