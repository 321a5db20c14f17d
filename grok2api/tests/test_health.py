"""/healthz and /readyz: no auth; readiness fails (503) when the database or broker is unreachable."""
from __future__ import annotations

import pytest

from core.models import OperatorAlert


@pytest.mark.django_db
def test_readyz_reports_checks_alerts_and_warnings(client):
    OperatorAlert.objects.create(kind="cloudflare", endpoint="/rest/rate-limits", egress="direct",
                                 message="Cloudflare challenge", hint="Paste a fresh cf_clearance with its User-Agent.")
    body = client.get("/readyz").json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert body["details"]["alerts"][0]["hint"] == "Paste a fresh cf_clearance with its User-Agent."
    assert any("app.app_url" in w for w in body["details"]["warnings"])


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_unreachable(client, settings, tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the broker folder should be")
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(blocked), "data_folder_out": str(blocked), "processed_folder": str(blocked)}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["broker"]["ok"] is False

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["transport"] == "redis"


@pytest.mark.django_db
def test_readyz_warns_while_the_api_is_open_and_not_once_a_key_is_set(client, set_config):
    warnings = client.get("/readyz").json()["details"]["warnings"]
    assert any(w.startswith("/v1 is open") for w in warnings)
    set_config(app__api_key="sk-ready")
    warnings = client.get("/readyz").json()["details"]["warnings"]
    assert not any(w.startswith("/v1 is open") for w in warnings)


def test_healthz_answers_without_the_database(client):
    assert client.get("/healthz").json() == {"status": "ok"}
