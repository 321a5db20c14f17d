"""Orchestration of one /v1 chat request: account → upstream → translator → feedback → usage.

The three chat families (OpenAI Chat Completions "openai", OpenAI Responses "responses", Anthropic
Messages "anthropic") share this module; their wire formats live in gateway/translate/<family>.py.

Flow of `chat_run` (docs/upstream-protocol.md §11.4, architecture §1/§4):
1. Resolve the model (404 unknown, 403 outside the key's allow-list); image/video ids go to
   gateway/media_chat.py (`_media_dispatch`).
2. Client-supplied attachment URLs are fetched ONCE, credential-free and SSRF-guarded
   (transport.fetch_untrusted), before any account is leased.
3. Attempts (accounts/attempt.py `account_attempt`): lease an account (pool order, fallback)
   excluding accounts already tried, upload the attachments with that account, open the upstream
   chat stream.
   - Streaming: nothing is sent to the client — no status line, no headers — until the upstream
     produced its first answer or reasoning token (shown or hidden). Failures before that are
     reported to the pool and retried on another account when the pool's retry policy
     (`retry.on_codes`, `retry.max_retries`; accounts/feedback.py) allows; otherwise they become
     a normal HTTP error. After that point the open upstream stream — and its lease — is handed to
     the response generator; a later failure becomes the family's mid-stream error event, never a
     retry, and the attempt is reported when the stream ends.
   - Non-streaming: the whole answer is collected first, so in-band failures can be retried.
4. Always: one pool report per attempt, and one usage-ledger entry per request (queued,
   batched by gateway/usage.py) — no ORM query on the request path.

The upstream stream lives inside the response generator, so a client disconnect (Django cancels
the generator) closes the upstream request at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from django.http import StreamingHttpResponse

from core.config import config
from accounts.attempt import AccountAttempt, account_attempt
from accounts.lease import accounts_available_models
from media.attachments import attachment_fetch
from gateway.jsonbody import json_body_parse
from grokweb.errors import (
    GatewayError,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
)
from gateway.auth import principal_allows
from grokweb.registry import ModelSpec, model_get
from gateway.sse import SSE_HEADERS, sse_turn_body
from gateway.translate import anthropic as anthropic_tr
from gateway.translate import openai_chat, responses
from gateway.translate.assembler import TurnAssembler
from gateway.translate.common import flatten
from gateway.translate.tokens import prompt_tokens, usage_for
from grokweb.client import GrokClient
from grokweb.events import AnswerDelta, ThinkingDelta
from gateway.usage import UsageEntry, usage_record
from core import crypto
from gateway.media_chat import media_chat_pieces, media_chat_result, media_chat_urls
from media.common import media_ledger

log = logging.getLogger(__name__)

# The translator module of each family.
_MODULES = {"openai": openai_chat, "responses": responses, "anthropic": anthropic_tr}
ENDPOINTS = {"openai": "chat.completions", "responses": "responses", "anthropic": "messages"}

FILE_ACCEPT = ("image/", "application/", "text/", "audio/")


def _family_module(family: str):
    try:
        return _MODULES[family]
    except KeyError:
        raise InternalError(f"unknown API family {family!r}") from None


# --------------------------------------------------------------------------- parsing


def _json_body(raw: bytes) -> Any:
    return json_body_parse(raw, require_object=False)


def _body_object(raw: bytes) -> dict:
    body = _json_body(raw)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", param=None, code="invalid_json")
    return body


def chat_parse(*, family: str, raw: bytes):
    """Raw request bytes → ChatRequest, with the reasoning default from the runtime config.

    A request that omits `stream` gets JSON whatever features.stream says: that is both APIs'
    documented default, and their SDKs omit the field on non-streaming calls (core.config.
    config_warnings tells the operator the key has no effect)."""
    body = _body_object(raw)
    cfg = config()
    return _family_module(family).parse_request(
        body,
        default_stream=False,
        default_thinking=bool(cfg.get("features.thinking")),
    )


async def chat_handle(*, family: str, raw: bytes, principal) -> StreamingHttpResponse | dict:
    """What a /v1 chat endpoint calls: parse the body of its family, then run it."""
    if family == "responses":  # stored chains and storage (gateway/stored_responses.py)
        from gateway.stored_responses import response_create

        return await response_create(raw=raw, principal=principal)
    req = chat_parse(family=family, raw=raw)
    return await chat_run(req=req, family=family, principal=principal)


def messages_count_tokens(*, raw: bytes, principal) -> dict:
    """POST /v1/messages/count_tokens: the prompt tokens the same /v1/messages body would cost."""
    body = _body_object(raw)
    model = body.get("model")
    if isinstance(model, str):
        _model_for(model_id=model, principal=principal)
    return anthropic_tr.count_tokens(body)


# --------------------------------------------------------------------------- models


def _principal_allows(principal, model_id: str) -> bool:
    return principal_allows(principal, model_id)


def _model_for(*, model_id: str, principal) -> ModelSpec:
    spec = model_get(model_id)
    if spec is None:
        raise ModelNotFound(model_id)
    if principal is not None and not _principal_allows(principal, spec.id):
        raise PermissionDenied(f"This API key is not allowed to use the model '{model_id}'.", param="model", code="model_not_allowed")
    return spec


def chat_model_check(*, model_id: str, principal) -> ModelSpec:
    """The model a request names, if this key may use it: 404 unknown, 403 outside the key's
    allow-list (a background response checks it before it is queued)."""
    return _model_for(model_id=model_id, principal=principal)


# `created` of every model object: a fixed date (the registry's), so that listings are stable
# between calls (clients cache and diff them), never the time of the request.
MODELS_CREATED = 1767225600
MODELS_CREATED_AT = "2026-01-01T00:00:00Z"
ANTHROPIC_LIST_LIMIT = 1000


def _model_object(spec: ModelSpec) -> dict:
    return {
        "id": spec.id,
        "object": "model",
        "created": MODELS_CREATED,
        "owned_by": "xai",
        "name": spec.name,
        "capability": spec.capability,
        "mode": spec.mode,
        "tier": spec.tier,
        "pools": list(spec.pools),
    }


def _available_models() -> list[ModelSpec]:
    return list(accounts_available_models())


def _anthropic_model_object(spec: ModelSpec) -> dict:
    return {"type": "model", "id": spec.id, "display_name": spec.name, "created_at": MODELS_CREATED_AT}


def models_list(*, principal, anthropic: bool = False, limit: str | None = None, after_id: str | None = None,
                before_id: str | None = None) -> dict:
    """GET /v1/models: every model some usable account can serve, that this key may use — in
    OpenAI's list shape, or Anthropic's (paged by limit / after_id / before_id) when the client
    sent `anthropic-version`."""
    specs = [spec for spec in _available_models() if principal is None or _principal_allows(principal, spec.id)]
    if not anthropic:
        return {"object": "list", "data": [_model_object(spec) for spec in specs]}
    try:
        size = 20 if limit is None else int(limit)
    except ValueError:
        size = 0
    if not 1 <= size <= ANTHROPIC_LIST_LIMIT:
        raise InvalidRequest(f"limit: Input should be between 1 and {ANTHROPIC_LIST_LIMIT}", param="limit")
    ids = [spec.id for spec in specs]
    start, stop = 0, len(specs)
    if after_id is not None:
        start = ids.index(after_id) + 1 if after_id in ids else len(ids)
    if before_id is not None:
        stop = ids.index(before_id) if before_id in ids else 0
        start = max(start, stop - size) if after_id is None else start
    page = specs[start:min(stop, start + size)]
    has_more = (start + size < stop) if before_id is None else start > 0
    return {
        "data": [_anthropic_model_object(spec) for spec in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


def model_retrieve(*, model_id: str, principal, anthropic: bool = False) -> dict:
    """GET /v1/models/{id}: any registry model (even with no account right now); 404 otherwise."""
    spec = model_get(model_id)
    if spec is None or (principal is not None and not _principal_allows(principal, spec.id)):
        raise ModelNotFound(model_id)
    return _anthropic_model_object(spec) if anthropic else _model_object(spec)


# --------------------------------------------------------------------------- chat


@dataclass(slots=True)
class _Fetched:
    name: str
    mime: str
    data: bytes


@dataclass(slots=True)
class _Ctx:
    req: Any
    family: str
    spec: ModelSpec
    principal: Any
    prompt: str
    prompt_tokens: int
    files: list[_Fetched]
    t0: float = field(default_factory=time.monotonic)
    attempts: int = 0
    ttft_ms: int | None = None
    lease: Any = None  # the account lease of the attempt running now (a cancelled request's row names it)

    def usage_entry(self, *, lease, status: str, error: GatewayError | None, usage) -> UsageEntry:
        principal = self.principal
        return UsageEntry(
            endpoint=ENDPOINTS.get(self.family, self.family),
            model=self.spec.id,
            stream=bool(self.req.stream),
            api_key_id=getattr(principal, "key_id", None),
            api_key_label=getattr(principal, "label", "") or "",
            mode=getattr(lease, "mode", "") or "",
            account_id=getattr(getattr(lease, "account", None), "id", None),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=getattr(usage, "completion_tokens", 0) if usage else 0,
            reasoning_tokens=getattr(usage, "reasoning_tokens", 0) if usage else 0,
            duration_ms=int((time.monotonic() - self.t0) * 1000),
            ttft_ms=self.ttft_ms,
            status=status,
            error_code=(error.code or error.type or "")[:60] if error else "",
            attempts=max(1, self.attempts),
        )


async def _fetch_attachments(req) -> list[_Fetched]:
    attachments = list(getattr(req, "attachments", ()) or ())
    if not attachments:
        return []
    out: list[_Fetched] = []
    for att in attachments:
        if att.data is not None:
            out.append(_Fetched(att.name, att.mime or "application/octet-stream", att.data))
            continue
        if not att.url:
            continue
        accept = ("image/",) if att.kind == "image" else FILE_ACCEPT
        got = await attachment_fetch(url=att.url, param=getattr(att, "param", "") or None, accept=accept)
        mime = (got.content_type or att.mime or "application/octet-stream").split(";")[0].strip()
        out.append(_Fetched(att.name, mime, got.data))
    return out


@dataclass(slots=True)
class _Attempt:
    """One account attempt (accounts/attempt.py) with its open upstream stream. close() is
    idempotent: it closes the stream, then reports the outcome to the pool once."""

    account: AccountAttempt
    stack: AsyncExitStack
    events: Any
    closed: bool = False

    @property
    def lease(self):
        return self.account.lease

    @property
    def client(self) -> GrokClient:
        return self.account.client

    async def close_stream(self) -> None:
        """Close the upstream stream only: accounts/attempt.py reports the attempt."""
        if self.closed:
            return
        self.closed = True
        try:
            await self.stack.aclose()
        except Exception:
            log.debug("closing the upstream stream failed", exc_info=True)

    async def close(self, outcome: BaseException | None, *, answer_started: bool) -> None:
        """Close the upstream stream, then report the attempt (the stream's end, once)."""
        if self.closed:
            return
        try:
            await self.close_stream()
        finally:
            self.account.end(outcome, answer_started=answer_started)

    def __del__(self) -> None:
        # Safety net: a response generator dropped before it ever ran (client gone between the
        # view returning and the first iteration) still closes its upstream stream.
        if not self.closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            loop.create_task(self.close(None, answer_started=True))


async def _open_attempt(ctx: _Ctx, account: AccountAttempt) -> _Attempt:
    """Upload the attachments with the leased account and open the upstream chat stream. A failure
    closes what was opened and carries the lease for the usage ledger; accounts/attempt.py reports
    it and decides whether another account is tried."""
    ctx.attempts = account.number
    ctx.lease = account.lease
    stack = AsyncExitStack()
    try:
        client = account.client
        file_ids: list[str] = []
        for f in ctx.files:
            uploaded = await client.upload_file(name=f.name, mime=f.mime, data=f.data)
            file_ids.append(uploaded.file_id)
        payload = client.build_chat_payload(message=ctx.prompt, mode=account.lease.mode, file_ids=file_ids)
        events = await stack.enter_async_context(client.chat_stream(payload=payload, mode=account.lease.mode))
    except BaseException as exc:
        await _abandon(_Attempt(account, stack, None), exc)
        raise
    return _Attempt(account, stack, events.__aiter__())


async def _abandon(attempt: _Attempt, exc: BaseException) -> None:
    """A failure before the first byte: close the upstream stream (accounts/attempt.py reports the
    attempt and decides on a retry); a GatewayError carries its lease for the ledger row."""
    await attempt.close_stream()
    if isinstance(exc, GatewayError):
        exc._lease = attempt.lease  # type: ignore[attr-defined]


async def _finish(assembler, attempt: _Attempt) -> list:
    """assembler.finish(), first turning in-chat images/videos into local links or data URIs when
    features.image_format / video_format ask for it (gateway/media_chat.py downloads them with the
    account that produced them). A failed download falls back to the upstream URL."""
    res = assembler.result
    media: dict[str, str] = {}
    if res.images or res.videos:
        try:
            media = await media_chat_urls(client=attempt.client, images=list(res.images), videos=list(res.videos))
        except GatewayError as exc:
            log.warning("caching in-chat media failed, linking upstream URLs instead: %r", exc)
    return assembler.finish(media_urls=media)


def _assembler(req):
    cfg = config()
    return TurnAssembler(
        tools=req.tools,
        tool_choice=req.tool_choice,
        show_reasoning=req.show_reasoning,
        thinking_summary=bool(cfg.get("features.thinking_summary")),
        show_search_sources=bool(cfg.get("features.show_search_sources")),
        image_format=str(cfg.get("features.image_format") or "grok_url"),
        video_format=str(cfg.get("features.video_format") or "grok_url"),
        max_tokens=getattr(req, "max_tokens", None),
        stop=tuple(getattr(req, "stop", ()) or ()),
        output_format=getattr(req, "output_format", None),
    )


def _starts_answer(event) -> bool:
    """An upstream answer or reasoning token (shown or not): the account is serving this request."""
    return (isinstance(event, AnswerDelta) and bool(event.text)) or isinstance(event, ThinkingDelta)


def _keepalive_interval() -> float:
    try:
        value = float(config().get("chat.keepalive_interval"))
    except (KeyError, TypeError, ValueError):
        value = 15.0
    return value if value > 0 else 15.0


async def chat_run(*, req, family: str, principal) -> StreamingHttpResponse | dict:
    spec = _model_for(model_id=req.model, principal=principal)
    if not spec.is_chat:
        return await _media_dispatch(req=req, spec=spec, family=family, principal=principal)
    prompt = flatten(req)
    ctx = _Ctx(req=req, family=family, spec=spec, principal=principal, prompt=prompt,
               prompt_tokens=prompt_tokens(prompt), files=[])
    try:
        ctx.files = await _fetch_attachments(req)
        if req.stream:
            return await _run_stream(ctx)
        return await _run_complete(ctx)
    except GatewayError as exc:
        if not getattr(exc, "_ledgered", False):
            usage_record(entry=ctx.usage_entry(lease=getattr(exc, "_lease", None), status="error", error=exc, usage=None))
        raise
    except asyncio.CancelledError:
        usage_record(entry=ctx.usage_entry(lease=ctx.lease, status="cancelled", error=None, usage=None))
        raise


async def _run_complete(ctx: _Ctx) -> dict:
    mod = _family_module(ctx.family)

    async def work(account: AccountAttempt) -> tuple[Any, Any]:
        attempt = await _open_attempt(ctx, account)
        assembler = _assembler(ctx.req)
        try:
            async for event in attempt.events:
                assembler.feed(event)
                if ctx.ttft_ms is None and assembler.started:
                    ctx.ttft_ms = int((time.monotonic() - ctx.t0) * 1000)
                if assembler.done:
                    break  # max_tokens / stop sequence reached: close_stream() ends the upstream stream
            await _finish(assembler, attempt)
        except BaseException as exc:
            await _abandon(attempt, exc)
            raise
        await attempt.close_stream()
        return assembler, account.lease

    # Nothing reaches the client before the whole answer is there: every failure may be retried.
    assembler, lease = await account_attempt(model=ctx.spec, work=work)
    result = assembler.result
    usage = usage_for(prompt_tokens=ctx.prompt_tokens, result=result)
    usage_record(entry=ctx.usage_entry(lease=lease, status="ok", error=None, usage=usage))
    obj = mod.body(result=result, model=ctx.req.model, prompt_tokens=ctx.prompt_tokens, **_echo_of(ctx))
    await _keep(ctx, obj)
    return obj


def _echo_of(ctx: _Ctx) -> dict:
    return _echo(family=ctx.family, req=ctx.req)


def _echo(*, family: str, req) -> dict:
    """The Responses encoders echo the request's settings in every response object, and seal
    reasoning for include=["reasoning.encrypted_content"] with the at-rest cipher."""
    return {"request": req, "seal": crypto.encrypt} if family == "responses" else {}


async def _keep(ctx: _Ctx, obj: dict | None) -> None:
    await _store(family=ctx.family, req=ctx.req, principal=ctx.principal, obj=obj)


async def _store(*, family: str, req, principal, obj: dict | None) -> None:
    """Store a finished Responses answer (`store`), once, before its last byte goes out — so a client
    that chains or fetches it right after the answer finds it. A failed write costs the chain, not
    the answer: it is logged."""
    if family != "responses" or obj is None or not getattr(req, "store", False):
        return
    from gateway.stored_responses import response_store

    try:
        await response_store(principal=principal, req=req, obj=obj)
    except Exception:
        log.exception("storing response %s failed", obj.get("id"))


async def _run_stream(ctx: _Ctx) -> StreamingHttpResponse:
    mod = _family_module(ctx.family)

    async def work(account: AccountAttempt) -> tuple[_Attempt, Any, list, bool]:
        """Open the stream and read until the first visible token; the attempt stays open after."""
        attempt = await _open_attempt(ctx, account)
        assembler = _assembler(ctx.req)
        pending: list = []
        ended = False
        try:
            while True:
                try:
                    event = await attempt.events.__anext__()
                except StopAsyncIteration:
                    ended = True
                    break
                pending.extend(assembler.feed(event))
                if assembler.started or (_starts_answer(event) and not assembler.holding) or assembler.done:
                    break
            if ended:
                # The whole answer came before anything was visible (e.g. a forced tool call that
                # never came): finish now, so a failure is still a plain HTTP error.
                pending.extend(await _finish(assembler, attempt))
        except BaseException as exc:
            await _abandon(attempt, exc)
            raise
        return attempt, assembler, pending, ended

    # keep: the lease lives in the response generator until the stream ends (_stream_body).
    attempt, assembler, pending, ended = await account_attempt(model=ctx.spec, work=work, keep=True)
    ctx.ttft_ms = int((time.monotonic() - ctx.t0) * 1000)
    encoder = mod.StreamEncoder(model=ctx.req.model, prompt_tokens=ctx.prompt_tokens,
                                include_usage=bool(getattr(ctx.req, "include_usage", False)), **_echo_of(ctx))
    return _sse_response(_stream_body(ctx, attempt, assembler, encoder, pending, ended))


def _stream_body(ctx: _Ctx, attempt: _Attempt, assembler, encoder, pending: list, ended: bool):
    """The response generator (gateway/sse.py): owns the open upstream stream and its lease from here on."""

    async def finish() -> tuple[list, Any]:
        tail = [] if ended else await _finish(assembler, attempt)
        return tail, assembler.result

    async def keep(enc) -> None:
        await _keep(ctx, getattr(enc, "final", None))

    async def on_end(status: str, error: GatewayError | None) -> None:
        await attempt.close(error, answer_started=True)
        try:
            usage = usage_for(prompt_tokens=ctx.prompt_tokens, result=assembler.result)
        except Exception:
            usage = None
        usage_record(entry=ctx.usage_entry(lease=attempt.lease, status=status, error=error, usage=usage))

    source = None if ended or assembler.done else attempt.events
    return sse_turn_body(encoder=encoder, pending=pending, source=source, feed=assembler.feed,
                         done=lambda: assembler.done, finish=finish, keep=keep, on_end=on_end,
                         interval=_keepalive_interval(), label=ctx.spec.id)


def _sse_response(body) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
    for name, value in SSE_HEADERS.items():
        response[name] = value
    return response


async def _media_dispatch(*, req, spec: ModelSpec, family: str, principal):
    """Image, image-edit and video model ids through a chat endpoint: gateway/media_chat.py produces
    the turn as pieces (progress as reasoning, the result as text), rendered here like any chat
    turn. Validation and failures before the first piece are HTTP errors; later ones the family's
    mid-stream error event. One ledger row per request (media.common.media_ledger)."""
    fmt = getattr(req, "output_format", None)
    if fmt is not None and fmt.active:  # media answers are images or video: no JSON to give
        raise InvalidRequest(f"Invalid value for '{fmt.param}': '{fmt.kind}' needs a chat model; '{spec.id}' answers "
                             "with images or video.", param=fmt.param, code="unsupported_value")
    mod = _family_module(family)
    ptokens = prompt_tokens(flatten(req))
    pieces = media_chat_pieces(req=req, spec=spec, principal=principal).__aiter__()
    endpoint = ENDPOINTS.get(family, family)
    t0 = time.monotonic()
    if not req.stream:
        try:
            got = [p async for p in pieces]
        except BaseException as exc:
            media_ledger(endpoint=endpoint, model=spec.id, principal=principal, t0=t0, error=exc)
            raise
        media_ledger(endpoint=endpoint, model=spec.id, principal=principal, t0=t0, error=None)
        obj = mod.body(result=media_chat_result(got), model=req.model, prompt_tokens=ptokens, **_echo(family=family, req=req))
        await _store(family=family, req=req, principal=principal, obj=obj)
        return obj

    # Hold the response until the first piece: validation errors stay HTTP errors.
    try:
        first = await pieces.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException as exc:
        media_ledger(endpoint=endpoint, model=spec.id, principal=principal, t0=t0, error=exc, stream=True)
        raise
    encoder = mod.StreamEncoder(model=req.model, prompt_tokens=ptokens, include_usage=bool(getattr(req, "include_usage", False)),
                                **_echo(family=family, req=req))
    seen = [first] if first is not None else []

    def feed(piece) -> list:
        seen.append(piece)
        return [piece]

    async def finish() -> tuple[list, Any]:
        return [], media_chat_result(seen)

    async def keep(enc) -> None:
        await _store(family=family, req=req, principal=principal, obj=getattr(enc, "final", None))

    async def on_end(status: str, error: GatewayError | None) -> None:
        failure = asyncio.CancelledError() if status == "cancelled" else error
        media_ledger(endpoint=endpoint, model=spec.id, principal=principal, t0=t0, error=failure, stream=True)

    body = sse_turn_body(encoder=encoder, pending=list(seen), source=pieces, feed=feed, done=lambda: False,
                         finish=finish, keep=keep, on_end=on_end, interval=_keepalive_interval(), label=spec.id)
    return _sse_response(body)
