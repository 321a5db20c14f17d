"""Heartbeats of the Celery worker and beat: /readyz and the admin index say which one is missing and
how to start it, and stay 200 (chat works without them)."""
from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core.heartbeat import heartbeat_warnings
from core.models import Heartbeat
from grok2api.schedule import WORKER_HEARTBEAT_NAME, quota_refresh_name
from grok2api.tasks import worker_heartbeat


def _seen(name: str, seconds_ago: float, host: str = "w1@box") -> None:
    Heartbeat.objects.update_or_create(name=name, defaults={"seen_at": timezone.now() - timedelta(seconds=seconds_ago), "host": host})


def _celery(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "Celery" in w]


@pytest.mark.django_db
def test_readyz_stays_200_and_names_what_to_start_when_no_worker_or_beat_was_ever_seen(client):
    Heartbeat.objects.all().delete()
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    worker, beat = _celery(response.json()["details"]["warnings"])
    assert worker.startswith("no Celery worker has been seen yet — start `celery -A grok2api worker`")
    assert "unless --no-worker" in worker and "video jobs and background responses stay queued" in worker
    assert beat.startswith("no Celery beat has been seen yet — start `celery -A grok2api beat`")


@pytest.mark.django_db
def test_a_worker_missing_longer_than_its_limit_is_reported_with_its_age():
    now = timezone.now()
    Heartbeat.objects.create(name="worker", seen_at=now - timedelta(seconds=95), host="celery@web-1")
    Heartbeat.objects.create(name="beat", seen_at=now - timedelta(seconds=5), host="beat-host")
    (warning,) = heartbeat_warnings(now=now)
    assert warning.startswith("no Celery worker seen for 95 s (last: celery@web-1) — start `celery -A grok2api worker`")


@pytest.mark.django_db
def test_recent_heartbeats_clear_the_warnings_and_a_late_beat_is_reported(client):
    _seen("worker", 20)
    _seen("beat", 5)
    assert _celery(client.get("/readyz").json()["details"]["warnings"]) == []
    _seen("beat", 61)
    (warning,) = _celery(client.get("/readyz").json()["details"]["warnings"])
    assert warning.startswith("no Celery beat seen for 6")


@pytest.mark.django_db
def test_the_worker_heartbeat_task_stamps_the_worker_row():
    Heartbeat.objects.all().delete()
    worker_heartbeat.apply()
    assert timezone.now() - Heartbeat.objects.get(name="worker").seen_at < timedelta(minutes=1)


@pytest.mark.django_db
def test_the_admin_index_shows_the_background_processes_and_what_to_start(client):
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", None))
    Heartbeat.objects.all().delete()
    _seen("beat", 3, host="beat@box")
    page = client.get("/admin/").content.decode()
    assert 'id="background-processes"' in page and "beat@box" in page
    assert "no Celery worker has been seen yet — start `celery -A grok2api worker`" in page
    assert "no Celery beat" not in page


@pytest.mark.django_db(transaction=True)
def test_serve_with_its_embedded_worker_seeds_the_schedule_and_clears_the_warnings(gateway_factory):
    from media.tests.e2e import wait_until

    Heartbeat.objects.all().delete()
    PeriodicTask.objects.all().delete()
    gateway = gateway_factory(embedded_worker=True)
    # migrate (run by serve) seeds the rows before any beat starts
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert {quota_refresh_name("basic"), quota_refresh_name("super"), quota_refresh_name("heavy"), WORKER_HEARTBEAT_NAME} <= names

    def clear():
        body = httpx.get(gateway.url + "/readyz", timeout=10).json()
        return body["status"] == "ok" and not _celery(body["details"]["warnings"])

    wait_until(clear, timeout=120, interval=0.5, what="the embedded worker and beat to stamp their heartbeats")
    assert {"worker", "beat"} <= set(Heartbeat.objects.values_list("name", flat=True))
