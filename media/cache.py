"""The local media cache: files under DATA_DIR/files/{images,videos}/<id>.<ext>, indexed by CachedMedia.

Wire format served (gateway/api/files.py): `GET /v1/files/image?id=<id>&sig=<sig>` and
`GET /v1/files/video?id=<id>&sig=<sig>` (owner rule: media/files.py) return the bytes with their content type (jpg/png/webp/gif for images, mp4 for videos); videos
honour a single HTTP `Range: bytes=a-b` (206 + Content-Range, 416 when unsatisfiable).

Writes are atomic: bytes go to a temporary file in the same directory, are fsynced and renamed over
the final name, so a reader never sees a partial file under a served name. With a cap
(`cache.local.image_max_mb` / `video_max_mb`, 0 = unlimited) every save that pushes a type over its
cap deletes the oldest files (by creation) until the total is at most 60 % of the cap; the file just
saved is never evicted. `media_cache_evict` is also run by a periodic Celery task.

Ids are strictly validated (`MEDIA_ID_RE`): letters, digits, `-` and `_` only, so an id can never
name a path outside the cache directory.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum
from django.utils.crypto import constant_time_compare, salted_hmac

from core.config import config
from media.models import CachedMedia
from media.params import sniff_content_type

log = logging.getLogger(__name__)

MEDIA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$")
VIDEO_JOB_ID_RE = re.compile(r"video_[0-9a-f]{32}")
_LINK_SALT = "grok2api.media.link"
EVICT_TARGET = 0.6  # after overflow, evict down to 60 % of the cap

EXT_BY_TYPE = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
}
TYPE_BY_EXT = {ext: ctype for ctype, ext in EXT_BY_TYPE.items()}
EXTS_FOR = {"image": ("jpg", "png", "webp", "gif"), "video": ("mp4",)}
CAP_KEY = {"image": "cache.local.image_max_mb", "video": "cache.local.video_max_mb"}
DIR_NAME = {"image": "images", "video": "videos"}


class CacheError(Exception):
    """The bytes cannot be cached (wrong kind, empty, an error page instead of media)."""


@dataclass(frozen=True, slots=True)
class CachedFile:
    path: Path
    content_type: str
    size: int


def media_dir(media_type: str) -> Path:
    if media_type not in DIR_NAME:
        raise ValueError(f"unknown media type {media_type!r}")
    path = Path(settings.DATA_DIR) / "files" / DIR_NAME[media_type]
    path.mkdir(parents=True, exist_ok=True)
    return path


def media_id_valid(media_id: str) -> bool:
    return bool(media_id) and bool(MEDIA_ID_RE.fullmatch(media_id))


def media_id_for_url(url: str) -> str:
    """Stable cache id for an upstream URL: the upstream UUID when the path has one, else a SHA-1 prefix.

    `…/generated/<uuid>/image.jpg` → `<uuid>`; `…/images/<uuid>.jpg` → `<uuid>`; `-part-N` previews
    keep their suffix (they are different bytes).
    """
    path = urlparse(url).path
    for segment in reversed([s for s in path.split("/") if s]):
        stem = segment.rsplit(".", 1)[0]
        if stem in ("image", "original", "thumbnail", "content", "generated_video", "preview_image"):
            continue
        if media_id_valid(stem) and re.search(r"[0-9a-f]{8}", stem):
            return stem
        break
    return hashlib.sha1(url.encode()).hexdigest()[:32]


def _cap_bytes(media_type: str) -> int:
    try:
        mb = int(config().get(CAP_KEY[media_type], 0) or 0)
    except Exception:  # config unreadable (no DB yet): behave as uncapped
        mb = 0
    return mb * 1024 * 1024


def media_link_sig(*, media_type: str, media_id: str) -> str:
    """The `sig` of a local media link: HMAC-SHA256 under SECRET_KEY, 128 bits in hex.

    Links end up in chat answers that browsers load without headers, so the link itself must be
    the credential: only the gateway can mint it, and it names one file of one type.
    """
    return salted_hmac(_LINK_SALT, f"{media_type}:{media_id}", algorithm="sha256").hexdigest()[:32]


def media_link_valid(*, media_type: str, media_id: str, sig: str) -> bool:
    return bool(sig) and constant_time_compare(sig, media_link_sig(media_type=media_type, media_id=media_id))


def media_local_url(*, media_type: str, media_id: str) -> str:
    """`<app.app_url>/v1/files/<type>?id=<id>&sig=<sig>`, or a relative link when app.app_url is empty."""
    base = str(config().get("app.app_url", "") or "").rstrip("/")
    sig = media_link_sig(media_type=media_type, media_id=media_id)
    return f"{base}/v1/files/{media_type}?id={media_id}&sig={sig}"


def media_cache_path(*, media_type: str, media_id: str) -> CachedFile | None:
    """The served file for an id, found on disk (no query: the id and the extension name the file)."""
    if not media_id_valid(media_id):
        return None
    folder = media_dir(media_type)
    for ext in EXTS_FOR[media_type]:
        path = folder / f"{media_id}.{ext}"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        return CachedFile(path=path, content_type=TYPE_BY_EXT[ext], size=size)
    return None


def media_cache_tempfile(*, media_type: str) -> Path:
    """A fresh temporary path inside the type's directory (same filesystem, so rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=".part-", suffix=".tmp", dir=media_dir(media_type))
    os.close(fd)
    return Path(name)


def media_cache_store(
    *,
    media_type: str,
    media_id: str,
    source: Path | bytes,
    content_type: str = "",
    source_url: str = "",
) -> CachedMedia:
    """Move `source` (a temp file in the cache dir, or bytes) into the cache under `media_id`, atomically.

    The content type is sniffed from the bytes; a body that is not the expected kind of media (an
    HTML or JSON error page, an empty body) raises CacheError and nothing is stored.
    """
    if media_type not in DIR_NAME:
        raise ValueError(f"unknown media type {media_type!r}")
    if not media_id_valid(media_id):
        raise CacheError(f"invalid media id {media_id!r}")
    folder = media_dir(media_type)
    if isinstance(source, (bytes, bytearray)):
        tmp = media_cache_tempfile(media_type=media_type)
        with open(tmp, "wb") as fh:
            fh.write(source)
            fh.flush()
            os.fsync(fh.fileno())
    else:
        tmp = Path(source)
        if tmp.parent.resolve() != folder.resolve():
            # Different directory (maybe another filesystem): copy next to the target first.
            staged = media_cache_tempfile(media_type=media_type)
            with open(tmp, "rb") as src, open(staged, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            tmp.unlink(missing_ok=True)
            tmp = staged
    try:
        size = tmp.stat().st_size
        with open(tmp, "rb") as fh:
            head = fh.read(16)
        sniffed = sniff_content_type(head)
        if size == 0 or sniffed is None or not sniffed.startswith(media_type + "/"):
            raise CacheError(
                f"expected {media_type} bytes, got {size} bytes starting {head[:8]!r} (declared {content_type or 'nothing'})"
            )
        final = folder / f"{media_id}.{EXT_BY_TYPE[sniffed]}"
        # Drop a stale copy with another extension so one id maps to one file.
        for ext in EXTS_FOR[media_type]:
            other = folder / f"{media_id}.{ext}"
            if other != final:
                other.unlink(missing_ok=True)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with transaction.atomic():
        row, _ = CachedMedia.objects.update_or_create(
            media_type=media_type,
            media_id=media_id,
            defaults={
                "file_name": final.name,
                "content_type": sniffed,
                "size_bytes": size,
                "source_url": source_url[:2000],
            },
        )
    media_cache_evict(media_type=media_type, protect=media_id)
    return row


def media_cache_evict(*, media_type: str, protect: str | None = None, cap_bytes: int | None = None) -> int:
    """If the type's total exceeds its cap, delete oldest files until the total is ≤ 60 % of the cap.

    Returns the number of files removed. `protect` (the file just saved) is never removed.
    """
    cap = _cap_bytes(media_type) if cap_bytes is None else cap_bytes
    if cap <= 0:
        return 0
    total = CachedMedia.objects.filter(media_type=media_type).aggregate(s=Sum("size_bytes"))["s"] or 0
    if total <= cap:
        return 0
    target = int(cap * EVICT_TARGET)
    removed = 0
    folder = media_dir(media_type)
    for row in CachedMedia.objects.filter(media_type=media_type).order_by("created_at", "id").iterator():
        if total <= target:
            break
        if row.media_id == protect:
            continue
        (folder / row.file_name).unlink(missing_ok=True)
        deleted, _ = CachedMedia.objects.filter(pk=row.pk).delete()
        if deleted:
            total -= row.size_bytes
            removed += 1
    if removed:
        log.info("media cache: evicted %d %s file(s), %d bytes left (cap %d)", removed, media_type, total, cap)
    return removed


def media_cache_evict_all() -> dict[str, int]:
    return {media_type: media_cache_evict(media_type=media_type) for media_type in DIR_NAME}


def media_cache_stats() -> dict[str, dict[str, float | int]]:
    """Per type: count, size in bytes / MB, cap in MB, usage percent of the cap (0 when uncapped)."""
    out: dict[str, dict[str, float | int]] = {}
    rows = {r["media_type"]: r for r in CachedMedia.objects.values("media_type").annotate(n=Count("id"), s=Sum("size_bytes"))}
    for media_type in DIR_NAME:
        row = rows.get(media_type, {})
        size = int(row.get("s") or 0)
        cap = _cap_bytes(media_type)
        out[media_type] = {
            "count": int(row.get("n") or 0),
            "size_bytes": size,
            "size_mb": round(size / 1048576, 2),
            "limit_mb": cap // 1048576,
            "usage_percent": round(100 * size / cap, 1) if cap else 0.0,
        }
    return out


def media_cache_clear(*, media_type: str | None = None) -> int:
    """Delete every cached file (of one type, or all) and its index row; also stray temp files."""
    removed = 0
    for kind in [media_type] if media_type else list(DIR_NAME):
        folder = media_dir(kind)
        for row in CachedMedia.objects.filter(media_type=kind).iterator():
            (folder / row.file_name).unlink(missing_ok=True)
            removed += 1
        CachedMedia.objects.filter(media_type=kind).delete()
        for stray in folder.glob(".part-*.tmp"):
            stray.unlink(missing_ok=True)
    return removed


def media_cache_delete(*, media_type: str, media_id: str) -> bool:
    if not media_id_valid(media_id):
        return False
    found = media_cache_path(media_type=media_type, media_id=media_id)
    if found:
        found.path.unlink(missing_ok=True)
    deleted, _ = CachedMedia.objects.filter(media_type=media_type, media_id=media_id).delete()
    return bool(found or deleted)
