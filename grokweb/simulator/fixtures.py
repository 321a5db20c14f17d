"""Pytest fixtures for the simulator on a real socket (issue 3).

- ``simulator_server`` (session): uvicorn in a background thread on 127.0.0.1, port 0, control enabled,
  pace 0, seed 1234, frozen virtual clock (``time_scale`` 0; move it with ``.sim.advance(s)``). Yields a
  :class:`SimServer`: ``.url``, ``.foreign_url`` (same port, host ``localhost``), ``.ws_url``, ``.sim``,
  ``.reset(**knobs)`` and ``.upstream_env()`` (the ``GROK_UPSTREAM_*`` values).
- ``sim`` (function): the same server, state reset first.
- ``sim_transport`` (function): an ``httpx.MockTransport`` over a fresh in-process Simulator; the
  Simulator is reachable as ``sim_transport.sim``.
"""
from __future__ import annotations

import pytest

from .core import Simulator
from .server import SimServer
from .transport import mock_transport

TEST_SEED = 1234


@pytest.fixture(scope="session")
def simulator_server():
    server = SimServer(Simulator(seed=TEST_SEED, pace=0.0, control=True, time_scale=0.0)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sim(simulator_server):
    simulator_server.reset()
    return simulator_server


@pytest.fixture
def sim_transport():
    simulator = Simulator(seed=TEST_SEED, pace=0.0, control=True, time_scale=0.0,
                          advertised_url="http://sim.test")
    transport = mock_transport(simulator)
    transport.sim = simulator  # type: ignore[attr-defined]
    return transport
