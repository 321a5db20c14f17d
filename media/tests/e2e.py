"""Shared helpers for the media end-to-end tests (gateway/tests/api/test_images.py, test_videos.py).

`media_gateway` (module scope): a real `manage.py serve` on the test database, pointed at the
session simulator, with CELERY_TASK_ALWAYS_EAGER=1 so video jobs run inside the server process
(on a thread: POST /v1/videos still answers at once). `MediaEnv` adds accounts, an API key, SDK
clients and runtime-config switches (saved in the database, picked up by the server's snapshot
poller) on top of it.

Image checks are structural, without Pillow: PNG (signature, IHDR first, IEND last, chunk CRCs),
JPEG (SOI, a SOF segment with non-zero size, EOI), MP4 (ISO BMFF top-level boxes incl. ftyp
and moov, sizes adding up to the file length).
"""
from __future__ import annotations

import secrets
import struct
import time
import uuid
import zlib

import httpx
import openai
import pytest

TEST_KEY = "sk-media-" + "0" * 8


def wait_until(predicate, *, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- structure checks


def png_ok(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    pos, first, last = 8, None, None
    width = height = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"CRC of {kind!r}"
        if first is None:
            first = kind
            width, height = struct.unpack(">II", body[:8])
        last = kind
        pos += 12 + length
    assert first == b"IHDR" and last == b"IEND" and pos == len(data)
    assert width > 0 and height > 0
    return width, height


def jpeg_ok(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"\xff\xd8", "JPEG SOI"
    assert data[-2:] == b"\xff\xd9", "JPEG EOI"
    pos = 2
    while pos < len(data):
        assert data[pos] == 0xFF, f"marker at {pos}"
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            assert width > 0 and height > 0
            return width, height
        pos += 2 + length
    raise AssertionError("no SOF segment before the scan")


def image_ok(data: bytes) -> tuple[int, int]:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return png_ok(data)
    return jpeg_ok(data)


def mp4_boxes(data: bytes) -> list[bytes]:
    pos, kinds = 0, []
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
        assert size >= 8, f"box {kind!r} size {size}"
        kinds.append(kind)
        pos += size
    assert pos == len(data), "box sizes add up to the file length"
    return kinds


def mp4_ok(data: bytes) -> None:
    kinds = mp4_boxes(data)
    assert kinds[0] == b"ftyp" and b"moov" in kinds and b"mdat" in kinds, kinds


def tiny_png(width: int = 8, height: int = 8) -> bytes:
    raw = b"".join(
        b"\x00" + b"".join(bytes(((x * 37 + y * 11) % 256, (y * 53) % 256, 128)) for x in range(width)) for y in range(height)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- environment


def bump_unique(*names: str) -> None:
    """Move version stamps to fresh random values.

    A transactional test's teardown flushes the VersionStamp table, so the next test's first bump
    lands on version 1 again — the value the server may still hold from the previous test, and
    the server's poller (which compares with !=) would then miss the change. A random version
    cannot collide.
    """
    from core.models import VersionStamp

    for name in names:
        VersionStamp.objects.update_or_create(name=name, defaults={"version": secrets.randbelow(10**12) + 10})


class MediaEnv:
    def __init__(self, gateway, simulator):
        from gateway.models import ApiKey
        from core.crypto import hash_api_key

        self.gateway = gateway
        self.simulator = simulator
        self.base = gateway.url.rstrip("/")
        self.key = "sk-media-" + secrets.token_hex(10)
        self.key_row = ApiKey.objects.create(label="media-tests", key_hash=hash_api_key(self.key), prefix=self.key[:12])
        self.tag = uuid.uuid4().hex[:8]
        self._saved: dict = {}
        bump_unique("api_keys", "config")

    @property
    def sim(self):
        return self.simulator.sim

    def account(self, tier: str, label: str, *directives: str) -> str:
        from accounts.models import Account
        from core.snapshots import stamp_bump

        token = f"sim-{tier}-{label}{self.tag}" + "".join(f"~{d}" for d in directives)
        acc = Account(pool=tier)
        acc.set_token(token)
        acc.save()
        stamp_bump("accounts")
        bump_unique("accounts")
        return token

    def openai(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=kw.pop("api_key", self.key), max_retries=0, timeout=60, **kw)

    def http(self, key: str | None = None) -> httpx.Client:
        """An HTTP client with the gateway's static key (GROK_APP_API_KEY, always valid) by default."""
        from grok2api.testing.fixtures import TEST_GATEWAY_KEY

        return httpx.Client(base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {key or TEST_GATEWAY_KEY}"})

    def key_ready(self) -> None:
        """Wait until the server knows this test's ApiKey row."""
        wait_until(
            lambda: httpx.get(self.base + "/v1/models", headers={"Authorization": f"Bearer {self.key}"}, timeout=10).status_code == 200,
            what="the API key",
        )

    def ready(self, model: str) -> None:
        def listed():
            r = httpx.get(self.base + "/v1/models", headers={"Authorization": f"Bearer {self.key}"}, timeout=10)
            return r.status_code == 200 and any(m["id"] == model for m in r.json()["data"])

        wait_until(listed, what=f"{model} to be served")

    def set_config(self, values: dict, *, probe=None) -> None:
        """Save runtime config overrides; `probe()` (truthy once the server applied them) is awaited."""
        from core.config import config_save, defaults

        for key in values:
            self._saved.setdefault(key, defaults()[key])
        config_save(values=values)
        bump_unique("config")
        if probe is not None:
            wait_until(probe, what=f"the server to apply {values}")

    def restore(self) -> None:
        if self._saved:
            from core.config import config_save

            config_save(values=self._saved)
            bump_unique("config")
            self._saved = {}


@pytest.fixture(scope="module")
def media_gateway(request, django_db_setup, django_db_blocker, tmp_path_factory, simulator_server):
    from grok2api.testing.fixtures import TEST_GATEWAY_KEY, GatewayFactory

    env = {"GROK_APP_API_KEY": TEST_GATEWAY_KEY, "CELERY_TASK_ALWAYS_EAGER": "1", "MEDIA_VIDEO_STALE_SECONDS": "120"}
    env.update(simulator_server.upstream_env())
    with django_db_blocker.unblock():
        factory = GatewayFactory(tmp_path_factory.mktemp("media-gateway"))
        gateway = factory(env)
    yield gateway
    factory.stop_all()


@pytest.fixture
def menv(media_gateway, sim, transactional_db):
    env = MediaEnv(media_gateway, sim)
    yield env
    env.restore()
