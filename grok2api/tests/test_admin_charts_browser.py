"""The admin's charts as an operator sees them (issue 20): real headless Chromium at 1400×900 against
`manage.py serve` on a real socket, on the index and on the key and account change pages.

A chart counts as drawn when Chart.js holds it on its canvas with the datasets of the JSON the page
embeds (json_script) and the canvas has painted pixels; the Content-Security-Policy (no
'unsafe-inline') must not have refused anything. Screenshots go to the test's tmp dir and to
test-output/admin/ (look at them: they are the layout check).
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from grok2api.tests.test_admin_browser import OUT, PASSWORD, VIEWPORT, browser, module_gateway  # noqa: F401 (fixtures)

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

MODELS = ("grok-4.20-fast", "grok-4.20-auto")


def _seed() -> dict:
    """A superuser; a key with limits and budgets and one without; accounts of every pool with some
    windows used up; a day of usage on them, rolled up."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from accounts.models import Account
    from gateway.ledger import usage_rollup
    from gateway.models import ApiKey, UsageRecord
    from core.crypto import hash_api_key

    get_user_model().objects.create_superuser("operator", password=PASSWORD)
    now = timezone.now()
    epoch = now.timestamp()
    keys = [
        ApiKey.objects.create(label="team-alpha", key_hash=hash_api_key("sk-chart-alpha"), prefix="sk-g2a-alph",
                              requests_per_minute=60, tokens_per_minute=20_000, max_concurrent_requests=4,
                              daily_token_budget=400_000, monthly_token_budget=3_000_000),
        ApiKey.objects.create(label="batch-jobs", key_hash=hash_api_key("sk-chart-batch"), prefix="sk-g2a-batc",
                              daily_token_budget=150_000),
        ApiKey.objects.create(label="ci-smoke", key_hash=hash_api_key("sk-chart-ci"), prefix="sk-g2a-ci00",
                              monthly_token_budget=900_000),
    ]
    accounts = []
    for i, pool in enumerate(("super", "super", "heavy", "basic")):
        quotas = {"fast": {"remaining": 140 - 40 * i, "total": 140, "window_seconds": 7200, "reset_at": None,
                           "source": 1, "stale": False, "synced_at": epoch}}
        if pool != "basic":
            quotas["auto"] = {"remaining": 0 if i < 2 else 90, "total": 50 if pool == "super" else 150,
                              "window_seconds": 7200, "reset_at": epoch + 1500 * (i + 1), "source": 1,
                              "stale": False, "synced_at": epoch}
            quotas["expert"] = {"remaining": 12 + i, "total": 50 if pool == "super" else 150, "window_seconds": 7200,
                                "reset_at": None, "source": 1, "stale": False, "synced_at": epoch}
        account = Account(pool=pool, status="active", quotas=quotas)
        account.set_token(f"sim-{pool}-charts{i}-abcdefghijklmnop")
        account.save()
        accounts.append(account)
    rows = []
    for hour in range(24):
        at = now - timedelta(hours=hour, minutes=1)
        for j, key in enumerate(keys):
            for n in range(1 + (hour * (j + 2)) % 5):
                rows.append(UsageRecord(
                    created_at=at, api_key=key, api_key_label=key.label, endpoint="/v1/chat/completions",
                    model=MODELS[(hour + n + j) % 2], mode="fast", account=accounts[(hour + n) % 3], stream=True,
                    prompt_tokens=900 + 37 * n, completion_tokens=1400 + 11 * hour, duration_ms=900,
                    status="error" if (hour + n + j) % 7 == 0 else "ok"))
    UsageRecord.objects.bulk_create(rows)
    usage_rollup(now=now)
    return {"key": keys[0], "account": accounts[0]}


@pytest.fixture
def seeded(transactional_db):
    return _seed()


@pytest.fixture
def page(browser, module_gateway, seeded, request, tmp_path):  # noqa: F811
    context = browser.new_context(base_url=module_gateway.url, viewport=VIEWPORT)
    page = context.new_page()
    page.csp_errors = []
    # every console error (a CSP refusal, a chart that failed) except the favicon the admin does not have
    page.on("console", lambda m: m.type == "error" and "favicon" not in m.location.get("url", "")
            and page.csp_errors.append(f"{m.text} at {m.location}"))
    page.on("pageerror", lambda e: page.csp_errors.append(str(e)))
    page.goto("/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_be_visible()
    yield page
    OUT.mkdir(parents=True, exist_ok=True)
    for target in (tmp_path / "screenshot.png", OUT / f"{request.node.name}.png"):
        page.screenshot(path=str(target))
    context.close()


def _drawn(page, canvas_ids: list[str]) -> dict:
    """Per canvas: what Chart.js holds on it and how many of its pixels are painted."""
    return page.evaluate("""(ids) => Object.fromEntries(ids.map((id) => {
        const canvas = document.getElementById(id);
        if (!canvas) return [id, null];
        const chart = Chart.getChart(canvas);
        const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i] > 0) painted++;
        return [id, {labels: chart ? chart.data.labels : null,
                     datasets: chart ? chart.data.datasets.map((d) => ({label: d.label, data: d.data})) : null,
                     width: canvas.clientWidth, height: canvas.clientHeight, painted}];
    }))""", canvas_ids)


def _embedded(page, script_id: str) -> dict:
    specs = json.loads(page.locator(f"script#{script_id}").text_content())
    return {s["canvas"]: s for s in specs}


def _assert_drawn(page, script_id: str, expected: list[str]) -> dict:
    specs = _embedded(page, script_id)
    assert sorted(specs) == sorted(expected)
    drawn = _drawn(page, expected)
    for canvas, spec in specs.items():
        got = drawn[canvas]
        assert got is not None and got["datasets"] is not None, canvas
        assert got["labels"] == spec["labels"], canvas
        assert [d["data"] for d in got["datasets"]] == [d["data"] for d in spec["datasets"]], canvas
        assert any(v for d in got["datasets"] for v in d["data"]), canvas  # data, not an empty frame
        assert got["width"] > 200 and got["height"] >= 100 and got["painted"] > 500, (canvas, got)
    assert not page.csp_errors, page.csp_errors
    return drawn


def test_the_key_page_charts_its_limits_and_its_last_24_hours(page, seeded):
    response = page.goto(f"/admin/gateway/apikey/{seeded['key'].pk}/change/")
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy or "default-src 'self'" in policy, policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, policy  # the charts run under it
    expect(page.locator("#key-charts")).to_be_visible()
    drawn = _assert_drawn(page, "g2a-charts-key",
                          ["key-limits", "key-usage-requests", "key-usage-tokens", "key-usage-errors"])
    assert drawn["key-limits"]["labels"] == ["requests, last minute", "tokens, last minute", "tokens today (UTC)",
                                             "tokens this month (UTC)"]
    assert sorted(d["label"] for d in drawn["key-usage-requests"]["datasets"]) == sorted(MODELS)
    expect(page.locator("#key-charts table")).to_contain_text("at most 4 at once")
    box = page.locator("#key-charts").bounding_box()
    assert box["y"] + box["height"] <= VIEWPORT["height"] + 40, box  # the charts are the first screen


def test_the_account_page_charts_its_quota_with_the_next_reset_and_its_traffic(page, seeded):
    page.goto(f"/admin/accounts/account/{seeded['account'].pk}/change/")
    drawn = _assert_drawn(page, "g2a-charts-account", ["account-quota", "account-usage-requests", "account-usage-errors"])
    assert drawn["account-quota"]["labels"] == ["auto", "expert", "fast", "4.3"]
    assert [d["label"] for d in drawn["account-quota"]["datasets"]] == ["remaining", "used"]
    expect(page.locator("#account-charts table")).to_contain_text(" UTC (in ")  # auto is used up: its reset


def test_the_index_shows_pool_capacity_top_keys_and_usage(page, request, tmp_path):
    page.goto("/admin/")
    drawn = _assert_drawn(page, "g2a-charts-capacity", ["pool-capacity-chart"])
    assert drawn["pool-capacity-chart"]["labels"][0] == "basic · fast"
    expect(page.locator("#pool-capacity table")).to_contain_text("super · auto")
    _assert_drawn(page, "g2a-charts-budgets", ["top-keys-budgets"])
    usage = _drawn(page, ["usage-chart-requests", "usage-chart-tokens", "usage-chart-errors"])
    assert all(u and u["painted"] > 500 and u["datasets"] for u in usage.values()), usage
    # the fixture saves the first screen (pool health and capacity); this one the lower charts
    page.locator("#key-budgets").scroll_into_view_if_needed()
    page.evaluate("() => window.scrollBy(0, 200)")
    OUT.mkdir(parents=True, exist_ok=True)
    for target in (tmp_path / "screenshot-lower.png", OUT / f"{request.node.name}-lower.png"):
        page.screenshot(path=str(target))
