"""First start: the first superuser, with no default password."""
from __future__ import annotations

import stat
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command


@pytest.mark.django_db
def test_it_generates_a_password_prints_it_once_and_writes_it_0600(settings, tmp_path, capsys):
    settings.DATA_DIR = tmp_path
    settings.ADMIN_USERNAME = "operator"
    settings.ADMIN_PASSWORD = ""
    get_user_model().objects.filter(is_superuser=True).delete()
    call_command("ensure_admin", stdout=StringIO())
    printed = capsys.readouterr().out
    path = tmp_path / "admin-password.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().split("password: ")[1].strip()
    assert len(password) >= 20
    assert password in printed
    user = get_user_model().objects.get(username="operator")
    assert user.is_superuser and user.is_staff and user.check_password(password)

    # Second start: nothing happens, nothing printed.
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    assert "already exists" in out.getvalue()
    assert password not in capsys.readouterr().out


@pytest.mark.django_db
def test_it_uses_admin_password_when_given(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.ADMIN_USERNAME = "root2"
    settings.ADMIN_PASSWORD = "correct horse battery"
    get_user_model().objects.filter(is_superuser=True).delete()
    call_command("ensure_admin", stdout=StringIO())
    assert get_user_model().objects.get(username="root2").check_password("correct horse battery")
    assert not (tmp_path / "admin-password.txt").exists()
