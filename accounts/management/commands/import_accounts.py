"""`manage.py import_accounts FILE [--pool auto|basic|super|heavy] [--tags a,b] [--dry-run]`.

FILE: one SSO token per line (`-` reads stdin); see accounts/tokenfile.py for what is accepted.
Prints imported / duplicate / invalid with line numbers. Everything is written in one transaction.
"""
import sys

from django.core.management.base import CommandError

from accounts.maintenance import IMPORT_POOLS, account_import
from core.management.base import DatabaseCommand


class Command(DatabaseCommand):
    help = "Import SSO tokens from a text file (one per line)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="path to the token file, or - for stdin")
        parser.add_argument("--pool", default="auto", choices=IMPORT_POOLS,
                            help="pool for the new accounts; auto probes the tier via rate limits (default)")
        parser.add_argument("--tags", default="", help="comma-separated tags")
        parser.add_argument("--note", default="")
        parser.add_argument("--dry-run", action="store_true", help="report only, write nothing")
        parser.add_argument("--no-probe", action="store_true", help="do not queue a quota refresh after import")

    def handle(self, *args, file, pool, tags, note, dry_run, no_probe, **options):
        if file == "-":
            data = sys.stdin.buffer.read()
        else:
            try:
                with open(file, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        report = account_import(
            tokens=data, pool=pool, tags=[t for t in tags.split(",") if t.strip()], dry_run=dry_run, note=note,
            probe_after=not no_probe,
        )
        for line in report.lines():
            self.stdout.write(line)
