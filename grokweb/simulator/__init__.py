"""Offline stand-in for grok.com (docs/upstream-protocol.md §15): web, assets, Imagine WebSocket, public-Imagine and LiveKit
roles on one port, scenario tokens (``sim-<tier>-<label>[~directive]…``), quotas on a virtual clock,
real media bytes, fault injection and a pace knob.

Entry points: :class:`Simulator` (state + control), :func:`create_app` (ASGI), :func:`mock_transport`
(``httpx.MockTransport``), :class:`SimServer` (uvicorn in a thread), ``manage.py grok_simulator``.
"""
from .asgi import create_app
from .core import MODES, PRODUCTS, TIER_TABLE, SimRequest, SimResponse, Simulator
from .server import SimServer
from .tokens import EXAMPLE_TOKENS, Scenario, parse_token
from .transport import mock_transport

__all__ = [
    "EXAMPLE_TOKENS", "MODES", "PRODUCTS", "Scenario", "SimRequest", "SimResponse", "SimServer", "Simulator",
    "TIER_TABLE", "create_app", "mock_transport", "parse_token",
]
