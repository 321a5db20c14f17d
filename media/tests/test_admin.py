"""Admin pages for video jobs and the media cache: list, filter, retry action, stats, clear."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from media import cache, videos
from media.models import CachedMedia, VideoJob
from media.tests.e2e import tiny_png

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    user = User.objects.create_superuser("root", "root@example.com", "pw-123456789")
    client = Client()
    client.force_login(user)
    return client


def test_video_jobs_are_listed_filtered_and_retryable(admin_client, monkeypatch):
    calls = []
    monkeypatch.setattr(videos, "video_job_enqueue", lambda *, job_id: calls.append(job_id))
    failed = VideoJob.objects.create(id="video_" + "1" * 32, model="grok-imagine-video", prompt="p", status="failed",
                                     error_code="upstream_unavailable", error_message="Upstream is unavailable")
    VideoJob.objects.create(id="video_" + "2" * 32, model="grok-imagine-video", prompt="p", status="completed", progress=100)
    url = reverse("admin:media_videojob_changelist")
    page = admin_client.get(url, {"status__exact": "failed"})
    assert page.status_code == 200
    text = page.content.decode()
    assert failed.id in text and "video_" + "2" * 32 not in text and "upstream_unavailable" in text
    r = admin_client.post(url, {"action": "retry_jobs", "_selected_action": [failed.id, "video_" + "2" * 32]})
    assert r.status_code == 302
    assert VideoJob.objects.get(id=failed.id).status == "queued" and calls == [failed.id]
    assert VideoJob.objects.get(id="video_" + "2" * 32).status == "completed"


def test_the_cache_page_shows_stats_and_clears_the_cache(admin_client):
    cache.media_cache_store(media_type="image", media_id="abcdef0123", source=tiny_png())
    url = reverse("admin:media_cachedmedia_changelist")
    page = admin_client.get(url)
    text = page.content.decode()
    assert page.status_code == 200 and "Clear image cache" in text and "abcdef0123" in text
    assert "app.app_url is empty" in text
    assert admin_client.get(reverse("admin:media_cachedmedia_clear", args=["image"])).status_code == 405
    r = admin_client.post(reverse("admin:media_cachedmedia_clear", args=["image"]))
    assert r.status_code == 302
    assert not CachedMedia.objects.exists() and cache.media_cache_path(media_type="image", media_id="abcdef0123") is None
