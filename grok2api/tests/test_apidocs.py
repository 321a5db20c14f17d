"""/v1/docs serves the vendored Swagger UI from the gateway's own origin, under the CSP."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [value for name, value in attrs if name in ("src", "href") and value]


def test_the_docs_page_loads_only_same_origin_assets(client, gateway_server):
    response = client.get("/v1/docs")
    assert response.status_code == 200
    parser = _Refs()
    parser.feed(response.content.decode())
    assert parser.refs, "the page loads its script and stylesheet"
    for ref in parser.refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
    assert "/static/vendor/swagger-ui-bundle.js" in parser.refs
    assert "/static/vendor/swagger-ui.css" in parser.refs
    for ref in parser.refs:  # each is really served (WhiteNoise in front of Django: a real server)
        assert httpx.get(gateway_server.url + ref).status_code == 200, ref


def test_the_docs_page_carries_the_content_security_policy(client):
    policy = client.get("/v1/docs")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


def test_the_vendored_swagger_ui_is_the_pinned_version():
    import json

    pinned = json.loads((BASE_DIR / "webui/frontend/package.json").read_text())["dependencies"]["swagger-ui-dist"]
    assert f"swagger-ui-dist {pinned}" in (BASE_DIR / "static/vendor/VERSIONS").read_text().splitlines()


@pytest.mark.parametrize("path", ["/v1/openapi.json"])
def test_the_schema_the_page_reads_is_served(client, path):
    assert client.get(path).json()["info"]["title"] == "grok2api"
