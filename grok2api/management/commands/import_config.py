"""`manage.py import_config FILE.toml [--dry-run]`: load a config file into the saved config.

Accepts this project's format (see `export_config`) and the reference project's config.toml:
legacy flat keys are mapped (core/config.py), keys dropped by policy are ignored with a
warning, and so are settings that would do nothing as imported (`config_warnings`: features.stream
= true, clearance cookies with proxy.clearance.mode none). The file is validated as a whole first: an unreadable file, an unknown key or a bad
value is reported (every one, one per line) and nothing changes (exit code 2). Keys absent from
the file keep their saved values. GROK_* variables still override the result at run time.
"""
from __future__ import annotations

import tomllib

from django.core.management.base import CommandError

from core.config import (
    config_parse_file,
    config_save,
    config_saved,
    config_warnings,
    env_overrides,
    mask_value,
)
from core.management.base import DatabaseCommand


class Command(DatabaseCommand):
    help = "Import a runtime config TOML file (ours or the reference project's config.toml)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="path of the TOML file")
        parser.add_argument("--dry-run", action="store_true", help="validate and show the changes without saving")

    def handle(self, *args, **opts) -> None:
        path = opts["file"]
        try:
            with open(path, "rb") as fh:
                tree = tomllib.load(fh)
        except OSError as exc:
            raise CommandError(f"{path}: cannot read ({exc.strerror})", returncode=2) from None
        except tomllib.TOMLDecodeError as exc:
            raise CommandError(f"{path}: not valid TOML ({exc})", returncode=2) from None

        parsed = config_parse_file(tree)
        for line in parsed.warnings:
            self.stderr.write(f"warning: {line}")
        problems = [f"{key}: unknown key" for key in parsed.unknown]
        problems += [f"{key}: {message}" for key, message in parsed.errors.items()]
        if problems:
            for line in problems:
                self.stderr.write(f"error: {line}")
            raise CommandError(f"{path}: {len(problems)} problem(s); nothing was changed", returncode=2)

        current = config_saved()
        changes = {k: v for k, v in parsed.values.items() if current.get(k) != v}
        overridden = env_overrides()
        for key in sorted(changes):
            note = f"  (overridden at run time by the environment)" if key in overridden else ""
            self.stdout.write(f"{key}: {mask_value(key, current.get(key))!r} -> {mask_value(key, changes[key])!r}{note}")
        # what the result will do, not just what the file says (a cookie may meet a mode saved earlier)
        for line in config_warnings({**current, **changes, **overridden}):
            self.stderr.write(f"warning: {line}")
        if opts["dry_run"]:
            self.stdout.write(f"dry run: {len(changes)} change(s), nothing saved")
            return
        if changes:
            config_save(values=changes)
        self.stdout.write(f"imported {path}: {len(changes)} change(s) saved")
