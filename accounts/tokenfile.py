"""Parsing of SSO token lists (import files, the admin paste box). Pure Python.

Input: bytes or text, one token per line. Accepted per line, in order:
  * a UTF-8 byte-order mark at the start of the file is ignored;
  * blank lines and lines starting with `#` are skipped (not reported);
  * whitespace anywhere, zero-width characters (U+200B–U+200D, U+2060, U+FEFF) and other non-ASCII
    characters (copy-paste artefacts such as NBSP or smart quotes) are removed;
  * a cookie form is reduced to its value: `sso=<token>`, or `...; sso=<token>; sso-rw=...`;
  * surrounding quotes are removed.
Reported invalid, with the 1-based line number: lines that are not UTF-8 or contain control
characters (binary junk), tokens shorter than MIN_LENGTH / longer than MAX_LENGTH, and tokens with
a character no session token has. The SSO cookie is a JWT (docs/upstream-protocol.md): base64url
parts joined by dots. The rule is kept wider than that, so that any cookie-safe token of the usual
alphabets passes (the gateway must not insist on a JWT shape; the simulator's `sim-super-a~drop@5`
tokens must import): letters, digits and `- _ . ~ + / = @ %` (base64url and JWT, standard base64,
percent-encoding, the simulator's directives). Prose pasted by mistake (`not a token!!`) or other
punctuation fails it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MIN_LENGTH = 8
MAX_LENGTH = 4096
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# RFC 6265 cookie-octet: visible ASCII except space, DQUOTE, comma, semicolon, backslash.
_COOKIE_VALUE = re.compile(r"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$")
# The characters a session token is made of (see the module docstring): a subset of cookie-octet.
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_.~+/=@%-]+$")
TOKEN_ALPHABET = "letters, digits and - _ . ~ + / = @ %"


@dataclass(frozen=True, slots=True)
class TokenLine:
    line: int
    token: str = ""
    error: str = ""


def token_normalize(text: str) -> tuple[str, str]:
    """(token, error) for one line of text; ("", "") for a line to skip silently."""
    text = text.translate(_ZERO_WIDTH).strip()
    if not text or text.startswith("#"):
        return "", ""
    if _CONTROL.search(text):
        return "", "binary data or control characters"
    text = "".join(ch for ch in text if ord(ch) < 128)
    text = "".join(text.split())
    if ";" in text or text.lower().startswith("sso="):
        value = ""
        for part in text.split(";"):
            name, _, val = part.partition("=")
            if name.strip().lower() == "sso" and val:
                value = val
                break
        if not value:
            return "", "no sso= value in cookie text"
        text = value
    text = text.strip("\"'")
    if not text:
        return "", "empty token"
    if len(text) < MIN_LENGTH:
        return "", f"too short ({len(text)} characters, at least {MIN_LENGTH})"
    if len(text) > MAX_LENGTH:
        return "", f"too long ({len(text)} characters, at most {MAX_LENGTH})"
    if not _COOKIE_VALUE.match(text):
        return "", "characters not allowed in a cookie value"
    if not _TOKEN_CHARS.match(text):
        odd = "".join(sorted({ch for ch in text if not _TOKEN_CHARS.match(ch)}))
        return "", f"not a session token: {odd!r} found, a token has only {TOKEN_ALPHABET}"
    return text, ""


def tokens_parse(data: str | bytes) -> list[TokenLine]:
    """Every token line and every invalid line of `data`, numbered from 1. Skipped lines are omitted."""
    if isinstance(data, str):
        raw_lines: list[bytes | str] = data.splitlines()
    else:
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        raw_lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    out: list[TokenLine] = []
    for number, raw in enumerate(raw_lines, start=1):
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                out.append(TokenLine(line=number, error="binary data (not UTF-8 text)"))
                continue
        else:
            text = raw
        if number == 1:
            text = text.lstrip("\ufeff")
        token, error = token_normalize(text)
        if token or error:
            out.append(TokenLine(line=number, token=token, error=error))
    return out
