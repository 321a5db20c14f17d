"""The managed beat schedule: seeded by migrate and by beat's own start, following the runtime config,
read-only in the admin. The scheduler is django-celery-beat's real code against the test database,
sending to an in-memory broker."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from celery import Celery
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from core.config import config_save
from core.models import Heartbeat
from grok2api.schedule import (
    USAGE_PRUNE_NAME, USAGE_ROLLUP_NAME, WORKER_HEARTBEAT_NAME, ManagedScheduler, quota_refresh_name,
)

# transaction=True: the scheduler commits and closes stale connections itself, as in a beat process.
pytestmark = pytest.mark.django_db(transaction=True)

MANAGED = {quota_refresh_name("basic"), quota_refresh_name("super"), quota_refresh_name("heavy"), WORKER_HEARTBEAT_NAME,
           USAGE_ROLLUP_NAME, USAGE_PRUNE_NAME}


@pytest.fixture
def beat_app():
    app = Celery("beat-test", broker="memory://", set_as_current=False)
    app.conf.beat_schedule = {}
    yield app
    app.close()


def _every(name: str) -> int:
    return PeriodicTask.objects.select_related("interval").get(name=name).interval.every


def test_migrate_seeds_the_managed_rows_from_the_saved_config():
    PeriodicTask.objects.filter(name__in=MANAGED).delete()
    config_save(values={"account.refresh.super_interval_sec": 900})
    call_command("migrate", verbosity=0, stdout=io.StringIO())
    assert set(PeriodicTask.objects.filter(name__in=MANAGED).values_list("name", flat=True)) == MANAGED
    assert _every(quota_refresh_name("super")) == 900
    assert _every(quota_refresh_name("heavy")) == 7200
    assert _every(WORKER_HEARTBEAT_NAME) == 30
    assert _every(USAGE_ROLLUP_NAME) == 600 and _every(USAGE_PRUNE_NAME) == 3600
    rollup = PeriodicTask.objects.get(name=USAGE_ROLLUP_NAME)
    assert rollup.task == "gateway.tasks.usage_rollup" and rollup.expire_seconds == 600


def test_beat_start_creates_the_rows_loads_them_and_stamps_its_heartbeat(beat_app):
    PeriodicTask.objects.filter(name__in=MANAGED).delete()
    Heartbeat.objects.all().delete()
    scheduler = ManagedScheduler(app=beat_app)
    assert MANAGED <= set(scheduler.schedule)
    assert scheduler.schedule[quota_refresh_name("basic")].schedule.run_every == timedelta(seconds=86400)
    assert Heartbeat.objects.get(name="beat").seen_at is not None
    heartbeat = PeriodicTask.objects.get(name=WORKER_HEARTBEAT_NAME)
    assert heartbeat.enabled and heartbeat.expire_seconds == 30  # a backlog queued with no worker is dropped


def test_a_config_change_reaches_the_running_scheduler_on_its_next_tick(beat_app):
    scheduler = ManagedScheduler(app=beat_app)
    assert scheduler.schedule[quota_refresh_name("super")].schedule.run_every == timedelta(seconds=7200)
    config_save(values={"account.refresh.super_interval_sec": 600})
    scheduler.tick()
    assert _every(quota_refresh_name("super")) == 600
    assert _every(quota_refresh_name("heavy")) == 7200  # untouched
    assert scheduler.schedule[quota_refresh_name("super")].schedule.run_every == timedelta(seconds=600)


def test_the_config_wins_over_an_admin_edit_of_a_managed_row(beat_app, monkeypatch):
    from grok2api import schedule

    scheduler = ManagedScheduler(app=beat_app)
    row = PeriodicTask.objects.get(name=quota_refresh_name("heavy"))
    row.interval = IntervalSchedule.objects.create(every=61, period=IntervalSchedule.SECONDS)
    row.enabled = False
    row.save()
    monkeypatch.setattr(schedule, "BEAT_RECONCILE_EVERY", 0)  # the periodic correction is due (normally once a minute)
    scheduler.tick()
    row.refresh_from_db()
    assert (row.interval.every, row.enabled) == (7200, True)


def test_rows_that_are_not_managed_are_left_alone(beat_app):
    mine = PeriodicTask.objects.create(name="operator: nightly", task="media.media_cache_evict",
                                       interval=IntervalSchedule.objects.create(every=3600, period=IntervalSchedule.SECONDS))
    ManagedScheduler(app=beat_app)
    mine.refresh_from_db()
    assert mine.interval.every == 3600 and mine.enabled


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", None))
    return client


def test_the_admin_shows_managed_rows_read_only_naming_the_config_key(staff):
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    page = staff.get(reverse("admin:django_celery_beat_periodictask_changelist")).content.decode()
    assert "runtime config key account.refresh.super_interval_sec" in page
    row = PeriodicTask.objects.get(name=quota_refresh_name("super"))
    change = staff.get(reverse("admin:django_celery_beat_periodictask_change", args=[row.pk]))
    text = change.content.decode()
    assert change.status_code == 200 and "managed by runtime config key account.refresh.super_interval_sec" in text
    assert 'name="_save"' not in text  # view only
    assert staff.post(reverse("admin:django_celery_beat_periodictask_change", args=[row.pk]), {"name": "x"}).status_code == 403
    assert staff.post(reverse("admin:django_celery_beat_periodictask_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    assert PeriodicTask.objects.filter(pk=row.pk, name=quota_refresh_name("super")).exists()


def test_a_standalone_beat_process_seeds_the_rows_and_follows_a_config_change(tmp_path):
    """The compose path: `celery -A grok2api beat` on its own, no --scheduler flag (the setting names ours)."""
    import os
    import signal
    import subprocess
    import sys

    from django.conf import settings

    from grok2api.testing.fixtures import BASE_DIR, database_env
    from media.tests.e2e import wait_until

    PeriodicTask.objects.filter(name__in=MANAGED).delete()
    Heartbeat.objects.all().delete()
    env = {**os.environ, **database_env(), "DATA_DIR": str(tmp_path), "SECRET_KEY": settings.SECRET_KEY,
           "LOG_FILE_ENABLED": "false", "SNAPSHOT_POLLER": "1", "SNAPSHOT_POLL_INTERVAL": "0.2"}
    if not env.get("DATABASE_URL"):
        env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)  # filesystem broker under tmp_path: nothing to share with other tests
    log_path = tmp_path / "beat.log"
    with open(log_path, "wb") as log:
        beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "grok2api", "beat", "-l", "info"],
                                cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def seeded():
            assert beat.poll() is None, log_path.read_text(errors="replace")
            return (PeriodicTask.objects.filter(name__in=MANAGED).count() == len(MANAGED)
                    and Heartbeat.objects.filter(name="beat").exists())

        wait_until(seeded, timeout=60, interval=0.2, what="beat to seed its rows and stamp its heartbeat")
        config_save(values={"account.refresh.heavy_interval_sec": 1800})
        wait_until(lambda: _every(quota_refresh_name("heavy")) == 1800, timeout=30, interval=0.2,
                   what="beat to apply the new interval")
        assert "ManagedScheduler" in log_path.read_text(errors="replace")
    finally:
        beat.send_signal(signal.SIGTERM)
        try:
            beat.wait(timeout=20)
        except subprocess.TimeoutExpired:
            beat.kill()
            beat.wait()
