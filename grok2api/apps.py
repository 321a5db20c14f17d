"""The project app: startup validation of GROK_* overrides, signal wiring, management commands."""
from __future__ import annotations

import logging

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig

log = logging.getLogger("grok2api")


class GatewayAdminConfig(AdminConfig):
    """Replaces "django.contrib.admin" in INSTALLED_APPS: admin.site is grok2api/admin_site.py's."""

    default_site = "grok2api.admin_site.GatewayAdminSite"


class Grok2apiConfig(AppConfig):
    name = "grok2api"
    verbose_name = "grok2api"

    def ready(self) -> None:
        import tomllib

        from django.conf import settings

        from accounts.config import ConfigError, defaults, env_overrides, env_unknown
        from grok2api.envcheck import EnvError

        try:
            defaults()
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise EnvError(f"{settings.CONFIG_DEFAULTS_PATH.name}: cannot be read as TOML ({exc})") from None
        # A malformed GROK_* value stops every entry point (manage.py, serve, workers) with one
        # line naming the variable, like a malformed deployment variable.
        try:
            env_overrides()
        except ConfigError as exc:
            raise EnvError(str(exc)) from None
        for name in env_unknown():
            log.warning("%s names no runtime config key and is ignored (see the README's configuration table)", name)

        import gateway.auth  # noqa: F401  (connects the ApiKey signals that bump the "api_keys" stamp)
