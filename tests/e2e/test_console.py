"""The operator console in a real browser (issue 22): Debian's Chromium driven by Playwright,
against a real `chainflow dev --anvil` process.

One dev server and one browser for the module; each test opens its own browser context (a
fresh sessionStorage) and fails on any error the page logged. With CHAINFLOW_SCREENSHOTS_DIR
set (./scripts/screenshots), the overview and a transaction's timeline are saved there.
"""

import json
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.conftest import free_port
from tests.support.processes import CHAINFLOW, base_env, processes, wait_http

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by scripts/bootstrap
RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil's second account
TIMEOUT_MS = 30_000  # generous: two cores shared with other test runs
expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class Dev:
    base: str
    admin_key: str
    read_key: str
    wallet_id: str

    def call(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback URL built by the test
            self.base + path, data=data, method=method
        )
        request.add_header("Authorization", f"Bearer {key or self.admin_key}")
        request.add_header("Content-Type", "application/json")
        request.add_header("Idempotency-Key", uuid.uuid4().hex)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def submit(self, count: int, **fields: str) -> list[str]:
        body = {"chain_id": 31337, "wallet": self.wallet_id, "to": RECIPIENT, "value": "1000"}
        return [self.call("POST", "/v1/transactions", body | fields)["id"] for _ in range(count)]

    def submit_held(self) -> str:
        """A request whose fee cap (1 wei) cannot pay the base fee: it stays queued."""
        [held] = self.submit(1, max_fee_per_gas="1", max_priority_fee_per_gas="1")
        return held


@dataclass
class Errors:
    """Errors a page logged: console errors and uncaught exceptions."""

    seen: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.seen.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.seen.append(message.text)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    folder = tmp_path_factory.mktemp("console")
    env = base_env(data_dir=str(folder / "data"), log_format="json")

    def cli(*args: str) -> str:
        done = subprocess.run(
            [CHAINFLOW, *args], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout.strip().splitlines()[-1]

    cli("db", "upgrade")
    admin_key = cli("apikey", "create", "--scopes", "admin", "--name", "ops")
    read_key = cli("apikey", "create", "--scopes", "read", "--name", "viewer")
    port, anvil_port = free_port(), free_port()
    command = ["dev", "--anvil", "--port", str(port), "--anvil-port", str(anvil_port)]
    with processes([command], env, folder) as (process,):
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", process)
        probe = Dev(base, admin_key, read_key, wallet_id="")
        [wallet] = [w for w in probe.call("GET", "/v1/wallets")["items"] if w["chain_ids"]]
        yield Dev(base, admin_key, read_key, wallet_id=wallet["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def errors() -> Errors:
    return Errors()


@pytest.fixture
def page(browser: Browser, errors: Errors) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors.watch(opened)
    yield opened
    context.close()


def sign_in(page: Page, dev: Dev, key: str) -> None:
    page.goto(f"{dev.base}/console")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Open console").click()
    expect(page.locator("#whoami")).to_be_visible()


def nav(page: Page, name: str) -> None:
    page.locator("#nav").get_by_role("link", name=name).click()


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("CHAINFLOW_SCREENSHOTS_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


class TestConsole:
    def test_a_wrong_key_gets_a_clear_error_and_no_console(
        self, page: Page, dev: Dev, errors: Errors
    ) -> None:
        sign_in_attempt = page.goto(f"{dev.base}/console")
        assert sign_in_attempt is not None
        assert "script-src 'self'" in sign_in_attempt.headers["content-security-policy"]
        page.get_by_label("API key").fill("cf_wrong_key")
        page.get_by_role("button", name="Open console").click()

        expect(page.get_by_role("alert")).to_contain_text("This API key was refused")
        expect(page.locator("#nav")).to_be_hidden()
        assert page.evaluate("sessionStorage.length") == 0
        # The one error is the browser's own line about the refused request (401).
        assert [e for e in errors.seen if "401" not in e] == []

    def test_transactions_reach_confirmed_and_one_shows_attempts_and_events(
        self, page: Page, dev: Dev, errors: Errors
    ) -> None:
        sign_in(page, dev, dev.admin_key)
        ids = dev.submit(3)

        nav(page, "Transactions")
        for tx_id in ids:
            row = page.locator("tr", has=page.get_by_role("link", name=tx_id[:8]))
            expect(row.locator(".badge")).to_have_text("confirmed")
        page.get_by_role("link", name=ids[0][:8]).click()

        expect(page.locator("#page h1")).to_contain_text(ids[0])
        attempt_hash = dev.call("GET", f"/v1/transactions/{ids[0]}")["attempts"][0]["hash"]
        expect(page.locator("table", has_text="Every signed variant")).to_contain_text(attempt_hash)
        timeline = page.locator("ol.timeline")
        for status in ("queued", "signed", "submitted", "mined", "confirmed"):
            expect(timeline.locator(".badge", has_text=status).first).to_be_visible()
        expect(page.get_by_role("button", name="Cancel…")).to_have_count(0)  # final
        screenshot(page, "console-transaction.png")

        nav(page, "Overview")
        expect(page.locator("table", has_text="Enabled chains")).to_contain_text("Anvil (local)")
        lanes = page.locator("table", has_text="Lanes")
        expect(lanes).to_contain_text("anvil dev wallet")
        expect(lanes).to_contain_text("3 / 3")  # next nonce / the node's, read again
        screenshot(page, "console-overview.png")
        assert errors.seen == []

    def test_pause_and_resume_from_wallets_page(self, page: Page, dev: Dev, errors: Errors) -> None:
        sign_in(page, dev, dev.admin_key)
        nav(page, "Wallets")
        pause = page.get_by_role("button", name="Pause wallet anvil dev wallet")
        pause.click()
        expect(page.get_by_role("dialog")).to_be_visible()
        page.keyboard.press("Escape")  # the confirmation step: leaving it changes nothing
        expect(page.get_by_role("dialog")).to_be_hidden()
        assert dev.call("GET", f"/v1/wallets/{dev.wallet_id}")["status"] == "active"
        pause.click()
        page.get_by_role("dialog").get_by_role("button", name="Pause").click()

        expect(page.get_by_role("button", name="Resume wallet anvil dev wallet")).to_be_visible()
        assert dev.call("GET", f"/v1/wallets/{dev.wallet_id}")["status"] == "paused"

        page.get_by_role("button", name="Resume wallet anvil dev wallet").click()
        page.get_by_role("dialog").get_by_role("button", name="Resume").click()
        expect(page.get_by_role("button", name="Pause wallet anvil dev wallet")).to_be_visible()
        assert dev.call("GET", f"/v1/wallets/{dev.wallet_id}")["status"] == "active"
        assert errors.seen == []

    def test_cancel_a_pending_transaction(self, page: Page, dev: Dev, errors: Errors) -> None:
        held = dev.submit_held()
        sign_in(page, dev, dev.admin_key)
        page.goto(f"{dev.base}/console#/transactions/{held}")
        expect(page.locator("dd .badge").first).to_have_text("queued")
        page.get_by_role("button", name="Cancel…").click()
        page.get_by_role("dialog").get_by_role("button", name="Cancel transaction").click()
        expect(page.locator("dd .badge").first).to_have_text("cancelled")
        assert dev.call("GET", f"/v1/transactions/{held}")["status"] == "cancelled"
        assert errors.seen == []

    def test_a_read_key_sees_no_write_action(self, page: Page, dev: Dev, errors: Errors) -> None:
        page.goto(f"{dev.base}/console")  # by keyboard alone: the key field has the focus
        page.keyboard.type(dev.read_key)
        page.keyboard.press("Enter")
        expect(page.locator("#whoami")).to_contain_text("read-only")
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == "Wallets":
                break
        page.keyboard.press("Enter")
        expect(page.locator("table", has_text="anvil dev wallet")).to_be_visible()
        assert page.locator("#page button").count() == 0

        queued = dev.submit_held()
        page.goto(f"{dev.base}/console#/transactions/{queued}")
        expect(page.locator("dd .badge").first).to_have_text("queued")
        assert page.locator("#page button").count() == 0  # no cancel without the scope
        dev.call("POST", f"/v1/transactions/{queued}/cancel", {})

        nav(page, "Webhooks")
        expect(page.locator("main")).to_contain_text("lacks the 'webhooks' scope")
        assert errors.seen == []
