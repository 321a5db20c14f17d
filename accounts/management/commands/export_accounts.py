"""`manage.py export_accounts [--include-secrets] [--format json|tokens] [--pool P]`.

json (default): a JSON array of account records with the token masked (last 4 characters) unless
--include-secrets. tokens: one clear token per line (re-importable with import_accounts); needs
--include-secrets. Soft-deleted accounts are left out unless --include-deleted.
"""
import json

from django.core.management.base import CommandError

from accounts.selectors import accounts_export
from core.management.base import DatabaseCommand


class Command(DatabaseCommand):
    help = "Export accounts (tokens masked unless --include-secrets)."

    def add_arguments(self, parser):
        parser.add_argument("--include-secrets", action="store_true", help="write tokens in clear")
        parser.add_argument("--format", choices=["json", "tokens"], default="json")
        parser.add_argument("--pool", choices=["basic", "super", "heavy"])
        parser.add_argument("--include-deleted", action="store_true")

    def handle(self, *args, include_secrets=False, format="json", pool=None, include_deleted=False, **options):
        if format == "tokens" and not include_secrets:
            raise CommandError("--format tokens writes clear tokens: add --include-secrets")
        records = accounts_export(include_secrets=include_secrets, pool=pool, include_deleted=include_deleted)
        if format == "tokens":
            for r in records:
                self.stdout.write(r["token"])
        else:
            self.stdout.write(json.dumps(records, indent=2, ensure_ascii=False))
