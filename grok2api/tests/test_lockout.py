"""Guessing the admin password: django-axes locks a username + client address out for a cool-off."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user("operator", password="the-right-pw-1", is_staff=True, is_superuser=True)


def _login(client: Client, password: str, username: str = "operator"):
    return client.post(LOGIN, {"username": username, "password": password})


def test_wrong_admin_passwords_lock_the_login_until_the_cool_off(operator, settings):
    client = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        wrong = _login(client, "guess")
        assert wrong.status_code == 200  # the form again, with Django's error
        assert b"Please enter the correct username and password" in wrong.content
    locked = _login(client, "guess")
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    # the right password is refused while the lock lasts
    refused = _login(client, "the-right-pw-1")
    assert refused.status_code == 429
    assert client.get("/admin/").status_code == 302  # not signed in
    # the same username from another address is not locked (username + address)
    assert _login(Client(REMOTE_ADDR="203.0.113.77"), "the-right-pw-1").status_code == 302

    from axes.models import AccessAttempt

    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time
                                 - timedelta(hours=settings.AXES_COOLOFF_TIME, minutes=1))
    assert _login(client, "the-right-pw-1").status_code == 302
    assert client.get("/admin/").status_code == 200


def test_failures_are_stored_without_the_password(operator, settings):
    from axes.models import AccessAttempt

    _login(Client(REMOTE_ADDR="203.0.113.5"), "a-secret-guess")
    attempt = AccessAttempt.objects.get()
    assert attempt.username == "operator" and attempt.ip_address == "203.0.113.5"
    assert "a-secret-guess" not in attempt.post_data
