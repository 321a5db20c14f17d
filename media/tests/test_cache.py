"""The local media cache: atomic stores, content sniffing, eviction to 60 % of the cap, the
/v1/files endpoints (strict ids, Range for video) — through Django's test client."""
from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from core.config import config_save
from media import cache
from media.models import CachedMedia
from media.ranges import parse_range
from media.tests.e2e import mp4_ok, png_ok, tiny_png

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


@pytest.fixture(autouse=True)
def clean_cache(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    yield


def _png_of_size(size: int) -> bytes:
    base = tiny_png()
    return base + b"\0" * (size - len(base))  # trailing bytes after IEND: still sniffed as PNG


def _mp4(size: int = 4096) -> bytes:
    ftyp = (20).to_bytes(4, "big") + b"ftypisom" + b"\0\0\0\0" + b"isom"
    mdat_body = bytes(range(256)) * ((size - 28 - 8) // 256 + 1)
    mdat_body = mdat_body[: size - 20 - 8 - 8]
    return ftyp + (8 + len(mdat_body)).to_bytes(4, "big") + b"mdat" + mdat_body + (8).to_bytes(4, "big") + b"moov"


def test_it_stores_bytes_atomically_under_the_sniffed_type():
    row = cache.media_cache_store(media_type="image", media_id="abcdef12-3456", source=tiny_png(), content_type="application/octet-stream")
    assert row.content_type == "image/png" and row.file_name == "abcdef12-3456.png"
    found = cache.media_cache_path(media_type="image", media_id="abcdef12-3456")
    png_ok(found.path.read_bytes())
    assert not list(cache.media_dir("image").glob(".part-*"))  # no temp file left behind


def test_it_refuses_error_pages_and_leaves_nothing_behind():
    for body in (b"", b"<html>Just a moment...</html>", b'{"error":"nope"}'):
        with pytest.raises(cache.CacheError):
            cache.media_cache_store(media_type="image", media_id="deadbeef00", source=body)
    with pytest.raises(cache.CacheError):
        cache.media_cache_store(media_type="video", media_id="deadbeef01", source=tiny_png())  # an image is not a video
    assert not CachedMedia.objects.exists()
    assert not list(cache.media_dir("image").iterdir()) and not list(cache.media_dir("video").iterdir())


@pytest.mark.parametrize("bad", ["../../etc/passwd", "short", "a" * 65, "abc/def123", "abc.def123", "", "..%2f..%2fetc"])
def test_invalid_ids_are_never_paths(bad):
    assert not cache.media_id_valid(bad)
    assert cache.media_cache_path(media_type="image", media_id=bad) is None
    with pytest.raises(cache.CacheError):
        cache.media_cache_store(media_type="image", media_id=bad, source=tiny_png())


def test_ids_come_from_the_upstream_uuid_or_a_url_hash():
    assert cache.media_id_for_url("https://a/users/u/generated/48b432d3-5c1e-4f7a-9e2b-6d8c0a1f3e57/image.jpg") == "48b432d3-5c1e-4f7a-9e2b-6d8c0a1f3e57"
    assert cache.media_id_for_url("https://p/imagine-public/images/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.jpg?cache=1") == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    hashed = cache.media_id_for_url("https://x/y/image.jpg")
    assert cache.media_id_valid(hashed) and len(hashed) == 32


def test_overflow_evicts_oldest_first_down_to_60_percent_and_protects_the_new_file():
    config_save(values={"cache.local.image_max_mb": 1})
    now = timezone.now()
    for i in range(4):  # 4 × 240 KB = 960 KB, under the 1 MB cap
        cache.media_cache_store(media_type="image", media_id=f"img{i:05d}", source=_png_of_size(240 * 1024))
        CachedMedia.objects.filter(media_id=f"img{i:05d}").update(created_at=now - timedelta(minutes=10 - i))
    assert CachedMedia.objects.count() == 4
    cache.media_cache_store(media_type="image", media_id="img00004", source=_png_of_size(240 * 1024))  # 1200 KB > cap
    left = sorted(CachedMedia.objects.values_list("media_id", flat=True))
    total = sum(CachedMedia.objects.values_list("size_bytes", flat=True))
    assert total <= 0.6 * MB
    assert left == ["img00003", "img00004"]  # the oldest went first; the one just saved stayed
    on_disk = sorted(p.name for p in cache.media_dir("image").iterdir())
    assert on_disk == ["img00003.png", "img00004.png"]


def test_a_file_larger_than_the_whole_cap_is_still_kept_once_saved():
    config_save(values={"cache.local.video_max_mb": 1})
    cache.media_cache_store(media_type="video", media_id="vid00001", source=_mp4(300 * 1024))
    cache.media_cache_store(media_type="video", media_id="vid00002", source=_mp4(int(1.5 * MB)))
    assert list(CachedMedia.objects.values_list("media_id", flat=True)) == ["vid00002"]


def test_the_periodic_eviction_and_stats_and_clear():
    cache.media_cache_store(media_type="image", media_id="img10000", source=_png_of_size(400 * 1024))
    cache.media_cache_store(media_type="image", media_id="img10001", source=_png_of_size(400 * 1024))
    assert cache.media_cache_evict_all() == {"image": 0, "video": 0}  # uncapped
    config_save(values={"cache.local.image_max_mb": 1, "cache.local.video_max_mb": 0})
    assert cache.media_cache_stats()["image"]["usage_percent"] == pytest.approx(78.1, abs=0.2)
    CachedMedia.objects.filter(media_id="img10000").update(created_at=timezone.now() - timedelta(hours=1))
    config_save(values={"cache.local.image_max_mb": 0})
    assert cache.media_cache_evict(media_type="image", cap_bytes=700 * 1024) == 1
    assert list(CachedMedia.objects.values_list("media_id", flat=True)) == ["img10001"]
    stats = cache.media_cache_stats()
    assert stats["image"]["count"] == 1 and stats["video"]["count"] == 0
    assert cache.media_cache_clear() == 1
    assert not CachedMedia.objects.exists() and not list(cache.media_dir("image").iterdir())


@pytest.mark.parametrize(
    "header,expected",
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=10-", (10, 99)),
        ("bytes=-5", (95, 99)),
        ("bytes=90-500", (90, 99)),
        ("bytes=100-", "unsatisfiable"),
        ("bytes=-0", "unsatisfiable"),
        ("bytes=5-2", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("", None),
    ],
)
def test_range_parsing(header, expected):
    assert parse_range(header, 100) == expected


def _body(response) -> bytes:
    # The file views stream an async iterator (ASGI is what production runs).
    import asyncio

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return asyncio.run(collect())


def test_files_endpoints_serve_signed_links_without_auth_with_strict_ids_and_ranges(settings):
    config_save(values={"app.api_key": "sk-something-secret"})  # signed links need no key
    cache.media_cache_store(media_type="image", media_id="0123abcd-ef", source=tiny_png())
    video = _mp4(5000)
    mp4_ok(video)
    cache.media_cache_store(media_type="video", media_id="0123abcd-" + "c" * 32, source=video)
    client = Client()
    image_link = cache.media_local_url(media_type="image", media_id="0123abcd-ef")
    video_link = cache.media_local_url(media_type="video", media_id="0123abcd-" + "c" * 32)
    r = client.get(image_link)
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    png_ok(_body(r))
    r = client.get(video_link, HTTP_RANGE="bytes=100-199")
    assert r.status_code == 206 and r["Content-Range"] == f"bytes 100-199/{len(video)}"
    assert _body(r) == video[100:200]
    r = client.get(video_link, HTTP_RANGE=f"bytes={len(video)}-")
    assert r.status_code == 416
    r = client.get("/v1/files/image", {"id": "0123abcd-ef"})  # the id alone is not enough
    assert r.status_code == 401
    r = client.get("/v1/files/image", {"id": "0123abcd-ef", "sig": cache.media_link_sig(media_type="video", media_id="0123abcd-ef")})
    assert r.status_code == 401  # a signature names one type and one id
    r = client.get("/v1/files/image", {"id": "../../secret_key"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "id"
    r = client.get(cache.media_local_url(media_type="image", media_id="0123abcd-00"))
    assert r.status_code == 404
    r = client.get(cache.media_local_url(media_type="video", media_id="0123abcd-ef"))  # an image id is not a video
    assert r.status_code == 404
    assert os.path.exists(settings.DATA_DIR / "files" / "images" / "0123abcd-ef.png")
