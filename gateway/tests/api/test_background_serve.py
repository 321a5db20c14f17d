"""`manage.py serve` runs background responses on its own worker: the embedded `celery worker -B`
(zero-setup: filesystem broker; with REDIS_URL, `--worker` on Redis), driven with the official SDK."""
from __future__ import annotations

import pytest

from gateway.tests.api.conftest import Env
from grok2api.testing.fixtures import TEST_GATEWAY_KEY

pytestmark = pytest.mark.django_db(transaction=True)


def test_serves_embedded_worker_runs_a_background_response(gateway_factory, sim):
    gateway = gateway_factory({"GROK_APP_API_KEY": TEST_GATEWAY_KEY, **sim.upstream_env()}, embedded_worker=True)
    env = Env(gateway, sim)
    env.account("basic", "bgserve")
    env.ready("grok-4.20-fast")
    client = env.openai()
    created = client.responses.create(model="grok-4.20-fast", input="Hello #sim:say=embedded", background=True)
    assert created.status == "queued"
    events = list(client.responses.retrieve(created.id, stream=True))  # follows the run to its end
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "embedded"
    assert client.responses.retrieve(created.id).status == "completed"
