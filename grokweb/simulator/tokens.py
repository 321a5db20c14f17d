"""Scenario tokens of the simulator (docs/upstream-protocol.md §15.2) — a simulator-only convention.

Grammar (cookie-safe characters only):

    sim-<tier>-<label>[~<directive>]…

``<tier>`` ∈ ``basic|super|heavy``; ``<label>`` distinguishes accounts; directives:

    expired | expired403 | blocked | emaildomain | antibot | cf | rl | http=<status>
    quota=<n> | window=<s> | inband=<line|response|streamerrors>@<n> | drop@<n> | truncate@<n>
    malformed@<n> | stall@<n>=<ms> | firstbyte=<ms> | tokms=<ms> | moderate | nomodelresponse
    sse | concat | blank | crlf | nofinalnl

The same directive strings are the vocabulary of scripted outcome queues (plus ``ok``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

TIERS = ("basic", "super", "heavy")
_FLAG_DIRECTIVES = {
    "expired", "expired403", "blocked", "emaildomain", "antibot", "cf", "rl", "moderate",
    "nomodelresponse", "sse", "concat", "blank", "crlf", "nofinalnl",
}
_INBAND_FORMS = ("line", "response", "streamerrors")
_COOKIE_SAFE = re.compile(r"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$")


class TokenError(ValueError):
    """A `sim-` token or an outcome string that does not follow the grammar."""


@dataclass(frozen=True)
class Scenario:
    """Per-call behaviour derived from the token (and possibly a scripted outcome)."""

    tier: str = "basic"
    label: str = ""
    is_sim: bool = True
    flags: frozenset[str] = frozenset()
    http_status: int | None = None
    quota: int | None = None
    window: int | None = None
    inband: tuple[str, int] | None = None
    drop_at: int | None = None
    truncate_at: int | None = None
    malformed_at: int | None = None
    stall: tuple[int, int] | None = None  # (after n tokens, ms)
    firstbyte_ms: int | None = None
    tok_ms: int | None = None

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def framing(self) -> frozenset[str]:
        return self.flags & {"sse", "concat", "blank", "crlf", "nofinalnl"}


def cookie_safe(token: str) -> bool:
    return bool(_COOKIE_SAFE.match(token))


def _int(value: str, what: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise TokenError(f"{what} needs an integer, got {value!r}") from None
    if n < 0:
        raise TokenError(f"{what} must be >= 0")
    return n


def apply_directive(sc: Scenario, directive: str) -> Scenario:
    """Return ``sc`` with one directive applied (``ok`` leaves it unchanged)."""
    d = directive.strip()
    if not d or d == "ok":
        return sc
    if d in _FLAG_DIRECTIVES:
        return replace(sc, flags=sc.flags | {d})
    if d.startswith("http="):
        status = _int(d[5:], "http=")
        if not 100 <= status <= 599:
            raise TokenError(f"http= status out of range: {status}")
        return replace(sc, http_status=status)
    if d.startswith("quota="):
        return replace(sc, quota=_int(d[6:], "quota="))
    if d.startswith("window="):
        return replace(sc, window=max(1, _int(d[7:], "window=")))
    if d.startswith("firstbyte="):
        return replace(sc, firstbyte_ms=_int(d[10:], "firstbyte="))
    if d.startswith("tokms="):
        return replace(sc, tok_ms=_int(d[6:], "tokms="))
    if d.startswith("inband="):
        form, _, n = d[7:].partition("@")
        if form not in _INBAND_FORMS:
            raise TokenError(f"inband= form must be one of {_INBAND_FORMS}, got {form!r}")
        return replace(sc, inband=(form, _int(n or "0", "inband=@")))
    for name, attr in (("drop@", "drop_at"), ("truncate@", "truncate_at"), ("malformed@", "malformed_at")):
        if d.startswith(name):
            return replace(sc, **{attr: _int(d[len(name):], name)})
    if d.startswith("stall@"):
        n, _, ms = d[6:].partition("=")
        return replace(sc, stall=(_int(n, "stall@"), _int(ms or "0", "stall@n=")))
    raise TokenError(f"unknown directive {d!r}")


def parse_token(token: str, *, non_sim_policy: str = "basic") -> Scenario | None:
    """Parse an SSO value. Returns None when the token must be rejected as invalid credentials."""
    if not token:
        return None
    if not token.startswith("sim-"):
        if non_sim_policy == "reject":
            return None
        return Scenario(tier="basic", label=token[:16], is_sim=False)
    head, *directives = token.split("~")
    parts = head.split("-", 2)
    if len(parts) < 3 or parts[1] not in TIERS or not parts[2]:
        raise TokenError(f"token head must be sim-<basic|super|heavy>-<label>, got {head!r}")
    sc = Scenario(tier=parts[1], label=parts[2])
    for d in directives:
        sc = apply_directive(sc, d)
    return sc


def validate_token(token: str) -> str | None:
    """An error message for a malformed sim token, or None."""
    if not cookie_safe(token):
        return "token contains characters that are not cookie-safe"
    try:
        parse_token(token)
    except TokenError as exc:
        return str(exc)
    return None


EXAMPLE_TOKENS = (
    "sim-super-demo1",
    "sim-basic-demo2",
    "sim-heavy-demo3",
)
