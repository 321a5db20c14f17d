"""Content-Security-Policy of the HTML pages (admin, /webui, /v1/docs), built by django-csp.

The static policy is `CONTENT_SECURITY_POLICY` in settings.py: everything from the gateway's own
origin only ('self' also covers its ws:/wss: origin in CSP Level 3 browsers, which the image wall's
socket uses), images also from data: and blob: URLs (attachments, the image wall), no inline script
or style, no plugins, no framing. One thing depends on the runtime config and so is added per
request here: the voice page's browser connects to LiveKit itself (`upstream.livekit_url`, a
wss:// URL; livekit-client also calls the same host over https:// to explain a failed connection),
so that origin is allowed to `connect-src` on /webui/chatkit only.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware, PolicyParts

from core.config import config

VOICE_PAGE = "/webui/chatkit"
_PAIRED_SCHEME = {"wss": "https", "ws": "http", "https": "wss", "http": "ws"}


def livekit_origins(url: str) -> list[str]:
    """The ws(s) origin of the LiveKit URL and its http(s) twin; [] for an unusable URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in _PAIRED_SCHEME or not parts.netloc or any(c in parts.netloc for c in " ;,'\""):
        return []
    return [f"{parts.scheme}://{parts.netloc}", f"{_PAIRED_SCHEME[parts.scheme]}://{parts.netloc}"]


class PolicyMiddleware(CSPMiddleware):
    """django-csp's middleware; adds the LiveKit origin to connect-src on the voice page."""

    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if not report_only and request.path_info == VOICE_PAGE:
            origins = livekit_origins(str(config().get("upstream.livekit_url") or ""))
            if origins:
                parts.update = {**(parts.update or {}), "connect-src": origins}
        return parts
