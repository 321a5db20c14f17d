"""`manage.py export_config [--include-secrets]`: the saved runtime config as TOML on stdout.

Defaults plus the database (not GROK_* overrides, which belong to the deployment). Secrets
(`app.api_key`, clearance cookies, proxy URLs, ...) are masked to their last 4 characters
unless --include-secrets; `import_config` keeps the current value for a masked secret.
"""
from core.config import config_export
from core.management.base import DatabaseCommand


class Command(DatabaseCommand):
    help = "Print the saved runtime config as TOML (secrets masked unless --include-secrets)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--include-secrets", action="store_true", help="print secrets in clear")

    def handle(self, *args, **opts) -> None:
        self.stdout.write(config_export(include_secrets=opts["include_secrets"]), ending="")
