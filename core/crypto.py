"""Encryption at rest for secrets (SSO tokens, proxy credentials) and hashing of client keys.

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) with a key derived from
GROK2API_ENCRYPTION_KEY, or from SECRET_KEY when that is unset. Changing the key makes stored
tokens unreadable, so the README tells operators to keep it with their backups.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(material: str) -> Fernet:
    digest = hashlib.sha256(("grok2api-at-rest:" + material).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _key_material() -> str:
    return settings.ENCRYPTION_KEY or settings.SECRET_KEY


def encrypt(plaintext: str) -> str:
    return _fernet(_key_material()).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet(_key_material()).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise ValueError("stored secret cannot be decrypted: the encryption key changed") from None


def fingerprint(secret: str) -> str:
    """Stable keyed digest used for uniqueness/lookup without storing the secret in clear."""
    return hmac.new(_key_material().encode(), secret.encode(), hashlib.sha256).hexdigest()


def hash_api_key(key: str) -> str:
    """Client API keys are stored as SHA-256 (keys are random and long; no slow hash needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def mask(secret: str, *, keep: int = 4) -> str:
    if not secret:
        return ""
    return "•" * 6 + secret[-keep:]
