"""What every management command that uses the database shares.

`DatabaseCommand` refuses to run on a database that has not been migrated: on a fresh clone the
first query otherwise dies with a long traceback ending in "no such table". It does not migrate by
itself, because a command pointed at a shared PostgreSQL database should not change its schema as
a side effect; `serve` (and so `make run`) is the one command that migrates.

`database_error_line` turns a connection failure into one line with the password masked; manage.py
prints it for any command (migrate and serve included) and exits 2.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

NOT_SET_UP = "the database is not set up: run `python manage.py migrate` (or `make run` once)"


def database_pending_migrations(*, using: str = "default") -> list[str]:
    """Names (`app.migration`) of the migrations not yet applied to the database `using`."""
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


def database_ready_check(*, using: str = "default") -> None:
    """CommandError (exit code 2) naming what to run when migrations are pending."""
    pending = database_pending_migrations(using=using)
    if pending:
        raise CommandError(f"{NOT_SET_UP}; {len(pending)} migration(s) pending", returncode=2)


def database_error_line(exc: BaseException) -> str:
    """One line for a database that cannot be reached, without its password."""
    from django.conf import settings

    from core.envcheck import url_mask

    db = settings.DATABASES["default"]
    if "sqlite" in db.get("ENGINE", ""):
        where = str(db.get("NAME"))
    else:
        port = f":{db['PORT']}" if db.get("PORT") else ""
        where = f"{db.get('HOST') or 'localhost'}{port}/{db.get('NAME')}"
    # psycopg's messages span lines; the password is masked wherever a driver echoes it
    text = url_mask(f"cannot use the database at {where}: {' '.join(str(exc).split()) or type(exc).__name__}")
    password = str(db.get("PASSWORD") or "")
    return text.replace(password, "••••") if password else text


class DatabaseCommand(BaseCommand):
    """A command that reads or writes the database: stops with one line when it is not migrated."""

    def execute(self, *args, **options):
        database_ready_check(using=options.get("database") or "default")
        return super().execute(*args, **options)
