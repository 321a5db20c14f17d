"""OpenAI-compatible routes: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions.

Wire format: OpenAI's public API (list/model objects; chat.completion and chat.completion.chunk
over text/event-stream, `data: [DONE]` last). The model routes answer in Anthropic's shapes
(`{data:[{type:"model",id,display_name,created_at}],has_more,first_id,last_id}`) when the request
carries an `anthropic-version` header. Errors use OpenAI's envelope
`{"error":{"message","type","param","code"}}` (rendered by grok2api/api.py).
Each route: authenticate (gateway.auth.api_auth) → parse (the body schema, gateway/schemas/) → one
service call → render.
"""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from gateway import services
from gateway.api._common import API_KEY, render, streams
from gateway.schemas.answers import ChatCompletion, ModelList, ModelObject, responses_for
from gateway.schemas.chat import ChatCompletionRequest

router = Router(tags=["openai"])


def _is_anthropic(request: HttpRequest) -> bool:
    # Anthropic's SDKs always send this header; OpenAI's never do.
    return "anthropic-version" in request.headers


@router.get("/models", auth=API_KEY, response=responses_for("openai", ModelList))
async def models_list(request: HttpRequest):
    q = request.GET
    return render(services.models_list(principal=request.auth, anthropic=_is_anthropic(request), limit=q.get("limit"),
                                       after_id=q.get("after_id"), before_id=q.get("before_id")))


@router.get("/models/{model_id}", auth=API_KEY, response=responses_for("openai", ModelObject))
async def model_retrieve(request: HttpRequest, model_id: str):
    return render(services.model_retrieve(model_id=model_id, principal=request.auth, anthropic=_is_anthropic(request)))


@router.post("/chat/completions", auth=API_KEY, response=responses_for("openai", ChatCompletion), openapi_extra=streams())
async def chat_completions(request: HttpRequest, body: ChatCompletionRequest):
    # The schema has checked the body's shape; the translator reads the same bytes (request.body).
    return render(await services.chat_handle(family="openai", raw=request.body, principal=request.auth))
