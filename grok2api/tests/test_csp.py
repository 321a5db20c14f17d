"""The Content-Security-Policy header of the HTML pages (django-csp + grok2api/csp.py)."""
from __future__ import annotations

import pytest

from grok2api.csp import livekit_origins

pytestmark = pytest.mark.django_db


def _directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split("; ")}


def test_the_pages_and_admin_get_a_strict_policy(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="")
    for path in ("/webui/chat", "/webui/masonry", "/admin/login/"):
        d = _directives(client.get(path))
        assert d["default-src"] == ["'self'"] and d["script-src"] == ["'self'"] and d["style-src"] == ["'self'"]
        assert d["img-src"] == ["'self'", "data:", "blob:"]
        assert d["connect-src"] == ["'self'"]
        assert d["frame-ancestors"] == ["'none'"] and d["object-src"] == ["'none'"]


def test_the_voice_page_may_also_connect_to_the_configured_livekit_server(client, set_config):
    set_config(app__webui_enabled="true", app__webui_key="", upstream__livekit_url="wss://livekit.example.test/rtc")
    d = _directives(client.get("/webui/chatkit"))
    assert d["connect-src"] == ["'self'", "wss://livekit.example.test", "https://livekit.example.test"]


def test_a_livekit_url_cannot_widen_the_policy():
    assert livekit_origins("wss://a.test; script-src *") == []
    assert livekit_origins("javascript:alert(1)") == []
    assert livekit_origins("ws://127.0.0.1:9010") == ["ws://127.0.0.1:9010", "http://127.0.0.1:9010"]
