"""The project app: startup validation of GROK_* overrides, signal wiring (incl. seeding the beat
schedule after migrate), management commands."""
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

        from grok2api.config import ConfigError, defaults, env_overrides, env_unknown
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

        # The Grok Web client takes its settings and egress as arguments; when a caller gives
        # none it uses these: the runtime config snapshot and the proxy pool (grokweb/host.py).
        from grok2api.config import config
        from grok2api.egress import egress_pick
        from grokweb.host import Host, host_install

        host_install(Host(settings=config, egress_pick=egress_pick))

        import gateway.auth  # noqa: F401  (connects the ApiKey signals that bump the "api_keys" stamp)

        from django.db.models.signals import post_migrate

        # The beat schedule exists after the first `migrate` (which `serve` runs on every start),
        # before any beat process has started (grok2api/schedule.py).
        post_migrate.connect(_schedule_seed, sender=self, dispatch_uid="grok2api_schedule_seed")


def _schedule_seed(sender, using="default", plan=None, **kwargs) -> None:
    from django.db import connections

    from grok2api.schedule import schedule_config_read, schedule_reconcile

    if plan is None:  # a test database flush, not a migrate
        return
    if using != "default" or "django_celery_beat_periodictask" not in connections[using].introspection.table_names():
        return
    try:
        schedule_reconcile(cfg=schedule_config_read())
    except Exception:  # e.g. migrating backwards; beat reconciles on start
        log.warning("seeding the beat schedule after migrate failed", exc_info=True)
