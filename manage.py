#!/usr/bin/env python
"""Django's command-line utility for grok2api."""
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grok2api.settings")
    from core.envcheck import EnvError

    try:
        from django.core.management import execute_from_command_line
        from django.db import InterfaceError, OperationalError

        execute_from_command_line(sys.argv)
    except EnvError as exc:
        print(f"grok2api: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (OperationalError, InterfaceError) as exc:
        # An unreachable or refused database (any command, migrate and serve included): one line,
        # password masked, instead of a traceback that repeats the connection settings.
        from core.management.base import database_error_line

        print(f"grok2api: {database_error_line(exc)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
