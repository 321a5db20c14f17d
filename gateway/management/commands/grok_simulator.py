"""``python manage.py grok_simulator`` — serve the offline grok.com simulator on a real socket (uvicorn).

All upstream roles (web, assets, Imagine WebSocket, public Imagine, LiveKit stub) share one port; point
the gateway's GROK_UPSTREAM_* base URLs at it (printed on start).
"""
from __future__ import annotations

import json

import uvicorn
from django.core.management.base import BaseCommand, CommandError

from grokweb.simulator import EXAMPLE_TOKENS, Simulator
from grokweb.simulator.server import bind_socket, uvicorn_config


class Command(BaseCommand):
    help = "Serve the offline grok.com simulator (HTTP + WebSocket on one port)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9010)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--pace", type=float, default=1.0,
                            help="0 = no artificial delays, 1 = realistic, other values scale linearly")
        parser.add_argument("--time-scale", type=float, default=1.0,
                            help="virtual clock speed (quota windows, timestamps); 0 freezes it")
        parser.add_argument("--advertised-url", default="",
                            help="base URL put into absolute URLs it emits (default http://HOST:PORT)")
        parser.add_argument("--control", dest="control", action="store_true", default=False,
                            help="enable the /__sim/ control API")
        parser.add_argument("--no-control", dest="control", action="store_false")
        parser.add_argument("--knobs", default="", help="JSON object of extra knobs, e.g. '{\"exhausted\":\"inband\"}'")
        parser.add_argument("--print-tokens", action="store_true", help="print example tokens and exit")
        parser.add_argument("--log-level", default="warning")

    def handle(self, *args, **opts):
        if opts["print_tokens"]:
            for token in EXAMPLE_TOKENS:
                self.stdout.write(token)
            return
        if not 0 <= opts["port"] <= 65535:
            raise CommandError("--port must be between 0 and 65535")
        if opts["pace"] < 0:
            raise CommandError("--pace must be >= 0")
        try:
            knobs = json.loads(opts["knobs"]) if opts["knobs"] else {}
        except ValueError as exc:
            raise CommandError(f"--knobs is not valid JSON: {exc}") from exc
        host, port = opts["host"], opts["port"]
        advertised = opts["advertised_url"] or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        try:
            sim = Simulator(seed=opts["seed"], pace=opts["pace"], advertised_url=advertised, control=opts["control"],
                            time_scale=opts["time_scale"])
            if knobs:
                sim.configure(**knobs)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        ws = "wss://" + advertised[8:] if advertised.startswith("https://") else "ws://" + advertised.split("://", 1)[-1]
        self.stdout.write(f"grok simulator on http://{host}:{port} (pace {opts['pace']}, seed {opts['seed']}, "
                          f"control {'on' if opts['control'] else 'off'})")
        self.stdout.write("Point the gateway at it:")
        for key, value in (("GROK_UPSTREAM_WEB_BASE_URL", advertised), ("GROK_UPSTREAM_ASSETS_BASE_URL", advertised),
                           ("GROK_UPSTREAM_WS_BASE_URL", ws), ("GROK_UPSTREAM_IMAGINE_PUBLIC_BASE_URL", advertised),
                           ("GROK_UPSTREAM_LIVEKIT_URL", ws)):
            self.stdout.write(f"  export {key}={value}")
        self.stdout.write("Example account tokens to import (basic / super / heavy tiers):")
        for token in EXAMPLE_TOKENS:
            self.stdout.write(f"  {token}")
        self.stdout.flush()
        try:
            sock = bind_socket(host, port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc
        config = uvicorn_config(sim, log_level=opts["log_level"])
        uvicorn.Server(config).run(sockets=[sock])
