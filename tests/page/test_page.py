"""The exchange page in a real headless browser (Debian's Chromium driven by Playwright)
against the system as `./ops/run` starts it: what crossing orders placed through the API
do shows on the page within a second, the page recovers by itself when svc_stream is
killed and restarted, and with auth on a key signs an order placed and cancelled from the
ticket. No JavaScript error reaches the console. The test takes the README's screenshot:
`REFRESH_SCREENSHOT=1 ./ops/test tests/page` writes it into the repository.

Without Playwright or a Chromium to drive (`./ops/test` installs them where it may) the
tests skip, saying so; where the browser is required (`EX_REQUIRE_BROWSER=1`, which
`.ci/run` sets, or `CI`) they fail instead, since CI must run them (`tests/page/browser.py`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import eventually
from tests.launcher.test_auth import AUTH, printed_key
from tests.page.browser import find_chromium, import_playwright, require_browser
from tests.signing import signing_session
from tests.system import REPO, Launcher, run_launcher

pytestmark = pytest.mark.integration

playwright: Any = import_playwright()  # None without it: the `chromium` fixture says so
CHROMIUM = find_chromium()
# As a test machine with a closed network needs it: no background connections, no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PROMPT = 1000  # ms: what an order does is on the page within a second
SCREENSHOT = REPO / "tests" / "page" / "screenshot.png"
VIEWPORT = {"width": 1400, "height": 860}
# What Chromium itself logs while svc_stream is down on purpose: the page's reconnection
# attempts failing. Anything else in the console is an error of the page.
OUTAGE = "WebSocket connection to"


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_browser(playwright, CHROMIUM, os.environ)


class Console:
    """Every error the page's console shows, and whether svc_stream is down on purpose."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.outage = False

    def message(self, message: Any) -> None:
        if message.type == "error" and not (self.outage and OUTAGE in message.text):
            self.errors.append(message.text)

    def exception(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Any]:
    async with playwright.async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def open_page(browser: Any, system: Launcher) -> tuple[Any, Console]:
    page = await browser.new_page(viewport=VIEWPORT)
    console = Console()
    page.on("console", console.message)
    page.on("pageerror", console.exception)
    await page.goto(f"http://localhost:{system.ports['EX_STREAM_PORT']}/")
    await playwright.expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    return page, console


async def system_running(tmp_path: Path, env: dict[str, str] | None = None,
                         ) -> AsyncIterator[Launcher]:
    async for running in run_launcher(tmp_path, env):
        await eventually(partial(running.said, "all services ready"), timeout=40)
        yield running


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[Launcher]:
    async for running in system_running(tmp_path):
        yield running


@pytest.fixture
async def system_with_auth(tmp_path: Path) -> AsyncIterator[Launcher]:
    async for running in system_running(tmp_path, AUTH):
        yield running


async def place(http: aiohttp.ClientSession, system: Launcher, side: str, quantity: int,
                price: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{system.ports['EX_ORDERS_PORT']}/orders/"
    async with http.post(url, json={"side": side, "quantity": quantity,
                                    "price": price}) as response:
        assert response.status == 201, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


def legend(fills: list[dict[str, Any]]) -> str:
    """The current candle as the page's legend shows it: the fills of the last minute."""
    minute = fills[-1]["execution_timestamp"][:16]
    mine = [fill for fill in fills if fill["execution_timestamp"][:16] == minute]
    prices = sorted((Decimal(fill["price"]), fill["price"]) for fill in mine)
    return (f"{minute[11:]}  O {mine[0]['price']}  H {prices[-1][1]}  L {prices[0][1]}  "
            f"C {mine[-1]['price']}  V {sum(fill['quantity'] for fill in mine)}")


async def expect_market(page: Any, fills: list[dict[str, Any]]) -> None:
    """The header, the tape and the current candle show the trades so far."""
    expect = playwright.expect
    last = fills[-1]["price"]
    await expect(page.locator("#last-price")).to_have_text(last, timeout=PROMPT)
    await expect(page.locator("#tape tr").first).to_contain_text(last, timeout=PROMPT)
    await expect(page.locator("#tape tr")).to_have_count(len(fills), timeout=PROMPT)
    await expect(page.locator("#candle")).to_have_text(legend(fills), timeout=PROMPT)


async def test_the_page_shows_the_market_live_and_recovers(browser: Any, system: Launcher,
                                                           tmp_path: Path) -> None:
    page, console = await open_page(browser, system)
    expect = playwright.expect
    async with aiohttp.ClientSession() as http:
        for price, quantity in (("101.50", 10), ("101.75", 7), ("102.00", 12), ("102.50", 20)):
            await place(http, system, "sell", quantity, price)
        for price, quantity in (("100.00", 3), ("99.75", 9), ("99.50", 15), ("99.00", 25)):
            await place(http, system, "buy", quantity, price)
        fills = (await place(http, system, "buy", 4, "101.50"))["fills"]  # 4 at 101.50
        await expect_market(page, fills)
        await expect(page.locator("#spread")).to_have_text("1.50", timeout=PROMPT)
        await expect(page.locator("#asks tr").last.locator("td")).to_have_text(
            ["101.50", "6", "6"], timeout=PROMPT)  # best ask next to the spread
        await expect(page.locator("#bids tr").first.locator("td")).to_have_text(
            ["100.00", "3", "3"], timeout=PROMPT)
        await expect(page.locator("#bids tr").nth(1).locator("td")).to_have_text(
            ["99.75", "9", "12"], timeout=PROMPT)  # cumulative size

        # svc_stream dies and comes back: the page reconnects and resynchronises alone.
        [stream] = system.pids_started("svc_stream")
        console.outage = True
        os.kill(stream, signal.SIGKILL)
        await expect(page.locator("#status")).not_to_have_text("live", timeout=5_000)
        await expect(page.locator("#status")).to_have_text("live", timeout=20_000)
        console.outage = False
        fills += (await place(http, system, "sell", 2, "100.00"))["fills"]  # 2 at 100.00
        await expect_market(page, fills)
        await expect(page.locator("#tape tr").first.locator("td.sell")).to_have_text("100.00")
        await expect(page.locator("#bids tr").first.locator("td")).to_have_text(
            ["100.00", "1", "1"], timeout=PROMPT)

        shot = SCREENSHOT if os.environ.get("REFRESH_SCREENSHOT") else tmp_path / "page.png"
        await page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    assert console.errors == []


async def test_with_auth_a_key_places_and_cancels_from_the_ticket(
        browser: Any, system_with_auth: Launcher) -> None:
    system = system_with_auth
    key = printed_key(system)
    assert key is not None, system.output()
    page, console = await open_page(browser, system)
    expect = playwright.expect
    await page.fill("#key-id", key["key_id"])
    await page.fill("#key-secret", key["secret"])
    await page.click("#sign-in button")
    await expect(page.locator("#who")).to_contain_text(key["user_id"], timeout=5_000)

    await page.select_option("#side", "buy")
    await page.fill("#price", "98.25")
    await page.fill("#quantity", "7")
    await page.click("#ticket button")
    await expect(page.locator("#ticket-result")).to_contain_text("ACTIVE", timeout=5_000)
    row = page.locator("#open-orders tr")
    await expect(row).to_have_count(1, timeout=5_000)
    await expect(row).to_contain_text("98.25")
    await expect(page.locator("#bids tr").first).to_contain_text("98.25", timeout=PROMPT)

    order_id = await row.get_attribute("data-order-id")
    await row.locator("button").click()
    await expect(row).to_have_count(0, timeout=5_000)
    base = f"http://127.0.0.1:{system.ports['EX_ORDERS_PORT']}"
    async with signing_session(key["key_id"], key["secret"], base) as session, \
            session.get(f"/orders/{order_id}/") as response:
        assert (await response.json())["status"] == "CANCELLED"
    await expect(page.locator("#bids tr")).to_have_count(0, timeout=PROMPT)
    assert console.errors == []
