"""First-start work shared by `serve` and the `ensure_admin` command.

`admin_ensure` creates the first superuser when none exists: from ADMIN_USERNAME /
ADMIN_PASSWORD, or with a generated password that is printed once and written to
DATA_DIR/admin-password.txt (mode 0600). There is no default password.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class AdminCreated:
    username: str
    password_file: Path | None  # set when the password was generated


def admin_ensure(*, username: str | None = None, password: str | None = None) -> AdminCreated | None:
    """Create the first superuser if there is none; return what was created, or None."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    User = get_user_model()
    username = username or settings.ADMIN_USERNAME
    password = password if password is not None else settings.ADMIN_PASSWORD
    with transaction.atomic():
        if User.objects.filter(is_superuser=True).exists():
            return None
        generated = not password
        if generated:
            password = secrets.token_urlsafe(18)
        user = User.objects.filter(username=username).first() or User(username=username)
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        user.set_password(password)
        user.save()
    path = None
    if generated:
        path = Path(settings.DATA_DIR) / "admin-password.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"username: {username}\npassword: {password}\n")
        os.chmod(path, 0o600)  # O_CREAT's mode is ignored for an existing file
        print(
            f"\n  grok2api: created admin user {username!r} with password: {password}\n"
            f"  (also written to {path}; change it in /admin and delete the file)\n",
            flush=True,
        )
    return AdminCreated(username=username, password_file=path)
