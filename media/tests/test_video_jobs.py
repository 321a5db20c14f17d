"""Video jobs at the service level: the job object, recovery after a lost worker (resume or fail,
never in progress forever), resuming from the saved upstream state on the simulator, admin retry."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from core.config import config_save
from accounts.models import Account
from core.snapshots import stamp_bump
from media import videos
from media.models import VideoJob, VideoJobStatus

MODEL = "grok-imagine-video"


@pytest.fixture
def enqueued(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(videos, "video_job_enqueue", lambda *, job_id: calls.append(job_id))
    return calls


def _job(**kw) -> VideoJob:
    defaults = {"id": "video_" + os.urandom(16).hex(), "model": MODEL, "prompt": "p"}
    defaults.update(kw)
    return VideoJob.objects.create(**defaults)


@pytest.mark.django_db
def test_the_job_renders_as_openais_video_object():
    job = _job(seconds=12, size="720x1280")
    out = videos.video_job_render(job)
    assert out["object"] == "video" and out["status"] == "queued" and out["progress"] == 0
    assert out["seconds"] == "12" and out["size"] == "720x1280" and out["quality"] == "standard"
    assert out["error"] is None and out["completed_at"] is None and isinstance(out["created_at"], int)
    VideoJob.objects.filter(id=job.id).update(status="failed", error_code="upstream_error", error_message="boom", completed_at=timezone.now())
    failed = videos.video_job_render(VideoJob.objects.get(id=job.id))
    assert failed["error"] == {"code": "upstream_error", "message": "boom"}


@pytest.mark.django_db
def test_stale_in_progress_jobs_are_resumed_and_exhausted_ones_fail_with_a_reason(enqueued):
    old = timezone.now() - timedelta(minutes=10)
    stale = _job(status="in_progress", heartbeat_at=old, attempts=1, worker_id="elsewhere:1")
    spent = _job(status="in_progress", heartbeat_at=old, attempts=videos.VIDEO_MAX_ATTEMPTS, worker_id="elsewhere:2")
    alive = _job(status="in_progress", heartbeat_at=timezone.now(), attempts=1, worker_id="elsewhere:3")
    lost_msg = _job(created_at=old)
    fresh_queued = _job()
    out = videos.video_jobs_recover(stale_after=120)
    assert out["resumed"] == [stale.id] and out["failed"] == [spent.id] and out["requeued"] == [lost_msg.id]
    assert sorted(enqueued) == sorted([stale.id, lost_msg.id])
    assert VideoJob.objects.get(id=stale.id).status == VideoJobStatus.QUEUED
    spent = VideoJob.objects.get(id=spent.id)
    assert spent.status == VideoJobStatus.FAILED and spent.error_code == "video_worker_lost"
    assert "heartbeat" in spent.error_message and spent.completed_at
    assert VideoJob.objects.get(id=alive.id).status == VideoJobStatus.IN_PROGRESS
    assert VideoJob.objects.get(id=fresh_queued.id).status == VideoJobStatus.QUEUED
    # Nothing stays in progress forever: a job whose worker keeps dying (each run claims it,
    # attempts + 1, then goes silent) is failed once its attempts are spent.
    for _ in range(videos.VIDEO_MAX_ATTEMPTS):
        if VideoJob.objects.get(id=stale.id).status == VideoJobStatus.QUEUED:
            VideoJob.objects.filter(id=stale.id).update(status="in_progress", heartbeat_at=old, attempts=F("attempts") + 1)
        videos.video_jobs_recover(stale_after=120)
    assert VideoJob.objects.get(id=stale.id).status == VideoJobStatus.FAILED


@pytest.mark.django_db
def test_a_job_held_by_a_dead_local_worker_is_resumed_at_once(enqueued):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = f"{socket.gethostname()}:{proc.stdout.strip()}"
    job = _job(status="in_progress", heartbeat_at=timezone.now(), attempts=1, worker_id=dead)
    assert videos.video_jobs_recover(stale_after=3600)["resumed"] == [job.id]


@pytest.mark.django_db
def test_a_second_delivery_of_a_claimed_job_is_a_no_op():
    job = _job(status="in_progress", heartbeat_at=timezone.now(), attempts=1)
    videos.video_job_run(job_id=job.id)  # not queued: nothing happens, nothing fails
    assert VideoJob.objects.get(id=job.id).status == VideoJobStatus.IN_PROGRESS


@pytest.mark.django_db
def test_admin_retry_requeues_failed_jobs_but_not_completed_ones(enqueued):
    failed = _job(status="failed", error_code="x", error_message="y", attempts=3, upstream_state={"parent_post_id": "p"})
    done = _job(status="completed")
    assert videos.video_job_retry(job_id=failed.id) is True
    assert videos.video_job_retry(job_id=done.id) is False
    row = VideoJob.objects.get(id=failed.id)
    assert row.status == "queued" and row.attempts == 0 and row.error_code == "" and row.upstream_state == {}
    assert enqueued == [failed.id]


@pytest.fixture
def upstream(sim):
    """Point this process's runtime config at the simulator (the service runs in-process here)."""
    config_save(values={
        "upstream.web_base_url": sim.url, "upstream.assets_base_url": sim.url, "upstream.ws_base_url": sim.ws_url,
        "upstream.imagine_public_base_url": sim.sim.advertised_url,
    })
    return sim


def _account(token: str) -> None:
    acc = Account(pool="super")
    acc.set_token(token)
    acc.save()
    stamp_bump("accounts")


@pytest.mark.django_db(transaction=True)
def test_a_resumed_job_continues_from_the_last_finished_segment(upstream, monkeypatch, settings, tmp_path, ledger):
    settings.DATA_DIR = tmp_path
    token = "sim-super-resume" + os.urandom(4).hex()
    _account(token)
    # Run 1: the first segment succeeds, the extension hits an upstream 503 -> the job fails,
    # but the finished segment is in upstream_state.
    upstream.sim.queue(token, ["ok", "http=503"], endpoint="chat")
    job = _job(seconds=12)
    videos.video_job_run(job_id=job.id)
    row = VideoJob.objects.get(id=job.id)
    assert row.status == "failed" and row.error_message
    assert len(row.upstream_state["segments"]) == 1
    # Pretend the worker died instead (in progress, stale heartbeat): recovery resumes it.
    VideoJob.objects.filter(id=job.id).update(status="in_progress", heartbeat_at=timezone.now() - timedelta(hours=1),
                                              error_code="", error_message="", completed_at=None)
    monkeypatch.setattr(videos, "video_job_enqueue", lambda *, job_id: videos.video_job_run(job_id=job_id))
    assert videos.video_jobs_recover(stale_after=60)["resumed"] == [job.id]
    row = VideoJob.objects.get(id=job.id)
    assert row.status == "completed", row.error_message
    assert row.attempts == 2 and row.progress == 100 and row.file_size > 0
    chats = [r["body"]["responseMetadata"]["modelConfigOverride"]["modelMap"]["videoGenModelConfig"]
             for r in upstream.sim.requests(token=token, endpoint="chat")]
    # The first segment ran once; the resumed run went straight to the extension.
    flags = [c.get("isVideoExtension", False) for c in chats]
    assert flags.count(False) == 1 and flags[0] is False and flags[-1] is True
    assert (tmp_path / "files" / "videos" / f"{job.id}.mp4").is_file()
    # one usage-ledger entry per run: the failed one and the completed one
    assert [(e.endpoint, e.status) for e in ledger] == [("videos", "error"), ("videos", "ok")]
