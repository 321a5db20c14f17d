"""Who may open the web pages (/webui/*) and their same-origin API (/webui/api/*, /webui/ws/*).

Rules, all read from the runtime config on every request (so admin edits apply at once):
- `app.webui_enabled` false → every /webui path answers 404 ("the web pages are disabled");
- `app.webui_key` set → the visitor signs in at /webui/login with that key;
- `app.webui_key` empty and /v1 needs a key (`app.api_key` or an enabled ApiKey row) → the visitor
  signs in at /webui/login with a /v1 API key: the pages must never be a keyless way into the
  accounts that /v1 protects;
- `app.webui_key` empty and /v1 open → the pages are open too;
- an active staff user signed in to Django admin gets in whenever the pages are enabled.

Signing in stores, in the Django session, a keyed HMAC (`salted_hmac`, SECRET_KEY) of the key
(web page key) or of the matched key's stored digest (API key): the session cookie itself is
Django's (HttpOnly, server-side session), the stored value proves which key was presented, and
changing `app.webui_key`, or removing/disabling the API key that signed in, signs the session out
(the stored value no longer matches). Keys are compared in constant time.

Wrong keys count as failed logins in django-axes (`AxesProxyHandler`, the same handler and limits
as the admin login: AXES_FAILURE_LIMIT per username + client IP for AXES_COOLOFF_TIME), under the
username `WEBUI_USERNAME`, which no Django user can have (it contains spaces and brackets).

The server-side `app.api_key` never reaches a page: the pages call /webui/api/*, which run the
same services as /v1 under the `WEBUI_PRINCIPAL`.
"""
from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.utils.crypto import constant_time_compare, salted_hmac

from core.config import config
from gateway.auth import Principal, api_open, key_digests, key_match

SESSION_FLAG = "webui_access"
_SALT = "grok2api.webui.access"
WEBUI_USERNAME = "[web page key]"  # axes' username for the page key; not a valid Django username
_CREDENTIALS = {"username": WEBUI_USERNAME}

# Usage records and model checks of the pages are attributed to this principal (no per-key allow-list).
WEBUI_PRINCIPAL = Principal(key_id=None, label="webui")

# What /webui/login asks for.
MODE_OPEN = "open"          # nothing: the pages are open
MODE_WEBUI_KEY = "webui_key"  # app.webui_key
MODE_API_KEY = "api_key"      # a /v1 API key (no app.webui_key, /v1 needs a key)


def webui_enabled() -> bool:
    return bool(config().get("app.webui_enabled"))


def webui_key() -> str:
    return str(config().get("app.webui_key") or "").strip()


def access_mode() -> str:
    if webui_key():
        return MODE_WEBUI_KEY
    return MODE_OPEN if api_open() else MODE_API_KEY


def key_required() -> bool:
    return access_mode() != MODE_OPEN


def _digest(key: str) -> str:
    return salted_hmac(_SALT, key, algorithm="sha256").hexdigest()


def _api_proof(stored_digest: bytes) -> str:
    return _digest("api-key:" + stored_digest.hex())


def _is_staff(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active and user.is_staff)


def access_granted(*, session, user=None) -> bool:
    """True when this visitor may use the pages (sync: touches the session store and the user).

    `session`/`user` are `request.session`/`request.user` for HTTP, `scope["session"]`/`scope["user"]`
    for WebSockets."""
    if not webui_enabled():
        return False
    mode = access_mode()
    if mode == MODE_OPEN or _is_staff(user):
        return True
    stored = session.get(SESSION_FLAG) if session is not None else None
    if not isinstance(stored, str):
        return False
    if mode == MODE_WEBUI_KEY:
        return constant_time_compare(stored, _digest(webui_key()))
    granted = False
    for known in key_digests():  # no early exit: timing says nothing about which key matched
        granted |= constant_time_compare(stored, _api_proof(known))
    return granted


def access_locked(*, request) -> bool:
    """True while axes locks this client out of the page key (too many wrong keys from its IP)."""
    return not AxesProxyHandler.is_allowed(request, _CREDENTIALS)


def access_sign_in(*, request, presented: str) -> bool:
    """Check the presented key; on success rotate the session id and store the signed proof.

    A wrong key is reported to axes as a failed login (it counts towards the lockout); a right one
    clears this client's failures when AXES_RESET_ON_SUCCESS is on, as axes does for the admin."""
    mode = access_mode()
    presented = presented.strip()
    proof = None
    if mode == MODE_WEBUI_KEY:
        if constant_time_compare(presented, webui_key()):
            proof = _digest(webui_key())
    elif mode == MODE_API_KEY:
        matched = key_match(presented)
        # A key limited to some models is not enough: the pages serve every model (WEBUI_PRINCIPAL).
        if matched is not None and not matched[1].allowed_models:
            proof = _api_proof(matched[0])
    if proof is None:
        user_login_failed.send(sender=__name__, credentials=_CREDENTIALS, request=request)
        return False
    if settings.AXES_RESET_ON_SUCCESS:
        AxesProxyHandler.update_request(request)
        AxesProxyHandler.reset_attempts(username=WEBUI_USERNAME, ip_address=request.axes_ip_address)
    request.session.cycle_key()  # a fresh session id after sign-in (no fixation)
    request.session[SESSION_FLAG] = proof
    return True


def access_sign_out(*, request) -> None:
    request.session.pop(SESSION_FLAG, None)
    request.session.cycle_key()
