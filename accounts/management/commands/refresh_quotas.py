"""`manage.py refresh_quotas [--pool P] [--account ID ...]`: probe rate limits now and store them."""
from django.core.management.base import CommandError

from accounts.quota import quota_refresh
from core.management.base import DatabaseCommand


class Command(DatabaseCommand):
    help = "Probe upstream rate limits for accounts (all active/cooling ones by default) and store the windows."

    def add_arguments(self, parser):
        parser.add_argument("--pool", choices=["basic", "super", "heavy"])
        parser.add_argument("--account", type=int, action="append", dest="accounts", metavar="ID",
                            help="account id (repeatable); also re-checks expired accounts")
        parser.add_argument("--mode", action="append", dest="modes", metavar="MODE", help="probe only this mode (repeatable)")

    def handle(self, *args, pool=None, accounts=None, modes=None, **options):
        results = quota_refresh(account_ids=accounts, pool=pool, modes=modes, trigger="manage.py refresh_quotas")
        if accounts and not results:
            raise CommandError(f"no such account (or disabled/deleted): {', '.join(map(str, accounts))}")
        failed = 0
        for r in results:
            failed += not r.ok
            self.stdout.write(f"#{r.account_id} ••••{r.last4} [{r.pool}] {'ok' if r.ok else 'FAILED'}: {r.message}")
        self.stdout.write(f"{len(results)} account(s) probed, {failed} failed")
