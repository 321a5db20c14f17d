"""`manage.py ensure_admin`: create the first superuser if none exists (also run by `serve`).

Uses ADMIN_USERNAME / ADMIN_PASSWORD; without a password one is generated, printed once and
written to DATA_DIR/admin-password.txt (mode 0600). Does nothing when a superuser exists.
"""
from grok2api.bootstrap import admin_ensure
from core.management.base import DatabaseCommand


class Command(DatabaseCommand):
    help = "Create the first superuser from ADMIN_USERNAME / ADMIN_PASSWORD (or a generated password) if none exists."

    def handle(self, *args, **opts) -> None:
        created = admin_ensure()
        if created is None:
            self.stdout.write("A superuser already exists; nothing to do.")
        elif created.password_file is None:
            self.stdout.write(f"Created superuser {created.username!r} with ADMIN_PASSWORD.")
