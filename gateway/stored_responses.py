"""Stored Responses API answers: create (with `previous_response_id` chaining), keep, get, delete,
list input items, prune.

Ownership: a response belongs to the ApiKey row whose key created it and is invisible (404) to
every other key. Responses made with an `app.api_key` key, or on an open API, have no owner row
and are shared by every such caller (those keys are one operator credential, not separate users).

The row is written once, when the answer ends (services.py calls `response_store` with the final
object), so the hot path before the first byte touches the database only to resolve a chain.
Background responses (`background: true`) are written `queued` at once and finished by a worker:
gateway/background.py.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.utils import timezone

from core.config import config
from grokweb.errors import InvalidRequest, NotFound
from gateway.models import StoredResponse
from gateway.translate import responses as responses_tr

log = logging.getLogger(__name__)

# A chain longer than this, or whose replayed items would exceed the request body limit
# (MAX_BODY_BYTES), is cut: its oldest responses are not replayed (bounded work per request).
MAX_CHAIN = 100
LIST_LIMIT_MAX = 100


def _owned(principal):
    key_id = getattr(principal, "key_id", None)
    rows = StoredResponse.objects.all()
    return rows.filter(api_key_id=key_id) if key_id is not None else rows.filter(api_key__isnull=True)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.")


def _previous_not_found(response_id: str) -> InvalidRequest:
    # OpenAI answers an unusable previous_response_id with 400 (not 404) and this code; clients
    # (Codex and proxies in front of it) key their "resend the whole history" recovery on it.
    return InvalidRequest(f"Previous response with id '{response_id}' not found.", param="previous_response_id",
                          code="previous_response_not_found")


async def response_chain_resolve(*, response_id: str, principal) -> list[dict[str, Any]]:
    """Input items then output items of every response in the chain ending at `response_id`,
    oldest first. Unknown, deleted, never stored (`store: false`) or another key's: 400
    `previous_response_not_found`, as OpenAI answers."""
    chunks: list[list[dict]] = []
    budget = int(getattr(settings, "MAX_BODY_BYTES", 0) or 0)
    size = 0
    rid = response_id
    while rid and len(chunks) < MAX_CHAIN:
        row = await _owned(principal).filter(id=rid).values("input_items", "response", "previous_response_id").afirst()
        if row is None:
            if not chunks:
                raise _previous_not_found(response_id)
            break  # an older link was deleted or pruned: the history starts after it
        chunk = list(row["input_items"]) + list(row["response"].get("output") or [])
        size += len(orjson.dumps(chunk))
        if chunks and budget and size > budget:
            log.info("chain of %s cut at %d responses: its history exceeds %d bytes", response_id, len(chunks), budget)
            break
        chunks.append(chunk)
        rid = row["previous_response_id"]
    return [item for chunk in reversed(chunks) for item in chunk]


async def response_create(*, raw: bytes, principal):
    """POST /v1/responses: parse, put the stored chain before the new input, run the chat — or, with
    `background: true`, queue it for a worker (gateway/background.py) and answer `queued`."""
    from gateway import background, services

    req = services.chat_parse(family="responses", raw=raw)
    history = []
    if req.previous_response_id:
        history = await response_chain_resolve(response_id=req.previous_response_id, principal=principal)
    if req.background:
        services.chat_model_check(model_id=req.model, principal=principal)  # 404/403 now, not a failed job
        return await background.response_background_create(req=req, body=orjson.loads(raw), principal=principal)
    req.turns[req.history_at:req.history_at] = responses_tr.history_turns(history)
    return await services.chat_run(req=req, family="responses", principal=principal)


async def response_store(*, principal, req, obj: dict[str, Any]) -> None:
    """Keep a finished response (completed, incomplete or failed) when the request asked for it.
    A background run keeps its own (gateway/background.py writes it with its last event)."""
    if not getattr(req, "store", False) or getattr(req, "background", False):
        return
    await StoredResponse.objects.acreate(
        id=obj["id"], api_key_id=getattr(principal, "key_id", None),
        previous_response_id=getattr(req, "previous_response_id", None) or "",
        response=obj, input_items=list(getattr(req, "input_items", ()) or ()), status=obj.get("status", "completed"),
    )


def _truthy(value: str | None) -> bool:
    return (value or "false").lower() not in ("false", "0")


async def response_get(*, response_id: str, principal, query: dict[str, str]):
    """GET /v1/responses/{id}: the response object; with `stream=true` (background responses only)
    its events after `starting_after`, followed until it ends."""
    from gateway import background

    row = await _owned(principal).filter(id=response_id).values("response", "background").afirst()
    if row is None:
        raise _not_found(response_id)
    if _truthy(query.get("stream")):
        if not row["background"]:
            raise InvalidRequest("Unsupported parameter: 'stream': only a background response (created with "
                                 "'background': true) can be streamed again; this one is returned whole.",
                                 param="stream", code="unsupported_parameter")
        after = background.starting_after_parse(query.get("starting_after"))
        return background.response_events_stream(response_id=response_id, starting_after=after)
    if query.get("starting_after"):
        raise InvalidRequest("'starting_after' is a sequence number of the event stream: send it with 'stream': true.",
                             param="starting_after")
    return row["response"]


async def response_cancel(*, response_id: str, principal) -> dict[str, Any]:
    """POST /v1/responses/{id}/cancel."""
    from gateway import background

    row = await _owned(principal).filter(id=response_id).values("id", "background", "status", "response").afirst()
    if row is None:
        raise _not_found(response_id)
    return await background.response_cancel(row=row)


async def response_delete(*, response_id: str, principal) -> dict[str, Any]:
    deleted, _ = await _owned(principal).filter(id=response_id).adelete()
    if not deleted:
        raise _not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


def _list_limit(raw: str | None) -> int:
    try:
        limit = 20 if raw is None else int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidRequest(f"Invalid 'limit': it must be an integer between 1 and {LIST_LIMIT_MAX}.", param="limit")
    return limit


async def response_input_items_list(*, response_id: str, principal, query: dict[str, str]) -> dict[str, Any]:
    """GET /v1/responses/{id}/input_items: OpenAI's list page (`order` desc by default, `after` an item id)."""
    limit = _list_limit(query.get("limit"))
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"Invalid value for 'order': '{order}'. Supported values are: 'asc' and 'desc'.",
                             param="order")
    if query.get("include"):
        raise InvalidRequest("Unsupported parameter: 'include': input items are returned as they were sent.",
                             param="include", code="unsupported_parameter")
    row = await _owned(principal).filter(id=response_id).values("input_items").afirst()
    if row is None:
        raise _not_found(response_id)
    items = list(row["input_items"])
    if order == "desc":
        items.reverse()
    after = query.get("after")
    if after:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"Invalid 'after': no input item '{after}' in this response.", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}


def responses_prune(*, now=None) -> int:
    """Delete stored responses older than `responses.retention_days` (the beat task calls this)."""
    days = int(config().get("responses.retention_days") or 30)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted, _ = StoredResponse.objects.filter(created_at__lt=cutoff).delete()
    if deleted:
        log.info("pruned %d stored responses older than %d days", deleted, days)
    return deleted
