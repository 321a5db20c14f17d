"""Video generation (docs/upstream-protocol.md §8) and the video jobs behind /v1/videos.

One video: reference uploads + image posts (or one video post), the first segment and extension
segments (12 = 6+6, 16 = 10+6, 20 = 10+10), progress scaled across segments, the result downloaded
with the same account into the local cache. A job is a VideoJob row run by the Celery task
`media.video_job_run` (or a thread in eager mode), resumable from `upstream_state` after a lost
worker; its answer is OpenAI's video object `{"id","object":"video","created_at","status","model",
"progress","prompt","seconds","size","quality","completed_at","error"}`. A moderated video fails its
job with `content_policy_violation`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.attempt import AccountAttempt, account_attempt
from grokweb.errors import Conflict, GatewayError, InternalError, InvalidRequest, NotFound
from grokweb.registry import model_get
from grokweb.events import VideoProgress, VideoResult
from grokweb.payloads import video_extension_payload, video_payload, video_segments
from core.celery import task_enqueue
from media import cache
from media.common import (
    VIDEO_DOWNLOAD_MAX,
    assets_url,
    call_sync,
    chat_flags,
    download_to_cache,
    media_ledger,
    moderated_error,
    no_result_error,
    principal_check,
)
from media.models import VideoJob, VideoJobStatus
from media.params import MAX_VIDEO_REFERENCES, ImageInput, VideoParams, image_input, too_many

log = logging.getLogger(__name__)

VIDEO_MAX_ATTEMPTS = 3  # runs of one job (first run + resumes after a lost worker)
HEARTBEAT_SECONDS = 10.0
PROGRESS_WRITE_SECONDS = 1.0
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def _stale_after() -> float:
    try:
        return float(os.environ.get("MEDIA_VIDEO_STALE_SECONDS", "120"))
    except ValueError:
        return 120.0


# =========================================================================== video (shared core)


@dataclass
class VideoOut:
    url: str
    video_id: str
    thumbnail_url: str = ""


async def video_generate(
    *,
    client: Any,
    lease: Any,
    params: VideoParams,
    references: list[ImageInput],
    state: dict,
    on_progress: Callable[[int], Awaitable[None]],
    save_state: Callable[[dict], Awaitable[None]],
) -> VideoOut:
    """Run (or resume, from `state`) the segments of one video on one account."""
    segments = video_segments(params.seconds)
    temporary = chat_flags()["temporary"]
    if not state.get("parent_post_id"):
        refs: list[str] = []
        parent = ""
        for img in references:
            up = await client.upload_file(name=img.name, mime=img.mime, data=img.data)
            ref_url = assets_url(up.file_uri)
            refs.append(ref_url)
            post = await client.media_post_create(media_type="image", media_url=ref_url)
            parent = parent or post
        if not parent:
            parent = await client.media_post_create(media_type="video", prompt=params.prompt)
        state.clear()
        state.update({"parent_post_id": parent, "image_refs": refs, "segments": []})
        await save_state(state)
    parent = state["parent_post_id"]
    done: list[dict] = state.setdefault("segments", [])
    total = sum(segments)
    elapsed = sum(int(s["seconds"]) for s in done)
    for i, seconds in enumerate(segments):
        if i < len(done):
            continue
        if i == 0:
            payload = video_payload(
                prompt=params.prompt,
                parent_post_id=parent,
                size=params.size,
                video_length=seconds,
                resolution=params.resolution_name,
                preset=params.preset,
                image_references=state.get("image_refs") or (),
                temporary=temporary,
            )
            referer = "/imagine"
        else:
            payload = video_extension_payload(
                prompt=params.prompt,
                parent_post_id=parent,
                extend_post_id=done[-1]["post_id"],
                elapsed_seconds=float(elapsed),
                video_length=seconds,
                size=params.size,
                resolution=params.resolution_name,
                preset=params.preset,
                temporary=temporary,
            )
            referer = f"/imagine/post/{parent}"
        result = None
        async with client.chat_stream(payload=payload, referer_path=referer, mode=lease.mode) as events:
            async for ev in events:
                if isinstance(ev, VideoProgress):
                    overall = (elapsed + seconds * max(0, min(100, ev.progress)) / 100) / total * 100
                    await on_progress(max(1, min(99, int(overall))))
                elif isinstance(ev, VideoResult):
                    result = ev
                    break
        if result is None:
            raise no_result_error("a video", "/rest/app-chat/conversations/new")
        if result.moderated:
            raise moderated_error("video")
        url = result.url or (assets_url(f"users/{lease.account.user_id}/{result.asset_id}/content") if result.asset_id else "")
        if not url:
            raise no_result_error("a video URL", "/rest/app-chat/conversations/new")
        done.append(
            {
                "seconds": seconds,
                "post_id": result.video_post_id or result.video_id,
                "video_id": result.video_id,
                "url": url,
                "thumbnail_url": result.thumbnail_url,
            }
        )
        elapsed += seconds
        await save_state(state)
        await on_progress(max(1, min(99, int(elapsed / total * 100))))
    last = done[-1]
    return VideoOut(url=last["url"], video_id=last.get("video_id", ""), thumbnail_url=last.get("thumbnail_url", ""))


# =========================================================================== video jobs


def _job_owner_q(principal: Any) -> dict:
    return {"api_key_id": getattr(principal, "key_id", None)}


def video_job_create(*, principal: Any, params: VideoParams, references: list[ImageInput]) -> VideoJob:
    """Persist the job and its reference images (DATA_DIR/videojobs/<id>/), then enqueue it."""
    principal_check(principal, params.spec)
    too_many(len(references), MAX_VIDEO_REFERENCES, "input_reference")
    job_id = "video_" + uuid.uuid4().hex
    paths: list[str] = []
    if references:
        folder = Path(settings.DATA_DIR) / "videojobs" / job_id
        folder.mkdir(parents=True, exist_ok=True)
        for i, ref in enumerate(references):
            path = folder / f"ref{i}_{ref.name}"
            path.write_bytes(ref.data)
            paths.append(str(path.relative_to(settings.DATA_DIR)))
    job = VideoJob.objects.create(
        id=job_id,
        api_key_id=getattr(principal, "key_id", None),
        model=params.spec.id,
        prompt=params.prompt,
        seconds=params.seconds,
        size=params.size,
        resolution_name=params.resolution_name,
        preset=params.preset,
        reference_paths=paths,
    )
    video_job_enqueue(job_id=job.id)
    return job


def video_job_enqueue(*, job_id: str) -> None:
    """Hand the job to Celery (in eager mode, to a thread, so the POST answers at once)."""
    task_enqueue(name="media.video_job_run", args=(job_id,), what=f"video job {job_id}",
                 run_eager=lambda: video_job_run(job_id=job_id))


def video_job_get(*, principal: Any, job_id: str) -> VideoJob:
    job = VideoJob.objects.filter(id=job_id, **_job_owner_q(principal)).first() if re.fullmatch(r"video_[0-9a-f]{32}", job_id or "") else None
    if job is None:
        raise NotFound(f"No video job with id '{job_id}'.", param="video_id", code="video_not_found")
    return job


def video_job_content(*, principal: Any, job_id: str) -> cache.CachedFile:
    job = video_job_get(principal=principal, job_id=job_id)
    if job.status != VideoJobStatus.COMPLETED:
        detail = f"it is {job.status.replace('_', ' ')}"
        if job.status == VideoJobStatus.FAILED:
            detail += f": {job.error_message}"
        raise Conflict(f"The video '{job_id}' is not ready ({detail}).", param="video_id", code="video_not_ready")
    found = cache.media_cache_path(media_type="video", media_id=job.id)
    if found is None:
        raise NotFound(
            f"The video '{job_id}' was removed from the local media cache (cache.local.video_max_mb).",
            param="video_id",
            code="video_expired",
        )
    return found


def video_job_render(job: VideoJob) -> dict:
    """OpenAI's video object (docs/upstream-protocol.md §12.7)."""
    out: dict[str, Any] = {
        "id": job.id,
        "object": "video",
        "created_at": int(job.created_at.timestamp()),
        "status": job.status,
        "model": job.model,
        "progress": 100 if job.status == VideoJobStatus.COMPLETED else int(job.progress),
        "prompt": job.prompt,
        "seconds": str(job.seconds),
        "size": job.size,
        "quality": "standard",
        "completed_at": int(job.completed_at.timestamp()) if job.completed_at and job.status == VideoJobStatus.COMPLETED else None,
        "expires_at": None,
        "remixed_from_video_id": None,
        "error": {"code": job.error_code or "video_generation_failed", "message": job.error_message}
        if job.status == VideoJobStatus.FAILED
        else None,
    }
    return out


def _job_fail(job_id: str, *, code: str, message: str) -> None:
    VideoJob.objects.filter(id=job_id).exclude(status=VideoJobStatus.COMPLETED).update(
        status=VideoJobStatus.FAILED, error_code=code[:60], error_message=message, completed_at=timezone.now(), worker_id=""
    )


def video_job_run(*, job_id: str) -> None:
    """Run one queued job to completion or failure (the Celery task `video_job_run` calls this).

    The job is claimed with a conditional update (queued → in_progress), so a duplicate delivery or
    a re-enqueue of a job that another worker already took is a no-op.
    """
    now = timezone.now()
    claimed = VideoJob.objects.filter(id=job_id, status=VideoJobStatus.QUEUED).update(
        status=VideoJobStatus.IN_PROGRESS,
        started_at=Coalesce(F("started_at"), now),
        heartbeat_at=now,
        worker_id=WORKER_ID,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        log.info("video job %s: not queued any more, skipped", job_id)
        return
    job = VideoJob.objects.get(id=job_id)
    t0, error = time.monotonic(), None
    try:
        asyncio.run(_video_job_async(job))
    except GatewayError as exc:
        error = exc
        log.info("video job %s failed: %r", job_id, exc)
        _job_fail(job_id, code=exc.code or exc.type or "video_generation_failed", message=exc.message)
    except Exception as exc:
        error = InternalError(f"Internal error while generating the video ({type(exc).__name__}).", code="video_generation_failed")
        log.exception("video job %s crashed", job_id)
        _job_fail(job_id, code="video_generation_failed", message=error.message)
    owner = type("Owner", (), {"key_id": job.api_key_id, "label": ""})()
    media_ledger(endpoint="videos", model=job.model, principal=owner, t0=t0, error=error)


def _job_references(job: VideoJob) -> list[ImageInput]:
    refs = []
    for i, rel in enumerate(job.reference_paths or []):
        path = Path(settings.DATA_DIR) / rel
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidRequest(f"Reference image {i + 1} of this job is missing from DATA_DIR ({rel}).", param="input_reference") from None
        refs.append(image_input(data, name=path.name, param=f"input_reference[{i}]"))
    return refs


def _job_write(job_id: str, **fields: Any) -> None:
    VideoJob.objects.filter(id=job_id, status=VideoJobStatus.IN_PROGRESS).update(**fields)


def _job_complete(job_id: str, *, size: int, account_id: int | None) -> None:
    VideoJob.objects.filter(id=job_id, status=VideoJobStatus.IN_PROGRESS).update(
        status=VideoJobStatus.COMPLETED,
        progress=100,
        completed_at=timezone.now(),
        heartbeat_at=timezone.now(),
        file_name=f"{job_id}.mp4",
        file_size=size,
        worker_id="",
        error_code="",
        error_message="",
    )


async def _video_job_async(job: VideoJob) -> None:
    spec = model_get(job.model)
    if spec is None:
        raise InvalidRequest(f"Unknown model '{job.model}'.", param="model")
    params = VideoParams(spec=spec, prompt=job.prompt, seconds=job.seconds, size=job.size, resolution_name=job.resolution_name, preset=job.preset)
    references = await call_sync(_job_references, job=job)
    state: dict = dict(job.upstream_state or {})
    last = {"progress": int(job.progress), "at": 0.0}

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await call_sync(_job_write, job_id=job.id, heartbeat_at=timezone.now())

    async def on_progress(pct: int) -> None:
        now = time.monotonic()
        if pct <= last["progress"]:
            return
        # Throttled: at most one write per PROGRESS_WRITE_SECONDS unless the jump is large.
        if now - last["at"] < PROGRESS_WRITE_SECONDS and pct - last["progress"] < 10:
            return
        last.update(progress=pct, at=now)
        await call_sync(_job_write, job_id=job.id, progress=pct, heartbeat_at=timezone.now())

    async def save_state(st: dict) -> None:
        await call_sync(_job_write, job_id=job.id, upstream_state=dict(st), heartbeat_at=timezone.now())

    async def work(attempt: AccountAttempt) -> VideoOut:
        client, lease = attempt.client, attempt.lease
        # Upstream posts belong to the account that created them: resume only on the same account.
        if state.get("account_id") not in (None, lease.account.id):
            state.clear()
        state["account_id"] = lease.account.id
        await call_sync(_job_write, job_id=job.id, account_id=lease.account.id)
        out = await video_generate(
            client=client, lease=lease, params=params, references=references, state=state, on_progress=on_progress, save_state=save_state
        )
        found = await download_to_cache(client=client, url=out.url, media_type="video", media_id=job.id, max_bytes=VIDEO_DOWNLOAD_MAX)
        await call_sync(_job_complete, job_id=job.id, size=found.size, account_id=lease.account.id)
        return out

    beat = asyncio.create_task(heartbeat())
    try:
        await account_attempt(model=spec, work=work)
    finally:
        beat.cancel()
        try:
            await beat
        except (asyncio.CancelledError, Exception):
            pass
        # The ORM calls above ran on asgiref's shared thread: do not leave its connection open
        # between jobs (PostgreSQL counts it; Django reopens one when needed).
        await call_sync(_close_connection)


def _close_connection() -> None:
    connection.close()


def _worker_dead(worker_id: str) -> bool:
    """True when the worker that holds a job is known to be gone (same host, process not alive)."""
    host, _, pid = (worker_id or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def video_jobs_recover(*, now=None, stale_after: float | None = None) -> dict[str, list[str]]:
    """Find jobs nobody is running and resume (re-enqueue) or fail them. Never leaves a job in progress forever.

    - in_progress with a heartbeat older than `stale_after` seconds, or held by a dead local worker:
      attempts < VIDEO_MAX_ATTEMPTS → back to queued and enqueued (resumes from `upstream_state`);
      otherwise failed with a reason;
    - queued for longer than `stale_after` (the broker message was lost): enqueued again (the
      conditional claim makes duplicates harmless).
    """
    now = now or timezone.now()
    limit = now - timedelta(seconds=_stale_after() if stale_after is None else stale_after)
    out: dict[str, list[str]] = {"resumed": [], "failed": [], "requeued": []}
    candidates = VideoJob.objects.filter(status=VideoJobStatus.IN_PROGRESS).values_list("id", "heartbeat_at", "worker_id", "attempts")
    for job_id, beat, worker, attempts in candidates:
        stale = beat is None or beat < limit
        if not stale and not _worker_dead(worker):
            continue
        if attempts >= VIDEO_MAX_ATTEMPTS:
            reason = (
                f"The worker running this job stopped (no heartbeat since {beat.isoformat() if beat else 'start'}); "
                f"gave up after {attempts} attempts."
            )
            n = VideoJob.objects.filter(id=job_id, status=VideoJobStatus.IN_PROGRESS, heartbeat_at=beat).update(
                status=VideoJobStatus.FAILED, error_code="video_worker_lost", error_message=reason, completed_at=now, worker_id=""
            )
            if n:
                out["failed"].append(job_id)
            continue
        n = VideoJob.objects.filter(id=job_id, status=VideoJobStatus.IN_PROGRESS, heartbeat_at=beat).update(
            status=VideoJobStatus.QUEUED, worker_id=""
        )
        if n:
            out["resumed"].append(job_id)
            video_job_enqueue(job_id=job_id)
    for job_id in VideoJob.objects.filter(status=VideoJobStatus.QUEUED, created_at__lt=limit).values_list("id", flat=True):
        if job_id not in out["resumed"]:
            out["requeued"].append(job_id)
            video_job_enqueue(job_id=job_id)
    if any(out.values()):
        log.warning("video job recovery: %s", out)
    return out


def video_job_retry(*, job_id: str) -> bool:
    """Admin "retry": a failed (or stuck) job starts again from scratch on a fresh attempt budget."""
    n = VideoJob.objects.filter(id=job_id).exclude(status=VideoJobStatus.COMPLETED).update(
        status=VideoJobStatus.QUEUED,
        progress=0,
        error_code="",
        error_message="",
        completed_at=None,
        heartbeat_at=None,
        worker_id="",
        attempts=0,
        upstream_state={},
    )
    if n:
        video_job_enqueue(job_id=job_id)
    return bool(n)
