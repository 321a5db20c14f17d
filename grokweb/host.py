"""What the application embedding the client lends it: the current settings and the egress choice.

grokweb imports no Django and no app (the layers contract in .importlinter). Its settings come in
as arguments — a `cfg` object with `.get(key, default)` over the keys of config.defaults.toml,
given to GrokClient and upstream_client — and GrokClient is built for one `Egress`. When a caller
gives neither, the client asks the host installed here; the project's core installs the runtime
config snapshot and its proxy pool at startup (grok2api/apps.py). Without a host, leaving them out
is an error, never a silent default.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from grokweb.egress import Egress


class Settings(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Host:
    settings: Callable[[], Settings]  # the settings in force now
    egress_pick: Callable[..., Egress]  # egress_pick(cfg=settings) -> the egress for a new client


_host: Host | None = None


def host_install(host: Host) -> None:
    global _host
    _host = host


def host_get() -> Host:
    if _host is None:
        raise RuntimeError("grokweb has no host: pass cfg= and egress= explicitly, or install one with host_install()")
    return _host


def settings_current(cfg: Settings | None) -> Settings:
    """`cfg` when given, else the host's settings in force now."""
    return cfg if cfg is not None else host_get().settings()
