"""The project's wiring app (signal wiring, incl. seeding the beat schedule after migrate; the
management commands) and the admin app with our AdminSite. Start-up validation of GROK_*
overrides is the core's (core/apps.py)."""
from __future__ import annotations

import logging

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig

log = logging.getLogger("grok2api")


class GatewayAdminConfig(AdminConfig):
    """Replaces "django.contrib.admin" in INSTALLED_APPS: admin.site is grok2api/admin_site.py's."""

    default_site = "grok2api.admin_site.GatewayAdminSite"


class Grok2apiConfig(AppConfig):
    """The project's wiring: management commands, admin template tags, the beat schedule's seeding.
    The core's tables belong to core/apps.py, which keeps the "grok2api" label; this one is "site"."""

    name = "grok2api"
    label = "site"
    verbose_name = "grok2api site"

    def ready(self) -> None:
        import gateway.auth  # noqa: F401  (connects the ApiKey signals that bump the "api_keys" stamp)

        from django.apps import apps
        from django.db.models.signals import post_migrate

        # The beat schedule exists after the first `migrate` (which `serve` runs on every start),
        # before any beat process has started (grok2api/schedule.py). Django sends post_migrate
        # only for apps with models, so this listens for the core's.
        post_migrate.connect(_schedule_seed, sender=apps.get_app_config("grok2api"), dispatch_uid="grok2api_schedule_seed")


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
