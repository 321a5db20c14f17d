"""Auth for /v1: Bearer or x-api-key against app.api_key and enabled ApiKey rows, from memory."""
from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest
from django.test import RequestFactory

from core.config import config_save
from gateway.auth import OPEN, Principal, authenticate, principal_allows
from gateway.models import ApiKey
from core.crypto import hash_api_key

MODEL_URL = "/v1/models/grok-4.20-auto"


def _key_row(key: str, *, enabled: bool = True, models: list[str] | None = None, label: str = "row") -> ApiKey:
    return ApiKey.objects.create(label=label, key_hash=hash_api_key(key), prefix=key[:10], enabled=enabled, allowed_models=models or [])


def _openai_401(response) -> None:
    assert response.status_code == 401
    body = response.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_api_key"


@pytest.mark.django_db(transaction=True)  # async views load snapshots on another thread: data must be committed
def test_it_is_open_when_no_key_is_configured(client):
    assert client.get(MODEL_URL).status_code == 200
    assert authenticate(RequestFactory().get("/v1/models")) is OPEN


@pytest.mark.django_db(transaction=True)  # async views load snapshots on another thread: data must be committed
def test_it_accepts_a_configured_key_as_bearer_or_x_api_key(client):
    config_save(values={"app.api_key": "sk-alpha,sk-beta"})
    assert client.get(MODEL_URL, HTTP_AUTHORIZATION="Bearer sk-alpha").status_code == 200
    assert client.get(MODEL_URL, HTTP_AUTHORIZATION="bearer sk-beta").status_code == 200
    assert client.get(MODEL_URL, HTTP_X_API_KEY="sk-beta").status_code == 200
    principal = authenticate(RequestFactory().get("/", HTTP_X_API_KEY="sk-alpha"))
    assert principal == Principal(key_id=None, label="app.api_key", allowed_models=())


@pytest.mark.django_db(transaction=True)  # async views load snapshots on another thread: data must be committed
def test_it_refuses_a_missing_or_wrong_key_in_the_openai_envelope(client):
    config_save(values={"app.api_key": "sk-alpha"})
    _openai_401(client.get(MODEL_URL))
    _openai_401(client.get(MODEL_URL, HTTP_AUTHORIZATION="Bearer sk-alphaX"))
    _openai_401(client.get(MODEL_URL, HTTP_AUTHORIZATION="Basic sk-alpha"))
    _openai_401(client.get(MODEL_URL, HTTP_X_API_KEY=""))


@pytest.mark.django_db(transaction=True)  # async views load snapshots on another thread: data must be committed
def test_it_refuses_in_the_anthropic_envelope_on_messages(client):
    config_save(values={"app.api_key": "sk-alpha"})
    response = client.post("/v1/messages", data={"model": "grok-4.20-auto"}, content_type="application/json", HTTP_X_API_KEY="nope")
    assert response.status_code == 401
    assert response.json() == {"type": "error", "error": {"type": "authentication_error", "message": response.json()["error"]["message"]}}


@pytest.mark.django_db(transaction=True)  # async views load snapshots on another thread: data must be committed
def test_it_accepts_an_enabled_api_key_row_and_refuses_a_disabled_or_deleted_one(client):
    row = _key_row("sk-g2a-row-key", models=["grok-4.20-auto"], label="laptop")
    # A row alone closes /v1: requests without a key are refused.
    _openai_401(client.get(MODEL_URL))
    assert client.get(MODEL_URL, HTTP_AUTHORIZATION="Bearer sk-g2a-row-key").status_code == 200
    principal = authenticate(RequestFactory().get("/", HTTP_AUTHORIZATION="Bearer sk-g2a-row-key"))
    assert principal == Principal(key_id=row.pk, label="laptop", allowed_models=("grok-4.20-auto",))

    row.enabled = False
    row.save()
    _key_row("sk-g2a-other")  # keeps /v1 closed
    _openai_401(client.get(MODEL_URL, HTTP_AUTHORIZATION="Bearer sk-g2a-row-key"))
    ApiKey.objects.filter(pk=row.pk).delete()
    _openai_401(client.get(MODEL_URL, HTTP_AUTHORIZATION="Bearer sk-g2a-row-key"))
    assert client.get(MODEL_URL, HTTP_AUTHORIZATION="Bearer sk-g2a-other").status_code == 200


def test_the_allow_list_limits_models():
    assert principal_allows(Principal(key_id=1, label="a", allowed_models=()), "grok-4.20-auto")
    assert principal_allows(Principal(key_id=1, label="a", allowed_models=("grok-4.20-auto",)), "grok-4.20-auto")
    assert not principal_allows(Principal(key_id=1, label="a", allowed_models=("grok-4.20-auto",)), "grok-4.20-heavy")


@pytest.mark.django_db(transaction=True)  # async views load snapshots on another thread: data must be committed
def test_healthz_and_readyz_need_no_key(client):
    config_save(values={"app.api_key": "sk-alpha"})
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"]["ok"] is True


# -- the same rules on a real server, with keys changing while it runs --


def _until(predicate, timeout: float = 10.0):
    """Poll a live server until `predicate()` is truthy (the snapshot poll interval is 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def _declare_huge_body(url: str, path: str) -> tuple[int, bytes]:
    """Announce a 60 MB body (over the 50 MB default cap) and send 10 bytes: the server must
    answer 413 at once, without waiting for the rest."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: application/json\r\n"
            f"x-api-key: sk-env-key\r\nContent-Length: {60 * 1024 * 1024}\r\n\r\n".encode() + b"{" * 10
        )
        data = b""
        while chunk := sock.recv(65536):  # the 413 carries "Connection: close": read to EOF
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.django_db(transaction=True)
def test_a_running_server_follows_api_key_rows_without_restart(gateway_factory):
    gateway = gateway_factory({"GROK_APP_API_KEY": "sk-env-key"})
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        assert http.get(MODEL_URL, headers={"Authorization": "Bearer sk-env-key"}).status_code == 200
        assert http.get(MODEL_URL, headers={"x-api-key": "sk-env-key"}).status_code == 200
        refused = http.get(MODEL_URL, headers={"Authorization": "Bearer sk-g2a-live"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        anthropic = http.post("/v1/messages", json={"model": "grok-4.20-auto"}, headers={"x-api-key": "wrong"})
        assert anthropic.status_code == 401 and anthropic.json()["error"]["type"] == "authentication_error"

        row = _key_row("sk-g2a-live")
        assert _until(lambda: http.get(MODEL_URL, headers={"Authorization": "Bearer sk-g2a-live"}).status_code == 200)
        row.enabled = False
        row.save()
        assert _until(lambda: http.get(MODEL_URL, headers={"Authorization": "Bearer sk-g2a-live"}).status_code == 401)

        # Unknown /v1 paths and oversized bodies answer in the family's envelope too.
        missing = http.get("/v1/nothing-here", headers={"x-api-key": "sk-env-key"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        status, body = _declare_huge_body(gateway.url, "/v1/chat/completions")
        assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"
        status, body = _declare_huge_body(gateway.url, "/v1/messages")
        assert status == 413 and json.loads(body)["error"]["type"] == "request_too_large"
        admin = http.get("/admin/", follow_redirects=False)
        assert admin.status_code == 302 and admin.headers["location"].startswith("/admin/login/")
