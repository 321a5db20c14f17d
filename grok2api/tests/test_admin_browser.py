"""The admin as an operator sees it: real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) at 1400×900 against `manage.py serve` on a real socket.

Layout is asserted from the rendered page (header cell heights, table widths against the space the
page gives them), and each test saves a screenshot under its tmp dir (and test-output/admin/).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = Path("/usr/bin/chromium")
OUT = Path(__file__).resolve().parents[2] / "test-output" / "admin"
VIEWPORT = {"width": 1400, "height": 900}
PASSWORD = "admin-browser-pw-1"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    # Playwright's sync API registers an event loop on this thread; Django's async-safety guard
    # would then refuse this process's own database calls (see webui/tests/test_browser.py).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with playwright_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
            yield b
            b.close()


@pytest.fixture(scope="module")
def module_gateway(browser, django_db_setup, tmp_path_factory):
    from grok2api.testing.fixtures import GatewayFactory

    factory = GatewayFactory(tmp_path_factory.mktemp("admin-gateway"))
    try:
        yield factory(env={"DJANGO_ALLOW_ASYNC_UNSAFE": ""})
    finally:
        factory.stop_all()


def _seed() -> None:
    """A superuser, accounts with a used-up window and long tags, and usage rows, all committed."""
    from django.contrib.auth import get_user_model

    from accounts.models import Account
    from gateway.models import UsageRecord

    get_user_model().objects.create_superuser("operator", password=PASSWORD)
    now = time.time()
    for i, (pool, status) in enumerate([("super", "active"), ("basic", "cooling"), ("heavy", "expired")]):
        account = Account(pool=pool, status=status, tags=["team-alpha", "batch-2026-11"], note="seeded")
        account.set_token(f"sim-{pool}-layout{i}-abcdefghijklmnop")
        account.quotas = {
            "auto": {"remaining": 0, "total": 50, "window_seconds": 7200, "reset_at": now + 3600, "source": 1,
                     "stale": False, "synced_at": now},
            "expert": {"remaining": 12, "total": 50, "window_seconds": 7200, "reset_at": None, "source": 2,
                       "stale": True, "synced_at": now},
            "fast": {"remaining": 140, "total": 140, "window_seconds": 7200, "reset_at": None, "source": 1,
                     "stale": False, "synced_at": now},
            "grok-420-computer-use-sa": {"remaining": 20, "total": 20, "window_seconds": 7200, "reset_at": None,
                                         "source": 1, "stale": False, "synced_at": now},
        }
        account.save()
        for _ in range(3):
            UsageRecord.objects.create(
                api_key_label="default key for the team", endpoint="/v1/chat/completions",
                model="grok-4.20-0309-non-reasoning", mode="auto", account=account, stream=True, prompt_tokens=1234,
                completion_tokens=4567, reasoning_tokens=89, duration_ms=12345, ttft_ms=456, status="error",
                error_code="upstream_rate_limited", attempts=2)


@pytest.fixture
def page(browser, module_gateway, transactional_db, request, tmp_path):
    _seed()
    context = browser.new_context(base_url=module_gateway.url, viewport=VIEWPORT)
    page = context.new_page()
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


def _fits(page) -> dict:
    """The result table's width against the box the page gives it, and the page against the window."""
    return page.evaluate("""() => {
        const table = document.querySelector('#result_list');
        const box = table.closest('.results');
        return {table: table.scrollWidth, box: box.clientWidth, page: document.documentElement.scrollWidth,
                window: window.innerWidth};
    }""")


def test_the_pool_health_headers_read_on_one_line(page):
    page.goto("/admin/")
    headers = page.locator("#pool-health thead th")
    expect(headers).to_have_count(6)  # pool, four statuses, total
    heights = headers.evaluate_all("ths => ths.map(th => th.getBoundingClientRect().height)")
    body_row = page.locator("#pool-health tbody tr").first.evaluate("tr => tr.getBoundingClientRect().height")
    assert max(heights) <= body_row, heights  # one line each (they were 115 px: a letter a line)
    assert headers.nth(1).inner_text().lower() == "active"


def test_the_accounts_list_fits_the_window_and_shows_reset_times(page):
    page.goto("/admin/accounts/account/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    size = _fits(page)
    assert size["table"] <= size["box"] and size["page"] <= size["window"], size
    quota = page.locator("#result_list tbody tr").first.locator("td.field-quota_text")
    expect(quota).to_contain_text("auto 0/50 · resets ")
    expect(quota).to_contain_text(" UTC")
    expect(quota).to_contain_text("expert 12/50*")
    header = page.locator("#result_list thead th.column-quota_text").inner_text().lower()
    assert "reset" not in header  # no promise of a reset time for windows that have quota left


def test_the_usage_list_fits_the_window(page):
    page.goto("/admin/gateway/usagerecord/")
    expect(page.locator("#result_list tbody tr")).to_have_count(9)
    size = _fits(page)
    assert size["table"] <= size["box"] and size["page"] <= size["window"], size
    row = page.locator("#result_list tbody tr").first
    expect(row.locator("td.field-tokens")).to_have_text("1234 → 4567")
    expect(row.locator("td.field-result")).to_contain_text("upstream_rate_limited")


def test_view_site_leads_to_the_web_chat_only_when_the_pages_are_on(page, module_gateway):
    from core.config import config_save
    from core.models import VersionStamp

    page.goto("/admin/")
    expect(page.locator("#user-tools")).not_to_contain_text("View site")  # was a link to a 404
    config_save(values={"app.webui_enabled": True})
    VersionStamp.objects.filter(name="config").update(version=time.time_ns() // 1000)  # past any earlier test's

    deadline = time.monotonic() + 20
    while "View site" not in page.locator("#user-tools").inner_text() and time.monotonic() < deadline:
        page.reload()  # the gateway's snapshot poller picks the edit up within 0.2 s
    link = page.get_by_role("link", name="View site")
    expect(link).to_have_attribute("href", "/webui/chat")
    link.click()
    expect(page).to_have_url(module_gateway.url + "/webui/chat")
    assert page.title() != "" and "Not Found" not in page.content()
