"""Test helper: a ConfigView built from the defaults plus overrides, without touching the database."""
from __future__ import annotations

from typing import Any

from core.config import ConfigView, coerce, defaults


def make_cfg(overrides: dict[str, Any] | None = None, **kw: Any) -> ConfigView:
    """make_cfg({"upstream.web_base_url": "http://127.0.0.1:1"}) — keys are dotted config keys, values coerced."""
    values = dict(defaults())
    for key, value in {**(overrides or {}), **kw}.items():
        values[key] = coerce(key, value)
    return ConfigView(values, {key: "test" for key in values})


def sim_cfg(server: Any, **overrides: Any) -> ConfigView:
    """A ConfigView pointing every upstream role at a running simulator (the `sim` fixture)."""
    env = server.upstream_env()
    values = {
        "upstream.web_base_url": env["GROK_UPSTREAM_WEB_BASE_URL"],
        "upstream.assets_base_url": env["GROK_UPSTREAM_ASSETS_BASE_URL"],
        "upstream.ws_base_url": env["GROK_UPSTREAM_WS_BASE_URL"],
        "upstream.imagine_public_base_url": env["GROK_UPSTREAM_IMAGINE_PUBLIC_BASE_URL"],
        "upstream.livekit_url": env["GROK_UPSTREAM_LIVEKIT_URL"],
    }
    values.update(overrides)
    return make_cfg(values)
