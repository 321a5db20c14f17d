"""Secrets at rest: SSO tokens and proxy URLs encrypted in the database, masked for display."""
from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import Account
from core.models import Proxy
from core import crypto

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoiYWJjIn0.sig-0123456789wxyz"


def test_it_round_trips_and_uses_fresh_ciphertext_each_time():
    first, second = crypto.encrypt(TOKEN), crypto.encrypt(TOKEN)
    assert first != second
    assert TOKEN not in first
    assert crypto.decrypt(first) == TOKEN == crypto.decrypt(second)


def test_it_refuses_ciphertext_from_another_key(settings):
    sealed = crypto.encrypt(TOKEN)
    settings.ENCRYPTION_KEY = "a-different-operator-key-123456"
    with pytest.raises(ValueError, match="encryption key changed"):
        crypto.decrypt(sealed)


def test_it_masks_to_the_last_four_characters():
    assert crypto.mask(TOKEN) == "••••••wxyz"
    assert crypto.mask("") == ""


@pytest.mark.django_db
def test_the_token_column_never_holds_the_token():
    account = Account()
    account.set_token(TOKEN)
    account.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT token, token_fingerprint, token_last4 FROM accounts_account WHERE id = %s", [account.pk])
        raw, fingerprint, last4 = cursor.fetchone()
    assert TOKEN not in raw and "sig-0123456789" not in raw
    assert fingerprint == crypto.fingerprint(TOKEN) and TOKEN not in fingerprint
    assert last4 == "wxyz"
    assert Account.objects.get(pk=account.pk).token == TOKEN
    assert account.masked_token == "••••••wxyz"
    assert TOKEN not in str(account)


@pytest.mark.django_db
def test_the_proxy_url_is_encrypted_at_rest():
    proxy = Proxy.objects.create(url="socks5://user:hunter2@10.1.2.3:1080", label="home")
    with connection.cursor() as cursor:
        cursor.execute("SELECT url FROM accounts_proxy WHERE id = %s", [proxy.pk])
        (raw,) = cursor.fetchone()
    assert "hunter2" not in raw and "10.1.2.3" not in raw
    assert Proxy.objects.get(pk=proxy.pk).url == "socks5://user:hunter2@10.1.2.3:1080"


def test_api_keys_are_hashed():
    digest = crypto.hash_api_key("sk-g2a-abc")
    assert len(digest) == 64 and "sk-g2a" not in digest
