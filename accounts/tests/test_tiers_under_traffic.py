"""A scripted day on the simulator's virtual clock: tiers stay right under traffic.

Basic, super and heavy accounts are imported with `import_accounts --pool auto`; then six rounds
("four hours" each) of mixed requests over every model family go through a live `serve` process
with the official openai SDK. Every success queues an after-use probe of the mode it used
(`account.refresh.after_use_min_interval_sec = 0`, run inside the server: CELERY_TASK_ALWAYS_EAGER),
modes are exhausted into upstream 429s (which queue the on-demand refresh of every account), the
virtual clock is advanced so upstream windows reset, and the scheduled per-pool refresh runs
between rounds. At the end every account is still in its true tier, `/v1/models` never changed and
no tier change was recorded after the import.

Observed before the fix: an after-use probe of `expert` (or `fast`) saw no `auto` window, counted
that as a vote for basic and moved super and heavy accounts to basic; their models left
`/v1/models` and clients got 429 "no active account in pools super, heavy" while quota was left.
"""
from __future__ import annotations

import io
import random
import time

import httpx
import openai
import pytest
from django.core.management import call_command

from accounts import tasks
from accounts.models import Account, TierChange
from grokweb.registry import MODELS
from core.crypto import fingerprint
from media.tests.e2e import tiny_png

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY = "sk-test-tiers-day"
# The README's demo accounts ("Try it without an account") plus one more account per tier.
TRUE_TIERS = {
    "sim-super-demo1": "super", "sim-basic-demo2": "basic", "sim-heavy-demo3": "heavy",
    "sim-basic-day1": "basic", "sim-super-day1": "super", "sim-heavy-day1": "heavy",
}
CHAT_MODELS = [m.id for m in MODELS if m.capability == "chat"]
ROUNDS = 6
HOURS_PER_ROUND = 4


def _wait_until(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def day(sim, gateway_factory, monkeypatch, set_config, tmp_path):
    """The simulator (frozen virtual clock) and a live gateway on it; this process points at it too."""
    for name, value in sim.upstream_env().items():
        monkeypatch.setenv(name, value)
    set_config()
    gateway = gateway_factory({
        **sim.upstream_env(),
        "GROK_APP_API_KEY": API_KEY,
        "CELERY_TASK_ALWAYS_EAGER": "true",  # after-use and on-demand probes run inside the server
        "GROK_ACCOUNT_REFRESH_AFTER_USE_MIN_INTERVAL_SEC": "0",  # probe after every success
    })
    return sim, gateway


def _models(gateway) -> list[str]:
    r = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    assert r.status_code == 200, r.text
    return sorted(m["id"] for m in r.json()["data"])


def _probes(sim) -> int:
    return len(sim.sim.requests(endpoint="rate-limits"))


def _quiet(sim) -> None:
    """Wait until the server's background probes stopped (no new rate-limits call for half a second)."""
    last = [-1, time.monotonic()]

    def settled():
        n = _probes(sim)
        if n != last[0]:
            last[:] = [n, time.monotonic()]
            return False
        return time.monotonic() - last[1] > 0.5

    _wait_until(settled, timeout=30, what="background quota probes to finish")


def _request(client: openai.OpenAI, kind: str, model: str, rng: random.Random, image_path) -> None:
    if kind == "chat":
        messages = [{"role": "user", "content": f"Say something about {rng.randint(0, 10**6)}"}]
        if rng.random() < 0.5:
            for _ in client.chat.completions.create(model=model, messages=messages, stream=True):
                pass
        else:
            assert client.chat.completions.create(model=model, messages=messages).choices[0].message.content
    elif kind == "image":
        assert client.images.generate(model=model, prompt="a lighthouse", n=1, response_format="b64_json").data
    else:
        with open(image_path, "rb") as fh:
            assert client.images.edit(model=model, image=fh, prompt="make @IMAGE1 green", n=1, response_format="b64_json").data


def _round_plan(rng: random.Random) -> list[tuple[str, str]]:
    plan = [("chat", m) for m in CHAT_MODELS for _ in range(2)]
    plan += [("image", "grok-imagine-image-lite"), ("image", "grok-imagine-image"), ("image", "grok-imagine-image-pro"),
             ("edit", "grok-imagine-image-edit")]
    rng.shuffle(plan)
    # Paid modes first: the first after-use probes of super and heavy accounts see expert / fast / 4.3
    # windows, the ones that carry no auto window.
    first = [("chat", "grok-4.20-expert"), ("chat", "grok-4.20-0309-non-reasoning-super"), ("chat", "grok-4.3-beta"),
             ("chat", "grok-4.20-0309-reasoning-heavy"), ("chat", "grok-4.20-0309-non-reasoning-heavy")]
    return first + plan


def test_tiers_stay_right_through_a_day_of_mixed_traffic_429s_and_window_resets(day, tmp_path):
    sim, gateway = day
    demo = io.StringIO()
    call_command("grok_simulator", "--print-tokens", stdout=demo)
    assert demo.getvalue().split() == list(TRUE_TIERS)[:3]
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(TRUE_TIERS) + "\n")
    out = io.StringIO()
    call_command("import_accounts", str(tokens), "--pool", "auto", stdout=out)
    ids = {token: Account.objects.get(token_fingerprint=fingerprint(token)).id for token in TRUE_TIERS}
    assert {token: Account.objects.get(id=ids[token]).pool for token in TRUE_TIERS} == TRUE_TIERS, out.getvalue()

    baseline = _wait_until(lambda: (m := _models(gateway)) and len(m) == len(MODELS) and m, timeout=20,
                           what="the server to list every model")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
    rng = random.Random(15)
    image_path = tmp_path / "input.png"
    image_path.write_bytes(tiny_png(16, 16))
    served = limited = traffic_probes = 0
    wrong_429s: list[str] = []
    seen_models: list[list[str]] = []
    for round_ in range(ROUNDS):
        if round_ == 1:  # one super account's expert window runs out after three more uses
            sim.sim.set_quota("sim-super-day1", "expert", remaining=3)
        if round_ == 2:  # heavy mode exhausted on both heavy accounts
            for token in ("sim-heavy-day1", "sim-heavy-demo3"):
                sim.sim.set_quota(token, "heavy", remaining=0)
        if round_ == 3:  # one basic account's fast window is spent
            sim.sim.set_quota("sim-basic-day1", "fast", remaining=0)
        probes_before = _probes(sim)
        for kind, model in _round_plan(rng):
            try:
                _request(client, kind, model, rng, image_path)
                served += 1
            except openai.RateLimitError as exc:
                limited += 1
                if "no active account" in str(exc):
                    wrong_429s.append(f"round {round_} {model}: {exc}")
        seen_models.append(_models(gateway))
        _quiet(sim)
        traffic_probes += _probes(sim) - probes_before  # after-use probes, plus on-demand refreshes after 429s
        sim.sim.advance(HOURS_PER_ROUND * 3600)  # upstream windows reset on the virtual clock
        for pool in ("basic", "super", "heavy"):
            tasks.quota_refresh(pool=pool)  # what the beat schedule runs

    _quiet(sim)
    assert served > 200 and limited > 0, (served, limited)
    assert wrong_429s == []
    assert all(models == baseline for models in seen_models), [sorted(set(baseline) - set(m)) for m in seen_models]
    assert _models(gateway) == baseline
    pools = {token: Account.objects.get(id=ids[token]).pool for token in TRUE_TIERS}
    assert pools == TRUE_TIERS
    assert traffic_probes >= served, "an after-use probe did not run after every success"
    assert not TierChange.objects.exclude(old="").exists(), list(TierChange.objects.values_list("old", "new", "reason"))
    assert TierChange.objects.filter(old="").count() == len(TRUE_TIERS)
