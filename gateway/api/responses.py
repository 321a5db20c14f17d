"""OpenAI Responses routes: POST /v1/responses, GET/DELETE /v1/responses/{id},
GET /v1/responses/{id}/input_items,
POST /v1/responses/{id}/cancel.

Wire format: OpenAI's Responses API (a `response` object; streamed as `event: <type>` +
`data: {json}` frames with strictly increasing `sequence_number`). Errors use OpenAI's envelope.
Storage, chaining and ownership: gateway/stored_responses.py; background mode: gateway/background.py.
"""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from gateway import stored_responses
from gateway.api._common import API_KEY, render, streams
from gateway.schemas.answers import ItemList, ResponseDeleted, ResponseObject, responses_for
from gateway.schemas.responses import ResponseCreateRequest

router = Router(tags=["responses"])


@router.post("/responses", auth=API_KEY, response=responses_for("openai", ResponseObject), openapi_extra=streams())
async def responses_create(request: HttpRequest, body: ResponseCreateRequest):
    return render(await stored_responses.response_create(raw=request.body, principal=request.auth))


@router.get("/responses/{response_id}", auth=API_KEY, response=responses_for("openai", ResponseObject),
            openapi_extra=streams())
async def responses_retrieve(request: HttpRequest, response_id: str):
    return render(await stored_responses.response_get(response_id=response_id, principal=request.auth,
                                                      query=request.GET.dict()))


@router.delete("/responses/{response_id}", auth=API_KEY, response=responses_for("openai", ResponseDeleted))
async def responses_delete(request: HttpRequest, response_id: str):
    return render(await stored_responses.response_delete(response_id=response_id, principal=request.auth))


@router.get("/responses/{response_id}/input_items", auth=API_KEY, response=responses_for("openai", ItemList))
async def responses_input_items(request: HttpRequest, response_id: str):
    return render(await stored_responses.response_input_items_list(response_id=response_id, principal=request.auth,
                                                                   query=request.GET.dict()))


@router.post("/responses/{response_id}/cancel", auth=API_KEY, response=responses_for("openai", ResponseObject))
async def responses_cancel(request: HttpRequest, response_id: str):
    return render(await stored_responses.response_cancel(response_id=response_id, principal=request.auth))
