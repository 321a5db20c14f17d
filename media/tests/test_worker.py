"""One real Celery worker (a `celery worker` subprocess on the same broker and database as this test):
a video job enqueued by the service is run by the worker, and a job left "in progress" by a dead
worker is resumed when the new worker starts. Kept to one test: a worker costs seconds to start."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from django.conf import settings

from core.config import config_save
from accounts.models import Account
from core.snapshots import stamp_bump
from grok2api.testing.fixtures import BASE_DIR, database_env
from media import videos
from media.models import VideoJob
from media.params import video_params
from media.tests.e2e import mp4_ok, wait_until


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_queued_jobs_and_resumes_a_dead_workers_job(sim, tmp_path):
    config_save(values={
        "upstream.web_base_url": sim.url, "upstream.assets_base_url": sim.url, "upstream.ws_base_url": sim.ws_url,
        "upstream.imagine_public_base_url": sim.sim.advertised_url,
    })
    acc = Account(pool="super")
    acc.set_token("sim-super-worker" + os.urandom(4).hex())
    acc.save()
    stamp_bump("accounts")
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    orphan = VideoJob.objects.create(id="video_" + os.urandom(16).hex(), model="grok-imagine-video", prompt="orphan",
                                     status="in_progress", attempts=1, worker_id=f"{socket.gethostname()}:{dead_pid}")
    env = {
        **os.environ,
        **database_env(),
        **sim.upstream_env(),
        "DATA_DIR": str(settings.DATA_DIR),  # same filesystem broker folders as this process
        "SECRET_KEY": settings.SECRET_KEY,
        "LOG_FILE_ENABLED": "false",
        "SNAPSHOT_POLLER": "1",
        "SNAPSHOT_POLL_INTERVAL": "0.2",
    }
    if settings.ENCRYPTION_KEY:
        env["GROK2API_ENCRYPTION_KEY"] = settings.ENCRYPTION_KEY
    if not env.get("DATABASE_URL"):
        env.pop("DATABASE_URL", None)
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "grok2api", "worker", "--pool=solo", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-l", "info", "-n", f"media-test-{os.getpid()}@%h"],
            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        params = video_params(model="grok-imagine-video", prompt="a worker test", seconds=6)
        job = videos.video_job_create(principal=None, params=params, references=[])

        def finished():
            assert worker.poll() is None, log_path.read_text(errors="replace")
            rows = dict(VideoJob.objects.filter(id__in=[job.id, orphan.id]).values_list("id", "status"))
            return all(s in ("completed", "failed") for s in rows.values()) and rows

        rows = wait_until(finished, timeout=90, interval=0.2, what="the worker to finish both jobs")
        assert rows == {job.id: "completed", orphan.id: "completed"}, log_path.read_text(errors="replace")[-4000:]
        for job_id in rows:
            mp4_ok((settings.DATA_DIR / "files" / "videos" / f"{job_id}.mp4").read_bytes())
        assert VideoJob.objects.get(id=orphan.id).attempts == 2  # resumed once by the new worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
