"""Who may open the web pages (/webui/*) and their same-origin API (/webui/api/*, /webui/ws/*).

Rules, all read from the runtime config on every request (so admin edits apply at once):
- `app.webui_enabled` false → every /webui path answers 404 ("the web pages are disabled");
- `app.webui_key` empty → the pages are open;
- `app.webui_key` set → the visitor must have signed in at /webui/login with that key, or be an
  active staff user signed in to Django admin.

Signing in stores, in the Django session, a keyed HMAC of the key (`salted_hmac`, SECRET_KEY):
the session cookie itself is Django's (HttpOnly, server-side session), the stored value proves
which key was presented, and changing `app.webui_key` in admin signs every page session out
(the stored digest no longer matches). The presented key is compared with `constant_time_compare`.
The server-side `app.api_key` never reaches a page: the pages call /webui/api/*, which run the
same services as /v1 under the `WEBUI_PRINCIPAL`.
"""
from __future__ import annotations

from django.utils.crypto import constant_time_compare, salted_hmac

from accounts.config import config
from gateway.auth import Principal

SESSION_FLAG = "webui_access"
_SALT = "grok2api.webui.access"

# Usage records and model checks of the pages are attributed to this principal (no per-key allow-list).
WEBUI_PRINCIPAL = Principal(key_id=None, label="webui")


def webui_enabled() -> bool:
    return bool(config().get("app.webui_enabled"))


def webui_key() -> str:
    return str(config().get("app.webui_key") or "").strip()


def _digest(key: str) -> str:
    return salted_hmac(_SALT, key, algorithm="sha256").hexdigest()


def _is_staff(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active and user.is_staff)


def access_granted(*, session, user=None) -> bool:
    """True when this visitor may use the pages (sync: touches the session store and the user).

    `session`/`user` are `request.session`/`request.user` for HTTP, `scope["session"]`/`scope["user"]`
    for WebSockets."""
    if not webui_enabled():
        return False
    key = webui_key()
    if not key:
        return True
    if _is_staff(user):
        return True
    stored = session.get(SESSION_FLAG) if session is not None else None
    return isinstance(stored, str) and constant_time_compare(stored, _digest(key))


def key_required() -> bool:
    return bool(webui_key())


def access_sign_in(*, request, presented: str) -> bool:
    """Check the presented key; on success rotate the session id and store the signed flag."""
    key = webui_key()
    if not key or not constant_time_compare(presented.strip(), key):
        return False
    request.session.cycle_key()  # a fresh session id after sign-in (no fixation)
    request.session[SESSION_FLAG] = _digest(key)
    return True


def access_sign_out(*, request) -> None:
    request.session.pop(SESSION_FLAG, None)
    request.session.cycle_key()
