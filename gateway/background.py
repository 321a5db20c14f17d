"""Responses API background mode: `background: true` answers `queued` at once and a Celery worker
runs the request through the same pipeline as a foreground stream (services.chat_run).

Life of a background response (one StoredResponse row, `background=True`):
- create: the request is parsed and its chain resolved now (so a bad request is a 400 now, not a
  failed job later); the row is written `queued` with the request body, and the job is enqueued
  (`gateway.response_background_run`).
- run: a worker claims the row with a conditional update (queued → in_progress, `attempts` + 1),
  runs the request as a stream and keeps every event it produces as a StoredResponseEvent row,
  then writes the final object with its status (completed, incomplete or failed), all in the same
  transaction as the terminal event.
- every write of a run is fenced: it applies only while the row is still in progress under the
  run's own attempt number. A run that loses the fence (the response was cancelled, or re-queued
  after its worker was taken for dead) stops: its upstream stream is closed and its account slot
  released, because the consuming task is cancelled (services.py's generator cleans up on
  cancellation, as for a client that goes away).
- a watcher next to the run checks the row every WATCH_SECONDS (cancel within about that long),
  stamps `heartbeat_at` every HEARTBEAT_SECONDS, and fails the run after
  `responses.background_timeout_sec`.
- restart safety: the task is `acks_late`; besides, `responses_background_recover` (at worker
  start and from beat every 30 s) puts back in the queue a run whose worker is
  gone (a dead process on this host, or no heartbeat for STALE_SECONDS) and re-sends queued jobs
  whose broker message may have been lost. The claim makes duplicate deliveries harmless. After
  MAX_ATTEMPTS runs the response fails instead.
- a re-run after a restart does not rewrite what a client may already have read: sequence numbers
  continue after the last stored event and are never reused. The re-run's events start with a new
  `response.created` (same response id): a client following the stream drops what it had
  accumulated for the response when it sees a second `response.created`. Each event row records
  its attempt.
- stream: `GET /v1/responses/{id}?stream=true&starting_after=N` replays the stored events after N
  and tails new ones (polling every POLL_SECONDS, keep-alive comments every `chat.keepalive_interval`)
  until the response is finished.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import timedelta
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.db.models import F, Max
from django.http import StreamingHttpResponse
from django.utils import timezone

from core.celery import task_enqueue
from core.config import config
from grokweb.errors import GatewayError, InternalError, InvalidRequest
from gateway.models import StoredResponse, StoredResponseEvent
from gateway.sse import KEEPALIVE, KEEPALIVE_COMMENT, SSE_HEADERS, StreamCut, with_keepalive
from gateway.translate import responses as responses_tr
from gateway.translate.common import new_id

log = logging.getLogger(__name__)

ACTIVE = ("queued", "in_progress")
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
POLL_SECONDS = 0.2  # a stream follower looks for new events this often
WATCH_SECONDS = 0.5  # a running job notices a cancel (or a lost fence) within about this long
HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 60.0  # an in-progress job without a heartbeat for this long has lost its worker
MAX_ATTEMPTS = 3
DONE = b"data: [DONE]\n\n"


class _Fenced(Exception):
    """The run no longer owns the response (cancelled, or re-queued under a newer attempt)."""


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"  # per call: a prefork child has its own pid


def _timeout() -> float:
    try:
        return float(config().get("responses.background_timeout_sec"))
    except (KeyError, TypeError, ValueError):
        return 600.0


# --------------------------------------------------------------------------- create


async def response_background_create(*, req, body: dict[str, Any], principal) -> dict[str, Any] | StreamingHttpResponse:
    """Keep a parsed background request as a queued response and enqueue its run. With `stream:
    true` the answer is the response's event stream from the start (resumable later)."""
    rid = new_id("resp_", 8)
    obj = responses_tr.snapshot(request=req, rid=rid, created=int(time.time()), status="queued")
    await StoredResponse.objects.acreate(
        id=rid, api_key_id=getattr(principal, "key_id", None),
        previous_response_id=getattr(req, "previous_response_id", None) or "",
        response=obj, input_items=list(getattr(req, "input_items", ()) or ()),
        status="queued", background=True, request_body=body,
    )
    try:
        await sync_to_async(response_background_enqueue)(response_id=rid)
    except Exception:
        # the response is kept: responses_background_recover sends it again once the broker answers
        log.exception("enqueueing background response %s failed; recovery will send it again", rid)
    if req.stream:
        return response_events_stream(response_id=rid, starting_after=None)
    return obj


def response_background_enqueue(*, response_id: str) -> None:
    """Hand the run to Celery (in eager mode, to a thread, so the POST answers at once)."""
    task_enqueue(name="gateway.response_background_run", args=(response_id,), what=f"background response {response_id}",
                 run_eager=lambda: response_background_run(response_id=response_id))


# --------------------------------------------------------------------------- run


def response_background_run(*, response_id: str) -> None:
    """Run one queued background response to its end (the Celery task of the same name calls this).
    A response that is not queued any more (cancelled, finished, or taken by another worker) is skipped."""
    claimed = StoredResponse.objects.filter(id=response_id, background=True, status="queued").update(
        status="in_progress", attempts=F("attempts") + 1, worker_id=_worker_id(), heartbeat_at=timezone.now())
    if not claimed:
        log.info("background response %s: not queued any more, skipped", response_id)
        return
    row = StoredResponse.objects.get(id=response_id)
    _status_set(row, "in_progress")
    try:
        asyncio.run(_run(row))
    finally:
        connection.close()  # the run's ORM calls used this thread's connection: not kept between jobs


def _status_set(row: StoredResponse, status: str) -> None:
    """Show `status` in the kept response object too (what GET answers), fenced like every write."""
    row.response = {**row.response, "status": status}
    StoredResponse.objects.filter(id=row.id, status=status, attempts=row.attempts).update(response=row.response)


def _principal_of(key_id: int | None):
    """The caller as it was when the response was created (its key row's model allow-list and label)."""
    from gateway.auth import Principal
    from gateway.models import ApiKey

    if key_id is None:
        return Principal(key_id=None, label="app.api_key")
    key = ApiKey.objects.filter(id=key_id).values("label", "allowed_models").first() or {}
    return Principal(key_id=key_id, label=key.get("label", ""), allowed_models=tuple(key.get("allowed_models") or ()))


class _EventLog:
    """Writes one run's events, fenced by (status in_progress, attempts == this run's attempt)."""

    def __init__(self, row: StoredResponse, offset: int) -> None:
        self.rid = row.id
        self.attempt = row.attempts
        self.offset = offset  # the run's sequence numbers are the encoder's plus this
        self.buffer = b""
        self.finished = False

    def fence(self):
        return StoredResponse.objects.filter(id=self.rid, status="in_progress", attempts=self.attempt)

    def _parse(self, chunk: bytes) -> list[StoredResponseEvent]:
        self.buffer += chunk
        *frames, self.buffer = self.buffer.split(b"\n\n")
        out = []
        for frame in frames:
            data = next((line[6:] for line in frame.split(b"\n") if line.startswith(b"data: ")), None)
            if data is None or data == b"[DONE]":
                continue  # keep-alive comments and the end marker are the follower's own business
            event = orjson.loads(data)
            event["sequence_number"] = seq = self.offset + int(event.get("sequence_number", 0))
            out.append(StoredResponseEvent(response_id=self.rid, sequence_number=seq, attempt=self.attempt,
                                           type=str(event.get("type", ""))[:80], data=orjson.dumps(event).decode()))
        return out

    def write(self, chunk: bytes) -> None:
        events = self._parse(chunk)
        if not events:
            return
        final = None
        for ev in events:
            if ev.type in TERMINAL_EVENTS:
                final = orjson.loads(ev.data)["response"]
        with transaction.atomic():
            fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
            if final is not None:
                fields.update(status=final["status"], response=final, worker_id="")
            if not self.fence().update(**fields):
                raise _Fenced()
            StoredResponseEvent.objects.bulk_create(events)
        self.finished = final is not None

    def fail(self, exc: GatewayError) -> None:
        """End the run as failed with the family's own failure events: response.created and
        response.in_progress when this run has written nothing yet, then response.failed and error,
        numbered after the last stored event."""
        row = StoredResponse.objects.get(id=self.rid)
        events = StoredResponseEvent.objects.filter(response_id=self.rid)
        top = events.aggregate(top=Max("sequence_number"))["top"]
        nxt = 0 if top is None else top + 1
        frames = responses_tr.StreamEncoder(model=row.response.get("model", ""), prompt_tokens=0,
                                            request=_request_of(row)).error(exc)
        if events.filter(attempt=self.attempt).exists():
            frames = frames.split(b"\n\n", 2)[2]  # the run already opened the stream: only the failure
            nxt -= 2  # the encoder numbered the two frames dropped 0 and 1
        self.offset = nxt
        self.buffer = b""
        self.write(frames)


def _request_of(row: StoredResponse):
    from gateway import services

    req = services.chat_parse(family="responses", raw=orjson.dumps(row.request_body))
    req.response_id = row.id
    req.created_at = int(row.response.get("created_at") or time.time())
    req.stream = True  # a background run is always produced as a stream: its events are what is kept
    return req


async def _run(row: StoredResponse) -> None:
    offset = await StoredResponseEvent.objects.filter(response_id=row.id).aaggregate(top=Max("sequence_number"))
    log_ = _EventLog(row, 0 if offset["top"] is None else offset["top"] + 1)
    principal = await sync_to_async(_principal_of)(row.api_key_id)
    consumer = asyncio.create_task(_consume(row, principal, log_))
    started = time.monotonic()
    limit = _timeout()
    beat_at = started
    ended: str | None = None
    while not consumer.done():
        await asyncio.wait({consumer}, timeout=WATCH_SECONDS)
        if consumer.done():
            break
        state = await StoredResponse.objects.filter(id=row.id).values("status", "attempts").afirst()
        if log_.finished:
            continue  # the final object is written: let the pipeline close its stream and report
        if state is None or state["status"] != "in_progress" or state["attempts"] != row.attempts:
            ended = "fenced"
        elif time.monotonic() - started > (limit := _timeout()):  # each round: a change applies at once
            ended = "timeout"
        elif time.monotonic() - beat_at >= HEARTBEAT_SECONDS:
            beat_at = time.monotonic()
            await log_.fence().aupdate(heartbeat_at=timezone.now())
        if ended:
            consumer.cancel()
            break
    try:
        await consumer
    except asyncio.CancelledError:
        pass
    except _Fenced:
        ended = "fenced"
    except Exception as exc:
        log.exception("background response %s failed", row.id)
        if not log_.finished:
            await _fail(log_, InternalError(f"Internal error while running this response ({type(exc).__name__})."))
        ended = None
    if ended == "timeout":
        await _fail(log_, GatewayError(f"The response did not finish within responses.background_timeout_sec "
                                       f"({limit:g} s).", code="timeout"))
    elif ended == "fenced":
        log.info("background response %s: cancelled or taken over, run %d stopped", row.id, row.attempts)
    await sync_to_async(connection.close)()  # the thread the ORM calls ran on: no connection kept between jobs


async def _fail(log_: _EventLog, exc: GatewayError) -> None:
    try:
        await sync_to_async(log_.fail)(exc)
    except _Fenced:
        pass


async def _consume(row: StoredResponse, principal, log_: _EventLog) -> None:
    """The one pipeline: parse, resolve the chain, services.chat_run as a stream; keep its events."""
    from gateway import services
    from gateway.stored_responses import response_chain_resolve

    write = sync_to_async(log_.write)
    try:
        req = await sync_to_async(_request_of)(row)
        if req.previous_response_id:
            history = await response_chain_resolve(response_id=req.previous_response_id, principal=principal)
            req.turns[req.history_at:req.history_at] = responses_tr.history_turns(history)
        result = await services.chat_run(req=req, family="responses", principal=principal)
    except GatewayError as exc:
        await sync_to_async(log_.fail)(exc)
        return
    if isinstance(result, dict):  # an image model through /v1/responses answers whole
        result.update(id=row.id, background=True)
        await write(b"event: response.completed\ndata: " + orjson.dumps(
            {"type": "response.completed", "sequence_number": 0, "response": result}) + b"\n\n")
        return
    # One write (a transaction) at a time, each taking every chunk that arrived while the previous
    # one ran: a slow answer is kept chunk by chunk, a fast one in a few batches (a transaction per
    # token cost about 3 ms on SQLite, more than the simulator takes to produce one).
    pending: list[bytes] = []
    writing: asyncio.Future | None = None
    async for chunk in result.streaming_content:
        pending.append(chunk)
        if writing is None or writing.done():
            if writing is not None:
                writing.result()  # a lost fence (_Fenced) stops the run here
            writing = asyncio.ensure_future(write(b"".join(pending)))
            pending = []
    if writing is not None:
        await writing
    if pending:
        await write(b"".join(pending))


# --------------------------------------------------------------------------- recover


def _worker_gone(worker_id: str) -> bool:
    """True when the worker holding a run is known to be dead (same host, process not alive)."""
    host, _, pid = (worker_id or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def responses_background_recover(*, now=None, stale_after: float = STALE_SECONDS) -> dict[str, list[str]]:
    """Put back in the queue runs whose worker is gone; re-send queued jobs whose message may be lost.
    A response that has had MAX_ATTEMPTS runs fails instead."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=stale_after)
    out: dict[str, list[str]] = {"requeued": [], "failed": [], "resent": []}
    running = StoredResponse.objects.filter(background=True, status="in_progress").values_list(
        "id", "heartbeat_at", "worker_id", "attempts")
    for rid, beat, worker, attempts in running:
        if not (beat is None or beat < limit or _worker_gone(worker)):
            continue
        fence = StoredResponse.objects.filter(id=rid, status="in_progress", attempts=attempts)
        if attempts >= MAX_ATTEMPTS:
            row = StoredResponse.objects.get(id=rid)
            log_ = _EventLog(row, 0)
            try:
                log_.fail(GatewayError(f"The worker running this response stopped; gave up after {attempts} "
                                       "attempts.", code="worker_lost"))
                out["failed"].append(rid)
            except _Fenced:
                pass
            continue
        if fence.update(status="queued", worker_id=""):
            _status_set(StoredResponse.objects.get(id=rid), "queued")
            out["requeued"].append(rid)
            response_background_enqueue(response_id=rid)
    for rid in StoredResponse.objects.filter(background=True, status="queued", created_at__lt=limit).values_list(
            "id", flat=True):
        if rid not in out["requeued"]:
            out["resent"].append(rid)
            response_background_enqueue(response_id=rid)
    if any(out.values()):
        log.warning("background response recovery: %s", out)
    return out


# --------------------------------------------------------------------------- cancel and follow


async def response_cancel(*, row: dict[str, Any]) -> dict[str, Any]:
    """Cancel a queued or running background response (`row`: its id, background, status, response).
    Cancelling a cancelled one answers it again; a finished one cannot be cancelled (400)."""
    rid = row["id"]
    if not row["background"]:
        raise InvalidRequest("Only responses created with 'background': true can be cancelled.", param=None)
    obj = {**row["response"], "status": "cancelled"}
    if row["status"] in ACTIVE:
        if await StoredResponse.objects.filter(id=rid, status__in=ACTIVE).aupdate(
                status="cancelled", response=obj, worker_id=""):
            return obj
        row = await StoredResponse.objects.filter(id=rid).values("status", "response").afirst() or row
    if row["status"] == "cancelled":
        return row["response"]
    raise InvalidRequest(f"Cannot cancel a response whose status is '{row['status']}'.", param=None)


def starting_after_parse(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -2
    if value < -1:
        raise InvalidRequest("Invalid 'starting_after': it must be an integer of at least 0 (a sequence number).",
                             param="starting_after")
    return value


def response_events_stream(*, response_id: str, starting_after: int | None) -> StreamingHttpResponse:
    """The stored events of a background response after `starting_after`, then new ones as the run
    writes them, until the response is finished (then `data: [DONE]`)."""
    response = StreamingHttpResponse(_followed(response_id, -1 if starting_after is None else starting_after),
                                     content_type="text/event-stream; charset=utf-8")
    for name, value in SSE_HEADERS.items():
        response[name] = value
    return response


def _keepalive_interval() -> float:
    try:
        value = float(config().get("chat.keepalive_interval"))
    except (KeyError, TypeError, ValueError):
        value = 15.0
    return value if value > 0 else 15.0


async def _followed(rid: str, after: int):
    """_follow with the gateway's stream keep-alives and shutdown cut (gateway/sse.py). Cut at
    shutdown, the stream just ends: the client resumes from the last sequence number it read."""
    source = with_keepalive(_follow(rid, after), interval=_keepalive_interval())
    try:
        async for item in source:
            yield KEEPALIVE_COMMENT if item is KEEPALIVE else item
    except StreamCut:
        return
    finally:
        await source.aclose()


async def _follow(rid: str, after: int):
    while True:
        # status first, events second: a response seen finished has all its events written already
        state = await StoredResponse.objects.filter(id=rid).values("status").afirst()
        rows = [r async for r in StoredResponseEvent.objects.filter(response_id=rid, sequence_number__gt=after)
                .order_by("sequence_number").values_list("sequence_number", "type", "data")[:500]]
        if rows:
            after = rows[-1][0]
            yield b"".join(b"event: " + t.encode() + b"\ndata: " + d.encode() + b"\n\n" for _, t, d in rows)
            continue
        if state is None or state["status"] not in ACTIVE:
            yield DONE
            return
        await asyncio.sleep(POLL_SECONDS)
