"""The operator console in a real browser (headless Debian chromium, Playwright), against the
gateway in production mode: gunicorn with gevent workers, a real Redis, real stand-in upstreams,
API keys on. Screenshots go to the artifacts directory (printed)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Dialog, Page, expect

from llm_router_api.base.lb.chooser import DRAIN_REFRESH
from standin import StandIn
from tests.support.procs import Gateway, RedisServer, running_standins, wait_for, write_config

ADMIN = "console-admin-token-123"
KEY = "caller-key-123456"
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def ups() -> Iterator[list[StandIn]]:
    with running_standins(3, "c") as servers:
        yield servers


def pool(ups: list[StandIn], **more: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    return {"m": [{"id": f"p{i}", "api_host": s.url, "api_type": "openai"}
                  for i, s in enumerate(ups)],
            "other": [{"id": "o0", "api_host": ups[0].url, "api_type": "openai"}], **more}


@pytest.fixture(scope="module")
def config(ups: list[StandIn], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("console"), pool(ups))


@pytest.fixture(scope="module")
def gateway(config: Path, redis_server: RedisServer) -> Iterator[Gateway]:
    gw = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                 LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_REDIS_HOST="127.0.0.1",
                 LLM_ROUTER_REDIS_PORT=str(redis_server.port),
                 LLM_ROUTER_REDIS_PREFIX=f"console-{uuid.uuid4().hex[:6]}:",
                 LLM_ROUTER_ADMIN_TOKEN=ADMIN, LLM_ROUTER_API_KEYS=KEY,
                 LLM_ROUTER_HEALTH_INTERVAL="0.5", LLM_ROUTER_COOLDOWN="5")
    yield gw
    output = gw.output()
    gw.stop()
    assert KEY not in output and ADMIN not in output, "a secret reached the log"


@pytest.fixture()
def fresh(ups: list[StandIn]) -> list[StandIn]:
    for s in ups:
        s.reset()
    return ups


def ui(gateway: Gateway) -> str:
    return f"{gateway.url}/api/ui/"


def chat(gateway: Gateway, stream: bool = False, request_id: str = "",
         content: str = "hi") -> requests.Response:
    headers = {"Authorization": f"Bearer {KEY}"}
    if request_id:
        headers["X-Request-ID"] = request_id
    return requests.post(gateway.url + "/v1/chat/completions", headers=headers, stream=stream,
                         json={"model": "m", "stream": stream,
                               "messages": [{"role": "user", "content": content}]}, timeout=30)


def signed_in(browser: Browser, gateway: Gateway, width: int = 1280,
              height: int = 800) -> Page:
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.on("pageerror", lambda error: print("page error:", error))
    page.goto(ui(gateway))
    page.fill("#token", ADMIN)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#live")).to_have_text("● live", timeout=WAIT_MS)
    # Polled from here: the page's CSP forbids the eval that ``wait_for_function`` uses
    # in-page once its first check has failed.
    wait_for(lambda: int(page.evaluate("Number(document.body.dataset.updates || 0)")) > 0,
             WAIT_MS / 1000, "the first live update")
    return page


def cell(page: Page, provider: str, column: str, model: str = "m") -> str:
    return page.locator(f'section[data-model="{model}"] tr[data-provider="{provider}"] '
                        f'td[data-col="{column}"]').inner_text()


def accept(dialog: Dialog) -> None:
    dialog.accept()


def test_a_wrong_token_is_refused(browser: Browser, gateway: Gateway, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(ui(gateway))
    page.fill("#token", "not-the-admin-token")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#sign-in-error")).to_contain_text("refused", timeout=WAIT_MS)
    assert page.locator("#app").is_hidden()
    assert not [c for c in context.cookies() if c["name"] == "llm_router_console"]
    page.screenshot(path=str(artifacts / "console-sign-in-refused.png"))
    # The API the page uses refuses too, in JSON.
    refused = requests.get(f"{gateway.url}/api/ui/api/snapshot", timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["type"]
    context.close()


def test_sign_in_sets_a_strict_cookie_and_the_page_a_strict_policy(
        browser: Browser, gateway: Gateway) -> None:
    page = signed_in(browser, gateway)
    cookie = next(c for c in page.context.cookies() if c["name"] == "llm_router_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    response = requests.get(ui(gateway), timeout=10)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page.context.close()


def test_the_live_view_changes_while_traffic_flows(browser: Browser, gateway: Gateway,
                                                   fresh: list[StandIn],
                                                   artifacts: Path) -> None:
    page = signed_in(browser, gateway)
    page.evaluate("window.__sameDocument = true")
    before = int(page.evaluate("Number(document.body.dataset.updates || 0)"))
    for s in fresh:
        s.set_behaviour(tokens=30, token_delay=0.05)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            with chat(gateway, stream=True) as reply:
                for _ in reply.iter_content(chunk_size=None):
                    pass

    threads = [threading.Thread(target=traffic, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        # In-flight requests appear, then the per-minute rates, with no page reload.
        wait_for(lambda: any(not cell(page, f"p{i}", "inflight").startswith("0 ")
                             for i in range(3)), 20, "in-flight requests in the live view")
        wait_for(lambda: any(float(cell(page, f"p{i}", "rpm")) > 0 for i in range(3)), 20,
                 "requests per minute in the live view")
        wait_for(lambda: cell(page, "p0", "ttft") != "– / –", 20, "a TTFT quantile")
        page.screenshot(path=str(artifacts / "console-live-1280x800.png"))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    wait_for(lambda: int(page.evaluate("Number(document.body.dataset.updates || 0)")) > before + 3,
             20, "more live updates")
    assert page.evaluate("window.__sameDocument") is True
    page.context.close()


def test_drain_takes_effect_and_in_flight_requests_finish(
        browser: Browser, gateway: Gateway, fresh: list[StandIn], artifacts: Path) -> None:
    page = signed_in(browser, gateway)
    page.on("dialog", accept)
    for s in fresh:
        s.set_behaviour(tokens=60, token_delay=0.05)  # ~3 s streams
    finished: list[bytes] = []

    def stream() -> None:
        with chat(gateway, stream=True) as reply:
            finished.append(b"".join(reply.iter_content(chunk_size=None)))

    held = [threading.Thread(target=stream, daemon=True) for _ in range(3)]
    for t in held:
        t.start()
    # Balanced: one stream on each provider, p0 included.
    wait_for(lambda: cell(page, "p0", "inflight").startswith("1 "), 20, "p0 to hold a stream")
    page.locator('section[data-model="m"] tr[data-provider="p0"] button[data-act="drain"]').click()
    expect(page.locator('section[data-model="m"] tr[data-provider="p0"] td[data-col="state"]')
           ).to_have_text("‖ drained", timeout=WAIT_MS)
    page.screenshot(path=str(artifacts / "console-drained.png"))
    time.sleep(3 * DRAIN_REFRESH)  # every worker re-reads the drained set within this
    for s in fresh:
        s.set_behaviour(tokens=3, token_delay=0.0)
    served_before = fresh[0].count
    for _ in range(12):
        assert chat(gateway).status_code == 200
    assert fresh[0].count == served_before, "a drained provider got a new request"
    for t in held:
        t.join(30)
    assert len(finished) == 3 and all(b"data: [DONE]" in body for body in finished)
    wait_for(lambda: cell(page, "p0", "inflight").startswith("0 "), 20, "p0's in-flight to be 0")
    health = requests.get(gateway.url + "/api/health", timeout=10).json()
    p0 = next(p for p in health["models"]["m"]["providers"] if p["id"] == "p0")
    assert p0["drained"] is True
    page.locator('section[data-model="m"] tr[data-provider="p0"] button[data-act="drain"]').click()
    expect(page.locator('section[data-model="m"] tr[data-provider="p0"] td[data-col="state"]')
           ).to_have_text("✓ healthy", timeout=WAIT_MS)
    time.sleep(3 * DRAIN_REFRESH)
    for _ in range(9):
        assert chat(gateway).status_code == 200
    assert fresh[0].count > served_before
    page.context.close()


def test_the_playground_streams_a_chat(browser: Browser, gateway: Gateway,
                                       fresh: list[StandIn], artifacts: Path) -> None:
    page = signed_in(browser, gateway)
    for s in fresh:
        s.set_behaviour(tokens=40, token_delay=0.05)
    page.click('nav button[data-tab="playground"]')
    page.select_option("#play-model", "m")
    page.fill("#play-prompt", "Tell me a story.")
    page.click("#play-send")
    expect(page.locator("#play-status")).to_contain_text("streaming", timeout=WAIT_MS)
    partial = page.locator("#play-output").inner_text()
    expect(page.locator("#play-status")).to_contain_text("done", timeout=WAIT_MS)
    whole = page.locator("#play-output").inner_text()
    assert whole and len(whole) > len(partial)  # it grew while the tokens came
    page.screenshot(path=str(artifacts / "console-playground.png"))
    page.context.close()


def test_recent_requests_with_a_filter_and_no_prompt(browser: Browser, gateway: Gateway,
                                                     fresh: list[StandIn]) -> None:
    marker = f"console-test-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        assert chat(gateway, request_id=f"{marker}-{i}",
                    content="a private prompt that must not show").status_code == 200
    page = signed_in(browser, gateway)
    page.click('nav button[data-tab="recent"]')
    page.fill("#recent-filter", marker)
    rows = page.locator("#recent-table tbody tr")
    expect(rows).to_have_count(3, timeout=WAIT_MS)
    text = rows.first.inner_text()
    assert "m" in text and "200" in text and "caller-" not in text
    assert "private prompt" not in page.content()
    page.fill("#recent-filter", marker + "-1")
    expect(rows).to_have_count(1)
    page.context.close()


def test_a_failing_provider_shows_its_cool_down(browser: Browser, gateway: Gateway,
                                               fresh: list[StandIn], artifacts: Path) -> None:
    page = signed_in(browser, gateway)
    page.on("dialog", accept)
    fresh[2].set_behaviour(mode="status", status_code=503)
    for _ in range(6):
        assert chat(gateway).status_code == 200  # failed over to p0 / p1
    state = page.locator('section[data-model="m"] tr[data-provider="p2"] td[data-col="state"]')
    expect(state).to_contain_text("✗ cooling", timeout=WAIT_MS)
    expect(state).to_contain_text("s left")
    wait_for(lambda: float(cell(page, "p2", "epm")) > 0, 20, "errors per minute")
    page.locator('section[data-model="m"] tr[data-provider="p1"] button[data-act="drain"]').click()
    expect(page.locator('section[data-model="m"] tr[data-provider="p1"] td[data-col="state"]')
           ).to_have_text("‖ drained", timeout=WAIT_MS)
    # The picture docs/console.md shows (docs/img/console.png is a copy of this file).
    page.screenshot(path=str(artifacts / "console-pool.png"))
    page.locator('section[data-model="m"] tr[data-provider="p1"] button[data-act="drain"]').click()
    expect(state).to_have_text("◐ half-open (trial)", timeout=WAIT_MS)  # cool-down over
    fresh[2].reset()  # answers again: a live trial request brings it back
    deadline = time.monotonic() + 30
    while cell(page, "p2", "state") != "✓ healthy":
        assert chat(gateway).status_code == 200
        assert time.monotonic() < deadline, "p2 did not come back"
        time.sleep(0.2)
    expect(page.locator('section[data-model="m"] tr[data-provider="p1"] td[data-col="state"]')
           ).to_have_text("✓ healthy", timeout=WAIT_MS)
    page.context.close()


def test_a_phone_sized_screen_shows_cards_without_sideways_scrolling(
        browser: Browser, gateway: Gateway, artifacts: Path) -> None:
    page = signed_in(browser, gateway, width=390, height=844)
    row = page.locator('section[data-model="m"] tr[data-provider="p0"]')
    expect(row).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Labels are printed with each value (the table header is hidden).
    label = page.evaluate("""getComputedStyle(document.querySelector(
        'tr[data-provider="p0"] td[data-col="state"]'), '::before').content""")
    assert "State" in label
    page.screenshot(path=str(artifacts / "console-phone.png"), full_page=True)
    page.context.close()


def test_reload_from_the_page_reaches_the_live_view(browser: Browser, gateway: Gateway,
                                                    config: Path, ups: list[StandIn],
                                                    artifacts: Path) -> None:
    original = config.read_text()
    page = signed_in(browser, gateway)
    page.on("dialog", accept)
    expect(page.locator("#reload")).to_be_visible()
    expect(page.locator("#config-reload")).to_have_text("none yet")
    old_hash = page.locator("#config-hash").inner_text()
    try:
        write_config(config.parent, pool(ups, added=[
            {"id": "a0", "api_host": ups[1].url, "api_type": "openai"}]))
        page.click("#reload")
        expect(page.locator("#notice")).to_contain_text("Reloaded", timeout=WAIT_MS)
        # Every worker follows; the stream shows the new model, hash and reload time.
        expect(page.locator('section[data-model="added"] tr[data-provider="a0"]')
               ).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#config-hash")).not_to_have_text(old_hash, timeout=WAIT_MS)
        expect(page.locator("#config-reload")).not_to_have_text("none yet", timeout=WAIT_MS)
        page.screenshot(path=str(artifacts / "console-reloaded.png"))
        config.write_text('{"active_models": {"nope": ["x"]}}')
        page.click("#reload")
        expect(page.locator("#notice")).to_contain_text("reload refused", timeout=WAIT_MS)
        expect(page.locator('section[data-model="added"]')).to_be_visible()
    finally:
        config.write_text(original)
        assert requests.post(gateway.url + "/api/admin/reload", timeout=10,
                             headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    assert "operator action: reload by=console session" in gateway.output()
    page.context.close()
