"""gateway/stored_responses.py retention and gateway/tasks.py's beat entry (real database, no server)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.config import config_save
from gateway.models import StoredResponse
from gateway.tasks import responses_prune as prune_task
from grok2api.celery import app
from grok2api.snapshots import stamp_bump

pytestmark = pytest.mark.django_db


def _row(rid: str, age_days: float) -> StoredResponse:
    return StoredResponse.objects.create(id=rid, created_at=timezone.now() - timedelta(days=age_days),
                                         response={"id": rid, "output": []}, input_items=[])


def test_it_prunes_responses_older_than_the_retention_period():
    config_save(values={"responses.retention_days": 7})
    stamp_bump("config")
    _row("resp_old", 8)
    _row("resp_young", 6)
    assert prune_task.apply().get() == 1  # the Celery task, run eagerly
    assert list(StoredResponse.objects.values_list("id", flat=True)) == ["resp_young"]


def test_the_default_retention_keeps_a_month():
    _row("resp_29", 29)
    _row("resp_31", 31)
    from gateway.stored_responses import responses_prune

    assert responses_prune() == 1
    assert StoredResponse.objects.get().id == "resp_29"


def test_the_prune_task_is_on_the_beat_schedule():
    entry = app.conf.beat_schedule["gateway-responses-prune"]
    assert entry["task"] == prune_task.name == "gateway.responses_prune" and entry["schedule"] > 0
