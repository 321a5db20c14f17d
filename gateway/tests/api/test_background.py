"""Responses background mode (gateway/background.py) through the official `openai` SDK against a
real `serve` process (no embedded worker) and real `celery worker` processes on the same broker and
database, with the simulator on a real socket: create → poll → stream → resume → cancel, and a
worker killed mid-job whose job the next worker finishes. Runs in both modes (SQLite + filesystem
broker, PostgreSQL + Redis)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.models import StoredResponse, StoredResponseEvent
from gateway.tests.api.conftest import Env, bump, wait_until
from grok2api.testing.fixtures import BASE_DIR, TEST_GATEWAY_KEY, GatewayFactory

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "grok-4.20-fast"
EVENT = TypeAdapter(ResponseStreamEvent)


class Workers:
    """`celery worker` processes (solo pool: one job at a time) on the gateway's broker and database."""

    def __init__(self, gateway, log_dir) -> None:
        self.gateway = gateway
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.started = 0

    def start(self) -> subprocess.Popen:
        self.started += 1
        env = {**os.environ, **self.gateway.env}
        env.pop("PYTEST_CURRENT_TEST", None)
        if not env.get("DATABASE_URL"):
            env.pop("DATABASE_URL", None)
        log_path = self.log_dir / f"worker{self.started}.log"
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "grok2api", "worker", "--pool=solo", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "-l", "info", "-n", f"bg-{os.getpid()}-{self.started}@%h"],
                cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.process.log_path = log_path  # type: ignore[attr-defined]
        return self.process

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to finish, acknowledge or clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace") if self.process else ""  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def bg(django_db_setup, simulator_server, tmp_path_factory):
    factory = GatewayFactory(tmp_path_factory.mktemp("background"))
    gateway = factory({"GROK_APP_API_KEY": TEST_GATEWAY_KEY, **simulator_server.upstream_env()})
    global _workers
    workers = _workers = Workers(gateway, tmp_path_factory.mktemp("workers"))
    workers.start()
    yield gateway, workers
    workers.stop()
    factory.stop_all()


@pytest.fixture
def env(bg, sim):
    gateway, workers = bg
    if workers.process is None or workers.process.poll() is not None:
        workers.start()
    for name in ("accounts", "api_keys", "config"):
        bump(name)
    e = Env(gateway, sim)
    e.workers = workers  # type: ignore[attr-defined]
    wait_until(lambda: httpx.get(e.base + "/v1/models", headers={"Authorization": f"Bearer {e.key}"}, timeout=10)
               .json()["data"] == [], what="the server to forget earlier tests' accounts")
    return e


_workers: Workers | None = None  # the module's, for failure messages


def _poll(client: openai.OpenAI, rid: str, *, until=("completed", "failed", "incomplete", "cancelled"),
          timeout: float = 60.0) -> Response:
    seen: list[str] = []
    try:
        wait_until(lambda: (r := client.responses.retrieve(rid)).status in until or seen.append(r.status),
                   timeout=timeout, interval=0.1, what=f"{rid} to reach {until}")
        return client.responses.retrieve(rid)
    except AssertionError as exc:
        log = _workers.log()[-6000:] if _workers else ""
        raise AssertionError(f"{exc}; last status {seen[-1:]}; worker log:\n{log}") from None


def _events(stream) -> list:
    return [EVENT.validate_python(e.model_dump(exclude_unset=True)) for e in stream]


def _text(events) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_background_create_poll_and_stream_from_any_point(env):
    env.account("basic", "bgpoll")
    env.ready(FAST)
    client = env.openai()
    created = client.responses.create(model=FAST, input="Tell me about lighthouses #sim:len=12", background=True,
                                      metadata={"k": "v"})
    assert created.status == "queued" and created.background is True and created.output == []
    assert created.metadata == {"k": "v"} and created.store is True
    done = _poll(client, created.id)
    assert done.status == "completed" and done.background is True and done.output_text
    raw = env.http().get(f"/v1/responses/{done.id}", headers={"Authorization": f"Bearer {env.key}"}).json()
    Response.model_validate(raw, strict=True)
    assert set(Response.model_fields) <= set(raw)

    everything = _events(client.responses.retrieve(done.id, stream=True))
    seqs = [e.sequence_number for e in everything]
    assert seqs == list(range(len(seqs)))
    assert everything[0].type == "response.created" and everything[0].response.id == done.id
    assert everything[-1].type == "response.completed"
    assert everything[-1].response.model_dump() == done.model_dump()
    assert _text(everything) == done.output_text

    n = 3
    rest = _events(client.responses.retrieve(done.id, stream=True, starting_after=n))
    assert [e.sequence_number for e in rest] == seqs[n + 1:]
    assert _text(everything[:n + 1]) + _text(rest) == done.output_text

    assert _events(client.responses.retrieve(done.id, stream=True, starting_after=seqs[-1])) == []
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.retrieve(done.id, stream=True, starting_after=-5)
    assert bad.value.body["param"] == "starting_after"
    with pytest.raises(openai.BadRequestError) as unstreamed:
        client.responses.retrieve(done.id, starting_after=2)
    assert unstreamed.value.body["param"] == "starting_after"


def test_a_live_stream_resumes_where_the_client_left(env):
    env.account("basic", "bglive", "tokms=40")
    env.ready(FAST)
    client = env.openai()
    stream = client.responses.create(model=FAST, input="Rivers and deltas #sim:len=40", background=True, stream=True)
    first = []
    for event in stream:
        first.append(EVENT.validate_python(event.model_dump(exclude_unset=True)))
        if len(first) == 6:
            break
    stream.close()  # the client goes away mid-answer: the job goes on
    rid = first[0].response.id
    assert first[0].type == "response.created" and first[0].response.status in ("queued", "in_progress")
    assert client.responses.retrieve(rid).status == "in_progress"
    rest = _events(client.responses.retrieve(rid, stream=True, starting_after=first[-1].sequence_number))
    assert rest[0].sequence_number == first[-1].sequence_number + 1 and rest[-1].type == "response.completed"
    final = client.responses.retrieve(rid)
    assert final.status == "completed" and _text(first) + _text(rest) == final.output_text


def test_cancel_stops_the_upstream_and_is_idempotent(env):
    token = env.account("basic", "bgcancel", "tokms=100")
    env.ready(FAST)
    client = env.openai()
    created = client.responses.create(model=FAST, input="A very long story #sim:len=400", background=True)
    wait_until(lambda: StoredResponseEvent.objects.filter(response_id=created.id, type="response.output_text.delta")
               .count() >= 3, timeout=30, what="the job to stream")
    assert env.open_streams() == 1
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled" and cancelled.id == created.id
    wait_until(lambda: env.open_streams() == 0, timeout=10, what="the upstream stream to be closed")
    written = StoredResponseEvent.objects.filter(response_id=created.id).count()
    assert client.responses.retrieve(created.id).status == "cancelled"
    assert client.responses.cancel(created.id).status == "cancelled"  # cancelling again answers it again
    # the stream of a cancelled response is what was written before, then the end
    replay = _events(client.responses.retrieve(created.id, stream=True))
    assert len(replay) == written and replay[-1].type != "response.completed"
    assert StoredResponseEvent.objects.filter(response_id=created.id).count() == written
    assert len(env.chat_requests(token)) == 1

    # the account's slot was given back: the next job on the same (only) account runs
    again = client.responses.create(model=FAST, input="short #sim:len=3", background=True)
    assert _poll(client, again.id).status == "completed"
    with pytest.raises(openai.BadRequestError) as finished:
        client.responses.cancel(again.id)
    assert "completed" in finished.value.body["message"]
    fg = client.responses.create(model=FAST, input="hi")
    with pytest.raises(openai.BadRequestError) as foreground:
        client.responses.cancel(fg.id)
    assert "background" in foreground.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_doesnotexist")


def test_background_refusals(env):
    env.account("basic", "bgref")
    env.ready(FAST)
    client = env.openai()
    with pytest.raises(openai.BadRequestError) as no_store:
        client.responses.create(model=FAST, input="hi", background=True, store=False)
    assert no_store.value.body["param"] == "store"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="hi", background=True)
    with pytest.raises(openai.BadRequestError) as chain:
        client.responses.create(model=FAST, input="hi", background=True, previous_response_id="resp_nope")
    assert chain.value.body["code"] == "previous_response_not_found"
    fg = client.responses.create(model=FAST, input="hi")
    with pytest.raises(openai.BadRequestError) as stream:
        client.responses.retrieve(fg.id, stream=True)
    assert stream.value.body["param"] == "stream"
    assert not StoredResponse.objects.filter(background=True).exists()


def test_a_background_response_chains_like_any_other(env):
    env.account("basic", "bgchain")
    env.ready(FAST)
    client = env.openai()
    first = client.responses.create(model=FAST, input="Remember the word #sim:say=tangerine", background=True)
    assert _poll(client, first.id).output_text == "tangerine"
    second = client.responses.create(model=FAST, input="What was the word?", background=True,
                                     previous_response_id=first.id)
    assert _poll(client, second.id).status == "completed"
    prompt = env.chat_requests()[-1]["body"]["message"]
    assert "Remember the word" in prompt and "tangerine" in prompt and "What was the word?" in prompt


def test_a_worker_killed_mid_job_loses_nothing(env):
    workers = env.workers
    env.account("basic", "bgkill", "tokms=60")
    env.ready(FAST)
    client = env.openai()
    created = client.responses.create(model=FAST, input="Mountains #sim:len=80", background=True)
    wait_until(lambda: StoredResponseEvent.objects.filter(response_id=created.id, type="response.output_text.delta")
               .count() >= 5, timeout=30, what="the job to stream")
    reader = client.responses.retrieve(created.id, stream=True)  # a client following the job
    seen = [next(iter(reader)) for _ in range(3)]
    workers.kill()
    before = StoredResponseEvent.objects.filter(response_id=created.id).count()
    assert StoredResponse.objects.get(id=created.id).status == "in_progress"

    # while no worker runs: a new job waits queued; cancelled, no worker will ever run it
    waiting = client.responses.create(model=FAST, input="never run", background=True)
    time.sleep(0.5)
    assert client.responses.retrieve(waiting.id).status == "queued"
    assert client.responses.cancel(waiting.id).status == "cancelled"

    workers.start()  # at start it re-queues the dead worker's job (same host, process gone)
    final = _poll(client, created.id, timeout=90)
    assert final.status == "completed", workers.log()[-4000:]
    row = StoredResponse.objects.get(id=created.id)
    assert row.attempts == 2
    events = [EVENT.validate_json(d) for d in StoredResponseEvent.objects.filter(response_id=created.id)
              .order_by("sequence_number").values_list("data", flat=True)]
    seqs = [e.sequence_number for e in events]
    assert seqs == list(range(len(seqs))) and len(seqs) > before  # numbers continue, never reused
    starts = [i for i, e in enumerate(events) if e.type == "response.created"]
    assert len(starts) == 2 and starts[1] >= before  # the re-run opens with its own response.created
    assert _text(events[starts[1]:]) == final.output_text
    # the client that followed the job across the restart reads on to the end
    tail = seen + [EVENT.validate_python(e.model_dump(exclude_unset=True)) for e in reader]
    assert [e.sequence_number for e in tail] == seqs and tail[-1].type == "response.completed"
    assert client.responses.retrieve(waiting.id).status == "cancelled"
    assert not StoredResponseEvent.objects.filter(response_id=waiting.id).exists()


def test_a_job_running_past_the_timeout_fails(env):
    env.set_config({"responses.background_timeout_sec": 1})
    env.account("basic", "bgslow", "tokms=100")
    env.ready(FAST)
    client = env.openai()
    created = client.responses.create(model=FAST, input="Endless #sim:len=300", background=True)
    failed = _poll(client, created.id, timeout=30)
    assert failed.status == "failed" and "background_timeout_sec" in failed.error.message
    wait_until(lambda: env.open_streams() == 0, timeout=10, what="the upstream stream to be closed")
    events = _events(client.responses.retrieve(created.id, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events][-2:] == ["response.failed", "error"]
    assert sum(e.type == "response.created" for e in events) == 1


def test_an_upstream_refusal_ends_the_response_failed(env):
    env.account("basic", "bgrl", "rl")
    env.ready(FAST)
    client = env.openai()
    created = client.responses.create(model=FAST, input="hi", background=True)
    failed = _poll(client, created.id)
    assert failed.status == "failed" and failed.error.code == "rate_limit_exceeded" and failed.output == []
    events = _events(client.responses.retrieve(created.id, stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "response.failed", "error"]
    assert events[2].response.model_dump() == failed.model_dump()
