"""The project's core app: runtime config, snapshots, crypto, fields and the tables they keep.

Its label stays "grok2api": these models lived in the project package until the core was split
out of it, so their tables, migration history, content types and admin URLs keep that name and
an existing database needs no migration for the move."""
from __future__ import annotations

import logging

from django.apps import AppConfig

log = logging.getLogger("grok2api")


class CoreConfig(AppConfig):
    name = "core"
    label = "grok2api"
    verbose_name = "grok2api"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import tomllib

        from django.conf import settings

        from core.config import ConfigError, defaults, env_overrides, env_unknown
        from core.envcheck import EnvError

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
        from core.config import config
        from core.egress import egress_pick
        from grokweb.host import Host, host_install

        host_install(Host(settings=config, egress_pick=egress_pick))
