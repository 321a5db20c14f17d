"""gateway/background.py recovery (`responses_background_recover`, the beat task and worker-start
hook): which background responses it re-queues, re-sends or fails — real database, no server."""
from __future__ import annotations

import socket
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from gateway.background import MAX_ATTEMPTS, responses_background_recover
from gateway.models import StoredResponse, StoredResponseEvent
from gateway.tasks import responses_background_recover as recover_task
from core.celery import app

pytestmark = pytest.mark.django_db

BODY = {"model": "grok-4.20-fast", "input": "hi", "background": True}


def _row(rid: str, *, status: str, attempts: int, beat_age: float | None, worker: str = "elsewhere:1",
         age: float = 0) -> StoredResponse:
    now = timezone.now()
    return StoredResponse.objects.create(
        id=rid, background=True, status=status, attempts=attempts, worker_id=worker, request_body=BODY,
        created_at=now - timedelta(seconds=age), heartbeat_at=None if beat_age is None else now - timedelta(seconds=beat_age),
        response={"id": rid, "object": "response", "created_at": 1767225600, "status": status, "model": BODY["model"],
                  "output": []})


def test_a_run_whose_worker_went_silent_is_queued_again():
    _row("resp_stale", status="in_progress", attempts=1, beat_age=300)
    _row("resp_alive", status="in_progress", attempts=1, beat_age=1)
    out = responses_background_recover()
    assert out["requeued"] == ["resp_stale"]
    stale = StoredResponse.objects.get(id="resp_stale")
    assert (stale.status, stale.response["status"], stale.worker_id) == ("queued", "queued", "")
    assert StoredResponse.objects.get(id="resp_alive").status == "in_progress"


def test_a_run_held_by_a_dead_process_on_this_host_is_queued_again_at_once():
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    _row("resp_orphan", status="in_progress", attempts=1, beat_age=1, worker=f"{socket.gethostname()}:{dead}")
    assert responses_background_recover()["requeued"] == ["resp_orphan"]


def test_after_the_last_attempt_the_response_fails_with_its_events():
    row = _row("resp_tired", status="in_progress", attempts=MAX_ATTEMPTS, beat_age=300)
    for seq, kind in enumerate(("response.created", "response.in_progress")):
        StoredResponseEvent.objects.create(response=row, sequence_number=seq, attempt=MAX_ATTEMPTS, type=kind,
                                           data=orjson.dumps({"type": kind, "sequence_number": seq}).decode())
    assert recover_task.apply().get()["failed"] == ["resp_tired"]  # the Celery task, run eagerly
    row.refresh_from_db()
    assert row.status == "failed" and row.response["status"] == "failed"
    assert "gave up after 3 attempts" in row.response["error"]["message"]
    events = list(StoredResponseEvent.objects.filter(response=row).values_list("sequence_number", "type"))
    assert events == [(0, "response.created"), (1, "response.in_progress"), (2, "response.failed"), (3, "error")]


def test_a_long_queued_response_is_sent_again_and_finished_ones_are_left_alone():
    _row("resp_lost", status="queued", attempts=0, beat_age=None, age=300)
    _row("resp_new", status="queued", attempts=0, beat_age=None)
    _row("resp_done", status="completed", attempts=1, beat_age=300, age=300)
    _row("resp_cancelled", status="cancelled", attempts=1, beat_age=300, age=300)
    assert responses_background_recover() == {"requeued": [], "failed": [], "resent": ["resp_lost"]}


def test_recovery_is_on_the_beat_schedule():
    entry = app.conf.beat_schedule["gateway-responses-background-recover"]
    assert entry["task"] == recover_task.name and entry["schedule"] > 0
