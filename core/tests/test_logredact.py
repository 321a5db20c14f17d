"""logredact.py: secrets never reach a log — the masking itself, the LOGGING wiring, and a real
`serve` process at LOG_LEVEL=DEBUG driving every upstream path against the simulator on a real
socket, with every log output (the file and the process's stdout/stderr) searched for the secrets."""
from __future__ import annotations

import base64
import logging
import os
import secrets
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import openai
import pytest

from core.envcheck import LIBRARY_LOGGERS, _logging
from core.logredact import MASK, PrivateFileHandler, SecretFilter, redact
from grok2api.testing.fixtures import BASE_DIR, TEST_GATEWAY_KEY, GatewayFactory

# --------------------------------------------------------------------------------------------
# masking


@pytest.mark.parametrize("line, secret", [
    ("> Cookie: sso=tok123456; sso-rw=tok123456; cf_clearance=cfv987", "tok123456"),
    ("> Cookie: sso=tok123456; sso-rw=tok123456; cf_clearance=cfv987", "cfv987"),
    ("< set-cookie: session=abc999; Path=/", "abc999"),
    ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
    ("x-api-key=key-4242-4242", "key-4242-4242"),
    ("x-statsig-id: c3RhdHNpZy12YWx1ZQ==", "c3RhdHNpZy12YWx1ZQ"),
    ("headers {'Cookie': 'sso=tok123456', 'Accept': '*/*'}", "tok123456"),
    ("raw [(b'x-statsig-id', b'stat-value-1'), (b'accept', b'*/*')]", "stat-value-1"),
    ("client used sk-abcdef0123456789 for the call", "abcdef0123456789"),
    ("url https://h/?x=1 with cf_clearance=cfv987&y=2", "cfv987"),
    ("Proxy-Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
])
def test_it_masks_credential_values_wherever_they_appear(line, secret):
    masked = redact(line)
    assert secret not in masked
    assert MASK in masked


def test_it_leaves_ordinary_text_alone():
    text = "chat stream finished: 16 tokens, model grok-4.20-auto, cookie jar empty, task-list ok"
    assert redact(text) == text


def _record(msg, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("websockets.client", logging.DEBUG, __file__, 1, msg, args, exc_info)


def test_the_filter_masks_args_and_tracebacks_and_keeps_every_record():
    try:
        raise ValueError("refused cookie sso=tok123456")
    except ValueError:
        record = _record("> %s: %s", "Cookie", "sso=tok123456", exc_info=sys.exc_info())
    assert SecretFilter().filter(record) is True
    formatted = logging.Formatter().format(record)
    assert "tok123456" not in formatted
    assert "> Cookie: " + MASK in formatted and "ValueError" in formatted
    assert SecretFilter().filter(record) is True  # the next handler's filter: same record, same text
    assert logging.Formatter().format(record) == formatted


# --------------------------------------------------------------------------------------------
# LOGGING wiring


def test_every_handler_carries_the_filter_and_libraries_are_capped(tmp_path):
    config = _logging("DEBUG", True, tmp_path)
    assert set(config["handlers"]) == {"console", "file"}
    assert all(handler["filters"] == ["secrets"] for handler in config["handlers"].values())
    assert config["handlers"]["file"]["class"] == "core.logredact.PrivateFileHandler"
    for name in LIBRARY_LOGGERS:
        assert config["loggers"][name] == {"level": "WARNING"}
    opted_in = _logging("DEBUG", True, tmp_path, library_debug=True)
    assert not set(LIBRARY_LOGGERS) & set(opted_in["loggers"])


def test_the_log_file_and_its_rotations_are_private(tmp_path):
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "grok2api.log"
        handler = PrivateFileHandler(str(path), when="midnight", backupCount=2)
        handler.emit(_record("first"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        handler.doRollover()
        handler.emit(_record("second"))
        handler.close()
    finally:
        os.umask(old_umask)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


# --------------------------------------------------------------------------------------------
# a real server at DEBUG, every upstream path


def _png() -> bytes:
    from media.tests.e2e import tiny_png

    return tiny_png()


@pytest.mark.django_db(transaction=True)
def test_no_secret_reaches_any_log_at_debug_on_every_upstream_path(tmp_path, simulator_server, sim):
    from accounts.models import Account
    from gateway.models import ApiKey
    from core.crypto import hash_api_key
    from core.snapshots import stamp_bump
    from media.tests.e2e import bump_unique, wait_until

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    tag = secrets.token_hex(6)
    token = f"sim-super-logs{tag}"
    cf_clearance = f"cfclear{secrets.token_hex(8)}"
    statsig = f"statsig{secrets.token_hex(8)}"
    api_key = f"sk-logs-{secrets.token_hex(10)}"
    account = Account(pool="super")
    account.set_token(token)
    account.save()
    ApiKey.objects.create(label="log-test", key_hash=hash_api_key(api_key), prefix=api_key[:12])
    stamp_bump("accounts")
    bump_unique("accounts", "api_keys", "config")

    log_dir = tmp_path / "logs"
    env = {
        **simulator_server.upstream_env(),
        "GROK_APP_API_KEY": TEST_GATEWAY_KEY,
        "LOG_LEVEL": "DEBUG",
        "LOG_LIBRARY_DEBUG": "true",  # the worst case: websockets, httpx2, h2 … log their headers too
        "LOG_FILE_ENABLED": "true",
        "LOG_DIR": str(log_dir),
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "GROK_PROXY_CLEARANCE_MODE": "manual",
        "GROK_PROXY_CLEARANCE_CF_CLEARANCE": cf_clearance,
        "GROK_UPSTREAM_STATIC_STATSIG_ID": statsig,
    }
    factory = GatewayFactory(tmp_path)
    gateway = factory(env)
    try:
        base = gateway.url
        wait_until(lambda: httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {api_key}"},
                                     timeout=10).status_code == 200, what="the API key")
        client = openai.OpenAI(base_url=base + "/v1", api_key=api_key, max_retries=0, timeout=60)
        # chat (E1)
        chat = client.chat.completions.create(model="grok-4.20-auto", messages=[{"role": "user", "content": "hi"}])
        assert chat.choices[0].message.content
        # image generation over the Imagine WebSocket (E11)
        images = client.images.generate(model="grok-imagine-image", prompt="a red apple", n=1, response_format="b64_json")
        assert base64.b64decode(images.data[0].b64_json)
        # image edit: upload (E3) + chat
        png = tmp_path / "in.png"
        png.write_bytes(_png())
        with png.open("rb") as fh:
            edited = client.images.edit(model="grok-imagine-image-edit", image=fh, prompt="make @IMAGE1 blue", n=1,
                                        size="1024x1024", response_format="b64_json")
        assert edited.data[0].b64_json
        # video: chat + media post, then the asset download (E7) of the finished MP4
        job = client.videos.create(model="grok-imagine-video", prompt="a cat surfing", seconds="6", size="1280x720")
        done = wait_until(lambda: (v := client.videos.retrieve(job.id)).status in ("completed", "failed") and v,
                          timeout=60, interval=0.1, what="the video job")
        assert done.status == "completed", done.error
        assert client.videos.download_content(job.id).read()[4:8] == b"ftyp"
        # quota probe (rate limits): the management command, at DEBUG with the same environment
        probe = subprocess.run(
            [sys.executable, "manage.py", "refresh_quotas", "--account", str(account.pk)], cwd=BASE_DIR,
            env={**os.environ, **gateway.env}, capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, probe.stderr[-2000:]
    finally:
        gateway.stop()
        factory.stop_all()

    log_file = log_dir / "grok2api.log"
    outputs = {"log file": log_file.read_text(errors="replace"), "serve stdout/stderr": gateway.log(),
               "refresh_quotas stdout": probe.stdout, "refresh_quotas stderr": probe.stderr}
    for where, text in outputs.items():
        for name, value in (("sso token", token), ("cf_clearance", cf_clearance), ("x-statsig-id", statsig),
                            ("API key", api_key)):
            assert value not in text, f"{name} found in {where}"
    assert "Cookie: " + MASK in outputs["log file"]  # the handshake was logged, masked
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


def test_uvicorn_writes_its_access_line_only_at_debug(tmp_path):
    # uvicorn's h11 protocol logs a request only when `uvicorn.access` has a handler (hasHandlers());
    # below DEBUG the per-request line of gateway/requestid.py is the only one
    import logging.config

    access = logging.getLogger("uvicorn.access")
    saved = (list(access.handlers), access.propagate, access.level)
    try:
        for level, expected in (("INFO", False), ("DEBUG", True), ("WARNING", False)):
            logging.config.dictConfig(_logging(level, False, tmp_path))
            assert access.hasHandlers() is expected, level
    finally:
        from django.conf import settings

        logging.config.dictConfig(settings.LOGGING)  # what every other test runs with
        access.handlers[:], access.propagate = saved[0], saved[1]
        access.setLevel(saved[2])


def test_lines_without_any_credential_word_pass_unchanged_and_any_casing_is_still_masked():
    plain = "request_id=req_1 method=POST path=/v1/chat/completions status=200 key=team model=grok-4"
    assert redact(plain) is plain
    assert "s3cret" not in redact("AUTHORIZATION: Bearer s3cret") and "s3cret" not in redact("CoOkIe: SSO=s3cret")
