"""`manage.py serve` runs background responses without a separate worker: on its embedded `celery
worker -B` (zero-setup: filesystem broker; with REDIS_URL, `--worker` on Redis), or inside the
server with CELERY_TASK_ALWAYS_EAGER — driven with the official SDK."""
from __future__ import annotations

import pytest

from gateway.tests.api.conftest import Env
from grok2api.testing.fixtures import TEST_GATEWAY_KEY

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("how", ["embedded worker", "eager"])
def test_serve_runs_a_background_response(gateway_factory, sim, how):
    extra = {"CELERY_TASK_ALWAYS_EAGER": "1"} if how == "eager" else {}
    gateway = gateway_factory({"GROK_APP_API_KEY": TEST_GATEWAY_KEY, **sim.upstream_env(), **extra},
                              embedded_worker=how == "embedded worker")
    env = Env(gateway, sim)
    env.account("basic", "bgserve" + how[:3])
    env.ready("grok-4.20-fast")
    client = env.openai()
    created = client.responses.create(model="grok-4.20-fast", input="Hello #sim:say=embedded", background=True)
    assert created.status == "queued"
    events = list(client.responses.retrieve(created.id, stream=True))  # follows the run to its end
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "embedded"
    assert client.responses.retrieve(created.id).status == "completed"
