"""The web pages in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright; no
browser download) against `manage.py serve` and the simulator, both on real sockets.

One gateway serves the whole module (starting `serve` costs seconds) on the pytest test database.
The tests are transactional (the gateway must see committed rows; SQLite runs IMMEDIATE
transactions, so a test-long transaction would lock the gateway out), so the database is flushed
after each test: every test seeds ACCOUNTS again and moves the "accounts" version stamp to a new
value, and waits until the gateway lists models of every pool.

Every test leaves a full-page screenshot in test-output/webui/<test>.png (gitignored).
Waits are upper bounds on events (Playwright's `expect` polling), never timed assertions.
"""
from __future__ import annotations

import itertools
import re
import struct
import time
import zlib
from pathlib import Path

import httpx
import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
expect.set_options(timeout=20_000)  # upper bound for one page event (the simulator runs at pace 0)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # the voice page asks for a microphone: a fake device, no permission prompt
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]
OUT = Path(__file__).resolve().parents[2] / "test-output" / "webui"
KEY = "webui-test-key"
API_KEY = "sk-not-for-pages"  # /v1 key of the gateway: must never appear in a page
CHAT_PATH = "/rest/app-chat/conversations/new"
SUPER = "sim-super-web1"
SLOW_HEAVY = "sim-heavy-slow~tokms=80"  # only heavy-pool models reach it (super is tried first otherwise)
ACCOUNTS = [(SUPER, "super"), ("sim-basic-web1", "basic"), (SLOW_HEAVY, "heavy")]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    # Playwright's sync API keeps an event loop registered on this thread, so Django's async-safety
    # guard would refuse this process's own database calls (fixtures, flush). Allowed in THIS
    # process only: the gateway under test gets the variable blanked (see `_gateway_env`).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with playwright_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield b
            b.close()


_stamp_versions = itertools.count(1_000_000)


def _seed_accounts() -> None:
    """The module's accounts, committed; the stamp moves to a value the gateway has never seen
    (a flush reset the table, so an ordinary bump could land on the version it already has)."""
    from django.db import transaction

    from accounts.models import Account
    from core.models import VersionStamp

    with transaction.atomic():
        for token, pool in ACCOUNTS:
            account = Account(pool=pool)
            account.set_token(token)
            account.save()
        VersionStamp.objects.update_or_create(name="accounts", defaults={"version": next(_stamp_versions)})


def _gateway_env(sim) -> dict[str, str]:
    # Images in chat answers come inline as data: URIs: the pages load images from their own origin
    # and data:/blob: URLs only (Content-Security-Policy img-src), never from the upstream's host.
    return {"GROK_APP_WEBUI_ENABLED": "true", "GROK_APP_WEBUI_KEY": KEY, "GROK_APP_API_KEY": API_KEY,
            "GROK_FEATURES_IMAGE_FORMAT": "base64", "DJANGO_ALLOW_ASYNC_UNSAFE": "", **sim.upstream_env()}


@pytest.fixture(scope="module")
def module_gateway(browser, django_db_setup, simulator_server, tmp_path_factory):
    from grok2api.testing.fixtures import GatewayFactory

    factory = GatewayFactory(tmp_path_factory.mktemp("webui-gateway"))
    try:
        yield factory
    finally:
        factory.stop_all()


def _gateway_models(gateway) -> set[str] | None:
    try:
        resp = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    except httpx.HTTPError:
        return None
    return {m["id"] for m in resp.json().get("data", [])} if resp.status_code == 200 else None


EVERY_POOL = {"grok-4.20-0309-non-reasoning", "grok-4.20-0309-super", "grok-4.20-0309-heavy"}


@pytest.fixture
def gateway(module_gateway, transactional_db, sim, request):
    """The module's gateway (started on first use, restarted if a test stopped it) serving this
    test's freshly seeded accounts; the simulator is reset per test."""
    current = module_gateway.started[-1] if module_gateway.started else None
    if current is not None and current.process.poll() is None:
        # the previous test's flush emptied the tables: wait until the gateway has dropped its
        # accounts, so no lease can land on a row of the previous test
        wait_for(lambda: _gateway_models(current) == set(), "the gateway to see the flushed database")
    _seed_accounts()
    if current is None or current.process.poll() is not None:
        current = module_gateway(_gateway_env(sim))
    request.node.__dict__.setdefault("_gateway_factories", []).append(module_gateway)  # its log on failure
    wait_for(lambda: EVERY_POOL <= (_gateway_models(current) or set()), "the gateway to load the accounts")
    return current


def wait_for(predicate, what: str, limit: float = 20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def page(browser, gateway, request):
    context = browser.new_context(base_url=gateway.url, permissions=["microphone"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    page.csp_violations = watch_csp(context)
    yield page
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(OUT / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()
    # every page of every test runs under the Content-Security-Policy without breaking it
    assert page.csp_violations == []


# Runs in every document before the page's own scripts; the binding is CDP's, so the policy does not
# apply to it. Reports what the browser refused and why.
_CSP_WATCH = """window.__cspSeen = 0;
document.addEventListener("securitypolicyviolation", (e) => { window.__cspViolation({
  page: location.pathname, directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample});
  window.__cspSeen += 1; });"""


def watch_csp(context) -> list[dict]:
    """Collect every `securitypolicyviolation` event of the context's pages."""
    seen: list[dict] = []
    context.expose_binding("__cspViolation", lambda source, v: seen.append(v))
    context.add_init_script(_CSP_WATCH)
    return seen


def sign_in(page, path="/webui/chat"):
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/webui/login\?next="))
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))
    page.wait_for_load_state("load")  # the page scripts ran (handlers attached)
    if path == "/webui/chat":
        expect(page.locator("#model")).to_have_value(re.compile(r"^grok-"))  # models loaded


def png_bytes(size: int = 64) -> bytes:
    """A real RGB PNG (the upstream refuses 1x1 references)."""
    raw = b"".join(b"\x00" + b"".join(bytes((x * 4 % 256, y * 4 % 256, 128)) for x in range(size)) for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# ------------------------------------------------------------------ login


def test_login_asks_for_the_key_and_an_expired_session_is_sent_back_to_it(page):
    page.goto("/webui/chat")
    expect(page).to_have_url(re.compile(r"/webui/login\?next=%2Fwebui%2Fchat$"))
    page.fill("#key", "not-the-key")
    page.press("#key", "Enter")
    expect(page.locator("#login-error")).to_have_text(re.compile("That key is not correct"))
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/webui/chat$"))
    expect(page.locator("#model")).to_have_value(re.compile(r"^grok-"))
    assert API_KEY not in page.content()

    # readable in dark mode: the palette follows prefers-color-scheme
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    fg = page.evaluate("getComputedStyle(document.body).color")
    assert light != dark
    assert sum(map(int, re.findall(r"\d+", dark)[:3])) < 150 < sum(map(int, re.findall(r"\d+", fg)[:3]))

    # the session ends server-side (the CSRF cookie stays): the page says so in place
    page.context.clear_cookies(name="sessionid")
    page.fill("#prompt", "hello?")
    page.press("#prompt", "Enter")
    answer = page.locator("article.msg.assistant").last
    expect(answer.locator(".msg-error")).to_contain_text("session has expired")
    expect(page.locator("#session-banner")).to_be_visible()
    page.click("#session-banner a")
    expect(page.locator("#login-expired")).to_be_visible()
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/webui/chat$"))

    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/webui/login"))
    page.goto("/webui/masonry")
    expect(page).to_have_url(re.compile(r"/webui/login\?next=%2Fwebui%2Fmasonry$"))


# ------------------------------------------------------------------ chat


def test_chat_streams_the_answer_with_reasoning_and_sources_and_keeps_history(page, sim, tmp_path):
    sign_in(page)
    # bad input first: each gets a specific message and nothing is sent
    page.click("#send")
    expect(page.locator("#composer-error")).to_have_text("Type a message first: the prompt is empty.")
    page.evaluate("document.getElementById('prompt').value = 'y'.repeat(32001)")
    page.press("#prompt", "Enter")
    expect(page.locator("#composer-error")).to_contain_text("32001 characters long; the limit is 32000")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    page.set_input_files("#file", str(notes))
    expect(page.locator("#composer-error")).to_contain_text("“notes.txt” is not an image")
    expect(page.locator("#attachments img")).to_have_count(0)
    expect(page.locator("article.msg")).to_have_count(0)
    assert not sim.sim.requests(path=CHAT_PATH)

    page.select_option("#model", "grok-4.20-0309-reasoning")
    page.fill("#prompt", "Explain the tides. #sim:think #sim:search")
    page.press("#prompt", "Enter")
    answer = page.locator("article.msg.assistant").last
    expect(answer).not_to_have_class(re.compile("streaming"))
    expect(answer.locator(".msg-error")).to_have_count(0)
    expect(answer.locator("details.reasoning")).to_have_count(1)
    expect(answer.locator(".reasoning-text")).to_contain_text("Thinking about your request")
    assert len(answer.locator(".content").inner_text().strip()) > 20
    expect(answer.locator(".sources a").first).to_have_attribute("href", re.compile(r"^https?://"))
    # the upstream saw exactly one chat call, from the super account (reasoning needs super/heavy)
    calls = sim.sim.requests(path=CHAT_PATH)
    assert [c["token"] for c in calls] == [SUPER]
    assert "Explain the tides" in calls[0]["body"]["message"]

    # Shift+Enter is a newline, Enter sends the second turn with the history and an image attachment
    png = tmp_path / "dot.png"
    png.write_bytes(png_bytes())
    page.set_input_files("#file", str(png))
    expect(page.locator("#attachments img")).to_have_count(1)
    page.fill("#prompt", "First line")
    page.press("#prompt", "Shift+Enter")
    page.type("#prompt", "second line")
    assert page.input_value("#prompt") == "First line\nsecond line"
    page.press("#prompt", "Enter")
    expect(page.locator("article.msg.assistant")).to_have_count(2)
    expect(page.locator("article.msg.assistant").last).not_to_have_class(re.compile("streaming"))
    expect(page.locator("article.msg.assistant").last.locator(".msg-error")).to_have_count(0)
    expect(page.locator("article.msg.user .thumbs img")).to_have_count(1)
    second = sim.sim.requests(path=CHAT_PATH)[-1]
    assert "Explain the tides" in second["body"]["message"] and "second line" in second["body"]["message"]
    assert [r for r in sim.sim.requests(token=SUPER) if "upload" in (r["path"] or "")]  # the image went up

    page.reload()
    expect(page.locator("article.msg.user")).to_have_count(2)
    expect(page.locator("article.msg.user").last).to_contain_text("second line")
    expect(page.locator("article.msg.assistant").first.locator("details.reasoning")).to_have_count(1)

    # an image model answers with an image, shown inline
    page.select_option("#model", "grok-imagine-image")
    page.fill("#prompt", "a lighthouse at dusk")
    page.press("#prompt", "Enter")
    answer = page.locator("article.msg.assistant").last
    expect(answer).not_to_have_class(re.compile("streaming"))
    expect(answer.locator(".content img")).to_have_count(1)
    wait_for(lambda: answer.locator(".content img").evaluate("img => img.complete && img.naturalWidth") > 0,
             "the generated image to load")

    # responsive: a phone-sized window has no horizontal scrolling
    page.set_viewport_size({"width": 380, "height": 760})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert not page.js_errors


def test_stop_aborts_the_stream_and_ends_the_upstream_request(page, sim):
    sign_in(page)
    page.select_option("#model", "grok-4.20-0309-non-reasoning-heavy")  # heavy pool only: the slow account
    page.fill("#prompt", "Tell a very long story. #sim:len=400")
    page.click("#send")
    answer = page.locator("article.msg.assistant").last
    expect(answer.locator(".content")).to_contain_text(re.compile(r"\w+"))
    expect(page.locator("#stop")).to_be_visible()
    entry = sim.sim.requests(path=CHAT_PATH)[-1]
    assert sim.sim.inflight.get(SLOW_HEAVY, 0) == 1  # the upstream stream is open
    page.click("#stop")
    expect(answer.locator(".note")).to_have_text("Stopped.")
    expect(page.locator("#send")).to_be_visible()
    wait_for(lambda: entry.get("disconnected"), "the upstream chat request to be closed")
    assert not entry.get("completed")
    wait_for(lambda: sim.sim.inflight.get(SLOW_HEAVY, 0) == 0, "no open upstream stream")
    # retry works after a stop and the copy button is there
    expect(answer.locator("button.retry")).to_be_visible()
    expect(answer.locator("button.copy")).to_be_visible()


def test_an_upstream_error_is_shown_in_place_with_the_api_message(page, sim):
    sign_in(page)
    page.select_option("#model", "grok-4.20-0309-non-reasoning-super")  # super pool: SUPER answers
    sim.sim.queue(SUPER, ["http=400"], endpoint="chat")  # upstream refuses this one request
    page.fill("#prompt", "hello")
    with page.expect_response("**/webui/api/chat/completions") as info:
        page.press("#prompt", "Enter")
    response = info.value
    assert response.status == 400
    message = response.json()["error"]["message"]
    assert message.startswith("Upstream rejected the request")
    answer = page.locator("article.msg.assistant").last
    expect(answer.locator(".msg-error")).to_have_text(message)
    # Retry sends the same turn again; this time the upstream answers
    answer.locator("button.retry").click()
    answer = page.locator("article.msg.assistant").last
    expect(answer).not_to_have_class(re.compile("streaming"))
    expect(answer.locator(".msg-error")).to_have_count(0)
    expect(page.locator("article.msg.user")).to_have_count(1)
    assert len(sim.sim.requests(path=CHAT_PATH)) == 2


def test_an_answer_fetches_no_remote_image_until_clicked_and_keeps_only_http_links(page, sim):
    sign_in(page)
    remote: list[str] = []
    page.context.on("request", lambda r: remote.append(r.url) if "127.0.0.2" in r.url else None)
    # the simulator answers with exactly this Markdown: a remote image, one of the gateway's own
    # (/v1/files, shown directly) and a javascript: link
    page.fill("#prompt", "Show me #sim:say=![x](http://127.0.0.2:1/pixel)![y](/v1/files/image?id=own)[click](javascript:alert(1))")
    page.press("#prompt", "Enter")
    answer = page.locator("article.msg.assistant").last
    expect(answer).not_to_have_class(re.compile("streaming"))
    button = answer.locator(".content button.remote-image")
    expect(button).to_have_text(re.compile(r"Image from 127\.0\.0\.2:1 \(x\)"))
    expect(answer.locator(".content img")).to_have_count(1)
    expect(answer.locator(".content img")).to_have_attribute("src", "/v1/files/image?id=own")
    expect(answer.locator(".content a[href]")).to_have_count(0)  # javascript: is not a link
    expect(answer.locator(".content")).to_contain_text("click")
    page.reload()  # rendered again from the stored conversation: still nothing fetched
    expect(page.locator("article.msg.assistant .content button.remote-image")).to_have_count(1)
    assert remote == []
    with page.context.expect_page() as opened:
        page.locator("article.msg.assistant .content button.remote-image").click()
    wait_for(lambda: page.wait_for_timeout(50) or remote, "the request the click asked for")  # lets Playwright deliver events
    assert remote[0] == "http://127.0.0.2:1/pixel"
    opened.value.close()

    # a search source with a javascript: URL is listed as text, not as a link
    page.fill("#prompt", "Look it up #sim:search=javascript:alert(document.cookie)")
    page.press("#prompt", "Enter")
    answer = page.locator("article.msg.assistant").last
    expect(answer).not_to_have_class(re.compile("streaming"))
    sources = answer.locator(".sources")
    expect(sources.locator(".source-unsafe")).to_have_count(1)
    expect(sources.locator("a")).not_to_have_count(0)
    for href in sources.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))"):
        assert href.startswith(("http://", "https://")), href
    assert not page.js_errors


# ------------------------------------------------------------------ image wall


def test_masonry_streams_images_then_stops(page, sim):
    sign_in(page, "/webui/masonry")
    expect(page.locator("#wall-state")).to_have_text("Connected · idle")
    page.click("#wall-start")
    expect(page.locator("#wall-error")).to_have_text("Enter a prompt before starting the wall.")
    page.fill("#wall-prompt", "paper boats on a pond")
    page.select_option("#wall-model", "standard")
    page.select_option("#wall-aspect", "1:1")
    page.fill("#wall-count", "3")
    page.click("#wall-start")
    expect(page.locator("#grid figure img").nth(2)).to_be_visible()
    expect(page.locator("#wall-stop")).to_be_enabled()
    page.click("#wall-stop")
    expect(page.locator("#wall-state")).to_have_text("Stopped")
    expect(page.locator("#wall-start")).to_be_enabled()
    shown = page.locator("#grid figure").count()
    assert shown >= 3
    src = page.locator("#grid figure img").first.get_attribute("src")
    assert src.startswith("blob:")
    assert page.locator("#grid figure img").first.evaluate("img => img.naturalWidth") > 0
    rounds = [r for r in sim.sim.requests() if r["path"] == "/ws/imagine/listen"]
    assert rounds and rounds[0]["token"] == SUPER
    assert rounds[0]["rounds"][0]["text"] == "paper boats on a pond"
    # enlarge, download link, copy prompt
    page.locator("#grid figure button").first.click()
    expect(page.locator("#viewer")).to_be_visible()
    expect(page.locator("#viewer-prompt")).to_have_text("paper boats on a pond")
    assert page.get_attribute("#viewer-download", "download").startswith("grok-imagine-")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#viewer-copy")
    expect(page.locator("#viewer-copy")).to_have_text(re.compile("Copied|Copy failed"))
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()
    assert not page.js_errors



def _upstream_image_rounds(sim) -> int:
    return sum(len(r["rounds"]) for r in sim.sim.requests() if r["path"] == "/ws/imagine/listen")


def test_masonry_spends_what_the_page_said_before_start_and_no_more(page, sim):
    """One Start with 4 per round once produced 24 images in a 1280×860 window: the end of the wall
    was on screen, so infinite scroll asked for round after round."""
    page.set_viewport_size({"width": 1280, "height": 860})
    sign_in(page, "/webui/masonry")
    expect(page.locator("#wall-state")).to_have_text("Connected · idle")
    page.fill("#wall-prompt", "origami cranes")
    page.fill("#wall-count", "4")
    expect(page.locator("#wall-spend")).to_have_text("4 images per round × 1 round = 4 images")
    page.fill("#wall-rounds", "2")
    expect(page.locator("#wall-spend")).to_have_text("4 images per round × 2 rounds = 8 images")
    page.click("#wall-start")
    expect(page.locator("#wall-state")).to_have_text("Done · 8 images")
    expect(page.locator("#grid figure")).to_have_count(8)
    assert _upstream_image_rounds(sim) == 2
    # scrolling to the end of the wall starts nothing; only the button does, one round at a time
    page.mouse.wheel(0, 20_000)
    more = page.locator("#wall-more")
    expect(more).to_have_text("One more round (4 images)")
    more.click()
    expect(page.locator("#wall-state")).to_have_text("Done · 12 images")
    expect(page.locator("#grid figure")).to_have_count(12)
    assert _upstream_image_rounds(sim) == 3
    page.click("#wall-stop")
    expect(page.locator("#wall-state")).to_have_text("Stopped")
    assert page.locator("#grid figure").count() == 12 and _upstream_image_rounds(sim) == 3
    assert not page.js_errors


def test_voice_page_gets_a_token_and_shows_the_connection_state(page, sim):
    sign_in(page, "/webui/chatkit")
    expect(page.locator("#voice-state")).to_have_text("idle")
    with page.expect_response("**/webui/api/voice/token") as info:
        page.click("#voice-start")
    assert info.value.status == 200
    grant = info.value.json()
    expect(page.locator("#voice-room")).to_contain_text(grant["room_name"])
    expect(page.locator("#mic-status")).to_have_attribute("data-started", "1")  # the fake microphone opened
    # the simulator's /rtc stub accepts the upgrade for an issued token, then closes: the page
    # reaches "connecting" and then reports the disconnect with LiveKit's reason
    expect(page.locator("#voice-state")).to_have_text(re.compile(r"^disconnected: "), timeout=60_000)
    expect(page.locator("#voice-error")).to_contain_text("Could not connect to the voice server")
    history = page.get_attribute("#voice-state", "data-history").split(" > ")
    assert history[:3] == ["requesting token", "token received", "connecting"] and history[-1] == "disconnected"
    token_calls = [r for r in sim.sim.requests() if r["path"] == "/rest/livekit/tokens"]
    assert [c["token"] for c in token_calls] == [SUPER]
    # the browser itself reached LiveKit's /rtc with the issued token (the gateway does not proxy RTC)
    rtc = wait_for(lambda: [c for c in sim.sim.rtc_connections if c["access_token_known"]], "the /rtc upgrade")
    assert rtc[0]["query"]["access_token"] == grant["token"]
    expect(page.locator("#voice-start")).to_be_enabled()
    expect(page.locator("#mic-status")).to_have_text("off")


def test_voice_page_says_why_it_cannot_connect(page, sim):
    sign_in(page, "/webui/chatkit")
    # the upstream refuses the token request on both eligible accounts (super, then heavy)
    sim.sim.queue(SUPER, ["expired"], endpoint="livekit")
    sim.sim.queue(SLOW_HEAVY, ["expired"], endpoint="livekit")
    with page.expect_response("**/webui/api/voice/token") as info:
        page.click("#voice-start")
    message = info.value.json()["error"]["message"]
    expect(page.locator("#voice-error")).to_contain_text(f"Token refused ({info.value.status}): {message}")
    expect(page.locator("#voice-state")).to_have_text("not connected")
    expect(page.locator("#voice-start")).to_be_enabled()
    assert len([r for r in sim.sim.requests() if r["path"] == "/rest/livekit/tokens"]) == 2  # super, then heavy

    # both are now known to be expired: no super/heavy account is left (basic is not eligible)
    page.click("#voice-start")
    expect(page.locator("#voice-error")).to_contain_text("No eligible account")
    expect(page.locator("#voice-error")).to_contain_text("super or heavy")
    assert len([r for r in sim.sim.requests() if r["path"] == "/rest/livekit/tokens"]) == 2


# ------------------------------------------------------------------ last: it stops the gateway


def test_masonry_reports_a_dropped_socket_and_offers_to_reconnect(page, sim, gateway):
    sign_in(page, "/webui/masonry")
    expect(page.locator("#wall-state")).to_have_text("Connected · idle")
    page.fill("#wall-prompt", "lanterns")
    page.fill("#wall-count", "2")
    page.click("#wall-start")
    expect(page.locator("#grid figure img").nth(1)).to_be_visible()
    page.click("#wall-stop")
    expect(page.locator("#wall-state")).to_have_text("Stopped")
    shown = page.locator("#grid figure").count()
    # the gateway goes away: the page says so, keeps the images and offers to reconnect
    gateway.stop()
    expect(page.locator("#wall-error")).to_contain_text("connection to the gateway was lost")
    expect(page.locator("#wall-reconnect")).to_be_visible()
    assert page.locator("#grid figure").count() == shown
    page.click("#wall-start")
    expect(page.locator("#wall-error")).to_contain_text("Not connected to the gateway: press Reconnect first.")
    page.click("#wall-reconnect")
    expect(page.locator("#wall-state")).to_have_text(re.compile(r"Disconnected \(code \d+\)"))


# ------------------------------------------------------------------ Content-Security-Policy


ADMIN_PASSWORD = "csp-admin-pw-1"


def test_every_page_runs_under_the_csp_without_a_violation(page, gateway, django_user_model):
    from accounts.models import Account

    django_user_model.objects.create_superuser("cspadmin", password=ADMIN_PASSWORD)
    account = Account.objects.first()
    # the web pages, signed in with the page key
    for path in ("/webui/chat", "/webui/masonry", "/webui/chatkit"):
        response = page.goto(path)
        if "/webui/login" in page.url:
            sign_in(page, path)
        page.wait_for_load_state("networkidle")
        header = page.evaluate("fetch(location.href).then(r => r.headers.get('content-security-policy'))")
        assert "default-src 'self'" in header and "frame-ancestors 'none'" in header, path
    page.goto("/webui/masonry")
    expect(page.locator("#wall-state")).to_have_text("Connected · idle")  # the same-origin socket is allowed
    # admin: login, index, change lists and change forms (Django's own scripts and ours)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "cspadmin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/$"))
    for path in ("/admin/", "/admin/accounts/account/", f"/admin/accounts/account/{account.pk}/change/",
                 "/admin/accounts/account/import/", "/admin/grok2api/runtimeconfig/", "/admin/gateway/apikey/add/",
                 "/admin/media/cachedmedia/", "/admin/auth/user/", "/admin/django_celery_beat/periodictask/add/"):
        response = page.goto(path)
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
    # the API docs
    page.goto("/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("grok2api")
    page.wait_for_load_state("networkidle")
    assert page.csp_violations == []
    assert not page.js_errors


def test_the_csp_watch_sees_a_refused_load(page):
    """The watch above can fail: a remote image on a web page is refused and reported."""
    sign_in(page)
    page.evaluate("document.body.append(Object.assign(document.createElement('img'), {src: 'http://127.0.0.2:1/x.png'}))")
    page.wait_for_function("window.__cspSeen > 0")  # the page saw it; the report reaches Python with the next call
    page.evaluate("0")
    assert page.csp_violations[0]["directive"] == "img-src"
    assert page.csp_violations[0]["blocked"] == "http://127.0.0.2:1/x.png"
    page.goto("/webui/masonry")  # leave the page, so no late report of it remains
    page.csp_violations.clear()  # expected here; the fixture checks the rest
