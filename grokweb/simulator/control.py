"""Control API of the simulator under ``/__sim/`` (docs/upstream-protocol.md §15.1) — simulator-only, off unless enabled.

All bodies are JSON. Endpoints:

- ``POST /__sim/reset`` ``{"seed"?: int}`` — drop all state (counters, quotas, assets, queues, log, knobs).
- ``POST /__sim/seed`` ``{"seed": int}``.
- ``GET /__sim/clock`` → ``{"now", "iso", "time_scale"}``; ``POST /__sim/clock`` ``{"advance": s}`` or
  ``{"set": epoch}`` and/or ``{"time_scale": f}``.
- ``GET /__sim/knobs``; ``POST /__sim/knobs`` ``{knob: value, …}`` (unknown names → 400).
- ``POST /__sim/queue`` ``{"token", "outcomes": ["rl", "ok", …], "endpoint"?, "mode"?}``.
- ``POST /__sim/tier`` ``{"token", "tier"}``.
- ``GET /__sim/quota?token=…`` → per-mode and per-product counters;
  ``POST /__sim/quota`` ``{"token", "mode"|"product", "total"?, "window"?, "remaining"?}``.
- ``GET /__sim/log?token=&path=&endpoint=`` → ``{"requests": […]}``; ``DELETE /__sim/log``.
- ``GET /__sim/leaks`` → ``{"public": […], "foreign": […]}`` (credential headers seen on public/foreign routes).
- ``GET /__sim/tokens`` → example tokens and the token grammar.
"""
from __future__ import annotations

import json
from typing import Any

from .core import DEFAULT_KNOBS, MODES, PRODUCTS, SimRequest, SimResponse, Simulator
from .tokens import EXAMPLE_TOKENS, TokenError, validate_token


def _err(message: str, status: int = 400) -> SimResponse:
    return SimResponse.json(status, {"error": {"message": message}})


def control(sim: Simulator, req: SimRequest) -> SimResponse:
    if not sim.control_enabled:
        return SimResponse.json(404, {"error": {"code": 5, "message": "Not found", "details": []}})
    try:
        body: Any = json.loads(req.body) if req.body else {}
    except ValueError:
        return _err("body is not valid JSON")
    if not isinstance(body, dict):
        return _err("body must be a JSON object")
    name, method = req.path[len("/__sim/"):].strip("/"), req.method
    try:
        return _dispatch(sim, name, method, body, req)
    except (ValueError, TypeError, TokenError) as exc:
        return _err(str(exc))


def _dispatch(sim: Simulator, name: str, method: str, body: dict, req: SimRequest) -> SimResponse:
    if name == "reset" and method == "POST":
        sim.reset(seed=body.get("seed"))
        return SimResponse.json(200, {"ok": True, "seed": sim.seed})
    if name == "seed" and method == "POST":
        sim.reset(seed=int(body["seed"]))
        return SimResponse.json(200, {"ok": True, "seed": sim.seed})
    if name == "clock":
        if method == "POST":
            if "time_scale" in body:
                sim.configure(time_scale=float(body["time_scale"]))
            if "set" in body:
                sim.set_time(float(body["set"]))
            if "advance" in body:
                sim.advance(float(body["advance"]))
        now = sim.now()
        return SimResponse.json(200, {"now": now, "iso": sim.iso(now), "time_scale": sim.time_scale})
    if name == "knobs":
        if method == "POST":
            sim.configure(**body)
        return SimResponse.json(200, {"knobs": sim.knobs, "time_scale": sim.time_scale,
                                      "advertised_url": sim.advertised_url})
    if name == "queue" and method == "POST":
        token, outcomes = body.get("token"), body.get("outcomes")
        if not isinstance(token, str) or not isinstance(outcomes, list):
            raise ValueError("token (string) and outcomes (list) are required")
        sim.queue(token, [str(o) for o in outcomes], endpoint=body.get("endpoint"), mode=body.get("mode"))
        return SimResponse.json(200, {"ok": True})
    if name == "tier" and method == "POST":
        sim.set_tier(str(body["token"]), str(body["tier"]))
        return SimResponse.json(200, {"ok": True})
    if name == "quota":
        token = body.get("token") or req.query.get("token")
        if not token:
            raise ValueError("token is required")
        if method == "POST":
            key = body.get("mode") or body.get("product")
            if key not in MODES and key not in PRODUCTS:
                raise ValueError(f"mode/product must be one of {MODES + PRODUCTS}")
            view = sim.set_quota(token, key, total=body.get("total"), window=body.get("window"),
                                 remaining=body.get("remaining"))
            return SimResponse.json(200, view)
        return SimResponse.json(200, sim.quotas(token))
    if name == "log":
        if method == "DELETE":
            with sim._lock:
                sim.log.clear()
            return SimResponse.json(200, {"ok": True})
        q = req.query
        return SimResponse.json(200, {"requests": sim.requests(token=q.get("token"), path=q.get("path"),
                                                               endpoint=q.get("endpoint"))})
    if name == "leaks":
        with sim._lock:
            return SimResponse.json(200, {"public": list(sim.leaks), "foreign": list(sim.foreign)})
    if name == "tokens":
        return SimResponse.json(200, {"examples": list(EXAMPLE_TOKENS),
                                      "grammar": "sim-<basic|super|heavy>-<label>[~<directive>]...",
                                      "valid": {t: validate_token(t) is None for t in EXAMPLE_TOKENS}})
    return SimResponse.json(404, {"error": {"message": f"unknown control call {method} /__sim/{name}",
                                            "knobs": sorted(DEFAULT_KNOBS)}})
