"""Keep secrets out of every log line, whoever writes it.

Why: at LOG_LEVEL=DEBUG libraries log what they send. `websockets` logs each handshake header of
the Imagine WebSocket, so the account's full `sso` / `sso-rw` cookies and the operator's
`cf_clearance` reached the log file and the console. Nothing stops the next library (or a future
line of ours) from doing the same, so the masking is not left to each call site:

- `SecretFilter` is attached to every handler of LOGGING (core/envcheck.py). It renders the
  message with its args, masks the values of credential headers (Cookie, Set-Cookie,
  Authorization, Proxy-Authorization, x-api-key, x-statsig-id) and secret-looking tokens
  (`sso=`, `sso-rw=`, `cf_clearance=`, `Bearer …`, `sk-…`) wherever they appear, and does the same
  to the formatted traceback and stack of the record.
- `PrivateFileHandler` creates the log file (and each rotated one) with mode 0600, since even a
  masked log tells what was asked of which account.
- Chatty transport libraries are capped at WARNING in LOGGING unless LOG_LIBRARY_DEBUG=true
  (envcheck.LIBRARY_LOGGERS): the filter masks what it recognises, the cap keeps the rest out.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import re

MASK = "[redacted]"

# Credential-bearing header names, as they appear in logged header lines ("> Cookie: …"), in dict
# or tuple reprs ("'cookie': '…'", "(b'cookie', b'…')") and in "name=value" debug strings.
_HEADER_NAMES = r"(?:set-cookie|cookie|proxy-authorization|authorization|x-api-key|x-statsig-id)"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # repr of a (name, value) pair or a dict item: keep the quotes, mask the quoted value
    (re.compile(rf"""(?i)(b?['"]{_HEADER_NAMES}['"]\s*[,:]\s*b?(['"]))(.*?)(\2)"""), rf"\g<1>{MASK}\g<4>"),
    # a header line or "name: value" / "name=value": mask to the end of the line
    (re.compile(rf"(?i)(?<![\w-])({_HEADER_NAMES}\s*[:=]\s*)(?!b?['\"])[^\r\n]*"), rf"\g<1>{MASK}"),
    # cookie pairs and tokens anywhere else
    (re.compile(r"(?i)(?<![\w-])((?:sso-rw|sso|cf_clearance)=)[^;,\s'\"&]+"), rf"\g<1>{MASK}"),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\g<1>{MASK}"),
    (re.compile(r"(?<![\w-])sk-[A-Za-z0-9_-]{6,}"), f"sk-{MASK}"),
)


# Every pattern above needs one of these words (case aside): a line without any of them, like the
# per-request line, is returned after a few substring checks instead of five substitutions.
_TRIGGERS = ("cookie", "authorization", "x-api-key", "x-statsig-id", "sso", "cf_clearance", "bearer", "sk-")


def redact(text: str) -> str:
    """`text` with every credential value masked."""
    lowered = text.lower()
    if not any(word in lowered for word in _TRIGGERS):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class SecretFilter(logging.Filter):
    """Masks secrets in a record's message (args rendered in), traceback and stack; never drops one."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        # Each handler runs this on the same record; masking is idempotent, so a second pass only
        # re-checks text that is already clean (args are gone after the first).
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class PrivateFileHandler(logging.handlers.TimedRotatingFileHandler):
    """The daily-rotated log file, created (and re-created after each rotation) with mode 0600."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.chmod(self.baseFilename, 0o600)  # an older file created with the umask's mode
        return open(fd, self.mode if "a" in self.mode else "a", encoding=self.encoding, errors=self.errors)
