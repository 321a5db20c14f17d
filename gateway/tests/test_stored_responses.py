"""gateway/stored_responses.py retention and gateway/tasks.py's beat entry (real database, no server)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.config import config_save
from gateway.models import StoredResponse
from gateway.tasks import responses_prune as prune_task
from core.celery import app
from core.snapshots import stamp_bump

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


def _link(rid: str, previous: str, text: str, *, owner=None) -> None:
    StoredResponse.objects.create(
        id=rid, previous_response_id=previous, api_key=owner,
        input_items=[{"id": f"msg_in_{rid}", "type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": text}]}],
        response={"id": rid, "output": [{"id": f"msg_out_{rid}", "type": "message", "role": "assistant",
                                         "content": [{"type": "output_text", "text": f"re: {text}"}]}]})


def _resolve(rid: str) -> list[str]:
    from asgiref.sync import async_to_sync

    from gateway.auth import OPEN
    from gateway.stored_responses import response_chain_resolve

    items = async_to_sync(response_chain_resolve)(response_id=rid, principal=OPEN)
    return [item["content"][0]["text"] for item in items]


def test_a_chain_is_replayed_oldest_first():
    _link("resp_a", "", "one")
    _link("resp_b", "resp_a", "two")
    _link("resp_c", "resp_b", "three")
    assert _resolve("resp_c") == ["one", "re: one", "two", "re: two", "three", "re: three"]


def test_a_chain_whose_older_link_is_gone_starts_after_it():
    _link("resp_b", "resp_pruned", "two")
    _link("resp_c", "resp_b", "three")
    assert _resolve("resp_c") == ["two", "re: two", "three", "re: three"]


def test_a_chain_larger_than_the_body_limit_keeps_its_newest_responses(settings):
    _link("resp_a", "", "x" * 300)
    _link("resp_b", "resp_a", "two")
    _link("resp_c", "resp_b", "three")
    settings.MAX_BODY_BYTES = 600
    assert _resolve("resp_c") == ["two", "re: two", "three", "re: three"]
