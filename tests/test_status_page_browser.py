"""The status page in a real browser: Debian's Chromium, headless, driven by Playwright,
against the web app served over a socket (Werkzeug's server in a thread) on a throwaway
redis-server. Flask's test client cannot tell whether a browser keeps the cookie, sends
it back, loads the stylesheet under the page's Content-Security-Policy, or shows the page.

STATUS_PAGE_SCREENSHOT=<path> also saves the signed-in page's screenshot there.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from werkzeug.serving import make_server

from queuing import status_page, uptime, webapp
from queuing.uptime import Outcome
from tests.conftest import JANE, JOHN
from tests.processes import skip_unless_ci

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 20_000  # every wait of the browser: a busy machine is slow, not stuck
SCREENSHOT_ENV = "STATUS_PAGE_SCREENSHOT"


@pytest.fixture
def chromium():
    """A headless Chromium from the system's packages (Playwright downloads none)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_unless_ci("playwright is not installed (pip install playwright; it drives "
                       "/usr/bin/chromium, no browser download needed)")
    if not CHROMIUM.exists():
        skip_unless_ci(f"no Chromium at {CHROMIUM} (apt install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                             timeout=WAIT_MS)
        yield browser
        browser.close()


@pytest.fixture
def served(redis_url) -> Iterator[str]:
    """The web app listening on a free port of 127.0.0.1, on the throwaway Redis: its URL."""
    clients = (redis.Redis.from_url(redis_url, decode_responses=True),
               redis.Redis.from_url(redis_url))
    app = webapp.create_app({"REDIS": clients[0], "RQ_REDIS": clients[1],
                             "ALLOW_PRIVATE_CHECKS": True})  # checks of 127.0.0.1
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    for client in clients:
        client.close()


def sign_up_with_checks(base: str, user: dict, urls: list[str]) -> list[str]:
    """Through the HTTP API, as the seed's walkthrough does: the new checks' ids."""
    api = requests.Session()
    api.trust_env = False  # 127.0.0.1, never through a proxy from the environment
    assert api.post(f"{base}/users", json=user, timeout=10).status_code == 201
    answer = api.post(f"{base}/tokens", timeout=10,
                      json={"phone": user["phone"], "password": user["password"]})
    headers = {"token": answer.json()["id"]}
    ids = []
    for url in urls:
        answer = api.post(f"{base}/checks", headers=headers, timeout=10, json={
            "protocol": "http", "url": url, "method": "get", "successCodes": [200],
            "timeoutSeconds": 3})
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


def test_a_person_signs_in_and_sees_their_checks_in_chromium(chromium, served, real_redis,
                                                             tmp_path):
    from playwright.sync_api import expect

    up_id, down_id = sign_up_with_checks(served, JANE, ["127.0.0.1:8001/health",
                                                        "127.0.0.1:8002/<b>shop</b>"])
    sign_up_with_checks(served, JOHN, ["john.example/private"])
    now = time.time()
    for check_id, outcomes in ((up_id, [Outcome("down", now - 120, status_code=503),
                                        Outcome("up", now - 60, status_code=200)]),
                               (down_id, [Outcome("up", now - 120, status_code=200),
                                          Outcome("down", now - 60, error="connection failed")])):
        for outcome in outcomes:
            uptime.record(real_redis, uptime.get_check(real_redis, check_id), outcome)

    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))

    # Another site's page whose form posts Jane's sign-in here: refused, no cookie set.
    page.route("http://evil.test/", lambda route: route.fulfill(content_type="text/html", body=(
        f'<form method="post" action="{served}/status/login"><input name="phone" '
        f'value="{JANE["phone"]}"><input name="password" value="{JANE["password"]}">'
        '<button>go</button></form>')))
    page.goto("http://evil.test/")
    with page.expect_navigation() as cross_site:
        page.click("button")
    assert cross_site.value.status == 403 and context.cookies() == []

    assert page.goto(f"{served}/status").status == 200
    page.fill("input[name=phone]", JANE["phone"])
    page.fill("input[name=password]", "not-her-password")
    with page.expect_navigation() as refused:
        page.click("form.login button[type=submit]")
    assert refused.value.status == 401
    expect(page.locator("p.error")).to_have_text(status_page.WRONG_LOGIN)
    assert context.cookies() == []

    page.fill("input[name=phone]", "1-415-867-5309")  # as people type it
    page.fill("input[name=password]", JANE["password"])
    with page.expect_request(f"{served}/status/login") as posted, \
            page.expect_navigation() as signed_in:
        page.click("form.login button[type=submit]")
    assert posted.value.header_value("origin") == served  # what the POSTs are judged by
    assert signed_in.value.status == 200 and page.url == f"{served}/status"

    checks = page.locator("section.check")
    expect(checks).to_have_count(2)
    up, down = page.locator(f"#check-{up_id}"), page.locator(f"#check-{down_id}")
    expect(up).to_have_attribute("data-state", "up")
    expect(up.locator(".url")).to_have_text("http://127.0.0.1:8001/health")
    expect(up.locator("p.state")).to_have_text("up")
    expect(down).to_have_attribute("data-state", "down")
    expect(down.locator(".url")).to_have_text("http://127.0.0.1:8002/<b>shop</b>")
    expect(down.locator("p.state")).to_have_text("down")
    expect(up.locator(".last-checked")).to_have_text(
        f"Last checked: {status_page.utc(now - 60)}")
    assert history(up) == [[status_page.utc(now - 60), "up", "200"],
                           [status_page.utc(now - 120), "down", "503"]]
    assert history(down) == [[status_page.utc(now - 60), "down", "connection failed"],
                             [status_page.utc(now - 120), "up", "200"]]
    assert "john.example" not in page.content()
    # The stylesheet loaded despite the page's Content-Security-Policy: a green edge for up.
    assert up.evaluate("e => getComputedStyle(e).borderLeftColor") == "rgb(30, 142, 62)"

    [cookie] = context.cookies()
    assert (cookie["name"], cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == (
        "token", "/status", True, "Strict")
    assert page.evaluate("document.cookie") == ""  # no script of the page can read it
    assert cookie["value"] not in page.content()
    save_screenshot(page, tmp_path / "status_page.png")

    with page.expect_navigation():
        page.click("text=Sign out")
    expect(page.locator("form.login")).to_be_visible()
    assert context.cookies() == []
    # No CSP violation, no failed load: only the refused sign-ins' own 403 and 401.
    assert [text for text in problems if not re.search(r"status of 40[13]", text)] == []
    context.close()


def history(check) -> list[list[str]]:
    """The cells of a check's history table, row by row, newest first."""
    rows = check.locator("table.history tbody tr")
    return [[re.sub(r"\s+", " ", cell).strip() for cell in row.locator("td").all_text_contents()]
            for row in rows.all()]


def save_screenshot(page, path: Path) -> None:
    """The whole page as PNG in the test's tmp dir, and where STATUS_PAGE_SCREENSHOT says."""
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes().startswith(b"\x89PNG")
    wanted = os.environ.get(SCREENSHOT_ENV)
    if wanted:
        Path(wanted).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, wanted)
