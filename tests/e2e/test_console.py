"""The operator console in a real browser (issue 22): Debian's Chromium driven by Playwright,
against a real `chainflow dev --anvil` process.

One dev server and one browser for the module; each test opens its own browser context (a
fresh sessionStorage) and fails on any error the page logged. With CHAINFLOW_SCREENSHOTS_DIR
set (./scripts/screenshots), the overview and a transaction's timeline are saved there.
"""

import contextlib
import dataclasses
import json
import os
import re
import socket
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.support.processes import (
    CHAINFLOW,
    base_env,
    listening_port,
    processes,
    refusing_port,
    wait_http,
)

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by scripts/bootstrap
FIREFOX = "/usr/bin/firefox-esr"  # Debian's, installed by scripts/bootstrap
PUPPETEER_DIR = Path(__file__).parents[2] / ".cache" / "puppeteer" / "node_modules"
RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil's second account
TIMEOUT_MS = 30_000  # generous: two cores shared with other test runs
expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class Dev:
    base: str
    admin_key: str
    read_key: str
    wallet_id: str
    restricted_key: str = ""

    def call(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback URL built by the test
            self.base + path, data=data, method=method
        )
        request.add_header("Authorization", f"Bearer {key or self.admin_key}")
        request.add_header("Content-Type", "application/json")
        request.add_header("Idempotency-Key", uuid.uuid4().hex)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            text = response.read()
            return json.loads(text) if text else None

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
    env = base_env(
        data_dir=str(folder / "data"),
        log_format="json",
        webhook_allow_private_urls="true",  # a receiver on loopback
        webhook_retry_schedule="1",  # a delivery fails for good after its second attempt
    )

    def cli(*args: str) -> str:
        done = subprocess.run(
            [CHAINFLOW, *args], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout.strip().splitlines()[-1]

    cli("db", "upgrade")
    admin_key = cli("apikey", "create", "--scopes", "admin", "--name", "ops")
    read_key = cli("apikey", "create", "--scopes", "read", "--name", "viewer")
    command = ["dev", "--anvil", "--port", "0", "--anvil-port", "0"]
    with processes([command], env, folder) as (process,):
        base = f"http://127.0.0.1:{listening_port(process)}"
        wait_http(f"{base}/healthz", process)
        probe = Dev(base, admin_key, read_key, wallet_id="")
        [wallet] = [w for w in probe.call("GET", "/v1/wallets")["items"] if w["chain_ids"]]
        restricted_key = cli("apikey", "create", "--scopes", "admin", "--wallet", wallet["id"])
        yield Dev(base, admin_key, read_key, wallet["id"], restricted_key)


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


# Ten minutes: whatever changes on screen during a test came by the event stream.
LONG_POLL = "sessionStorage.setItem('chainflow.pollMs', '600000')"
# One second: tests that wait for what only polling shows wait less.
FAST_POLL = "sessionStorage.setItem('chainflow.pollMs', '1000')"
STREAM = "**/v1/events/stream*"


def confirmed_count(page: Page) -> Any:
    return page.locator("a.count[href='#/transactions?status=confirmed'] .number")


class TestLiveUpdates:
    def test_changes_arrive_by_the_event_stream_without_a_reload(
        self, page: Page, dev: Dev, errors: Errors
    ) -> None:
        page.add_init_script(LONG_POLL)
        sign_in(page, dev, dev.admin_key)
        expect(page.locator("#page")).to_contain_text("live from the event stream")
        page.evaluate("window.notReloaded = true")
        confirmed = confirmed_count(page)
        before = int(confirmed.inner_text())
        dev.submit(1)
        expect(confirmed).to_have_text(str(before + 1))

        held = dev.submit_held()
        page.evaluate(f"window.location.hash = '#/transactions/{held}'")
        expect(page.locator("dd .badge").first).to_have_text("queued")
        dev.call("POST", f"/v1/transactions/{held}/cancel", {})
        expect(page.locator("dd .badge").first).to_have_text("cancelled")
        assert page.evaluate("window.notReloaded") is True
        assert errors.seen == []

    def test_after_a_drop_it_resumes_after_the_last_event_seen(
        self, page: Page, dev: Dev, errors: Errors
    ) -> None:
        page.add_init_script(LONG_POLL)
        streams: list[dict[str, str]] = []
        page.on(
            "request",
            lambda r: streams.append(r.all_headers()) if "/v1/events/stream" in r.url else None,
        )
        with Cutter(int(dev.base.rsplit(":", 1)[1])) as cutter:
            sign_in(page, dataclasses.replace(dev, base=cutter.base), dev.admin_key)
            expect(page.locator("#page")).to_contain_text("live from the event stream")
            confirmed = confirmed_count(page)
            before = int(confirmed.inner_text())
            dev.submit(1)
            expect(confirmed).to_have_text(str(before + 1))
            opened = len(streams)

            cutter.cut()
            expect(page.locator("#page")).to_contain_text("until the event stream is back")
            dev.submit(1)
            expect(page.locator("#page")).to_contain_text("live from the event stream")
            expect(confirmed).to_have_text(str(before + 2))
        [resumed] = streams[opened:]
        assert int(resumed["last-event-id"]) > 0
        # The one error is the browser's own line about the stream it lost.
        assert [e for e in errors.seen if "ERR_INCOMPLETE_CHUNKED_ENCODING" not in e] == []


class Cutter:
    """A TCP forwarder to the dev server whose open connections the test can cut: a dropped
    event stream, as a proxy or a flaky network would drop it."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> "Cutter":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._listener.close()
        self.cut()

    def cut(self) -> None:
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self._port))
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class TestFallback:
    def test_a_refused_stream_falls_back_to_polling_and_is_tried_again(
        self, page: Page, dev: Dev, errors: Errors
    ) -> None:
        problem = {"code": "too_many_streams", "title": "Too many streams", "status": 503}
        page.route(
            STREAM,
            lambda route: route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
                body=json.dumps(problem),
            ),
        )
        page.add_init_script(FAST_POLL)
        sign_in(page, dev, dev.admin_key)
        expect(page.locator("#page")).to_contain_text("polling every 1 s until the event stream")
        confirmed = confirmed_count(page)
        before = int(confirmed.inner_text())
        dev.submit(1)
        expect(confirmed).to_have_text(str(before + 1))  # by polling
        page.unroute(STREAM)
        expect(page.locator("#page")).to_contain_text("live from the event stream")
        assert [e for e in errors.seen if "503" not in e] == []


class TestDeliveriesAndSchedules:
    def test_a_failed_webhook_delivery_is_shown_and_retried(
        self, page: Page, dev: Dev, errors: Errors
    ) -> None:
        url = f"http://127.0.0.1:{refusing_port()}/hook"  # nothing listens: every attempt fails
        hook = dev.call("POST", "/v1/webhooks", {"url": url, "events": ["transaction.confirmed"]})
        try:
            [tx_id] = dev.submit(1)
            page.add_init_script(FAST_POLL)
            sign_in(page, dev, dev.admin_key)
            page.goto(f"{dev.base}/console#/transactions/{tx_id}")
            deliveries = page.locator("table", has_text="Each event of this transaction")
            expect(deliveries.locator(".badge")).to_have_text("failed")
            expect(deliveries.locator("tbody td").nth(3)).to_have_text("2")  # attempts
            page.get_by_role("button", name=re.compile("^Retry delivery")).click()
            expect(deliveries.locator("tbody td").nth(3)).to_have_text("3")
            [delivery] = dev.call("GET", f"/v1/transactions/{tx_id}/deliveries")["items"]
            assert len(delivery["attempts"]) == 3

            page.get_by_role("button", name="Forget key").click()
            sign_in(page, dev, dev.read_key)  # sees the deliveries, cannot retry them
            page.goto(f"{dev.base}/console#/transactions/{tx_id}")
            expect(deliveries.locator(".badge")).to_have_text("failed")
            assert page.locator("#page button").count() == 0
        finally:
            dev.call("DELETE", f"/v1/webhooks/{hook['id']}")
        assert errors.seen == []

    def test_a_schedule_s_runs_and_pause_resume_cancel(
        self, page: Page, dev: Dev, errors: Errors
    ) -> None:
        body = {
            "wallet": dev.wallet_id,
            "chain_id": 31337,
            "trigger": {"interval_s": 3600},
            "start_at": (datetime.now(UTC) + timedelta(seconds=2)).isoformat(),  # the 1st run
            "action": {"type": "transaction", "to": RECIPIENT, "value": "1"},
        }
        schedule = dev.call("POST", "/v1/schedules", body)
        short = schedule["id"][:8]
        page.add_init_script(FAST_POLL)
        sign_in(page, dev, dev.admin_key)
        nav(page, "Schedules")
        page.get_by_role("link", name=short).click()
        runs = page.locator("table", has_text="Runs, newest first")
        expect(runs.locator(".badge")).to_have_text("succeeded")
        [run] = dev.call("GET", f"/v1/schedules/{schedule['id']}/runs")["items"]
        expect(runs.get_by_role("link")).to_have_text(run["transaction_id"][:8])

        page.get_by_role("button", name=f"Pause schedule {short}").click()
        page.get_by_role("dialog").get_by_role("button", name="Pause").click()
        expect(page.get_by_role("button", name=f"Resume schedule {short}")).to_be_visible()
        assert dev.call("GET", f"/v1/schedules/{schedule['id']}")["status"] == "paused"
        page.get_by_role("button", name=f"Cancel schedule {short}").click()
        page.get_by_role("dialog").get_by_role("button", name="Cancel schedule").click()
        expect(page.locator("dd .badge").first).to_have_text("cancelled")
        assert dev.call("GET", f"/v1/schedules/{schedule['id']}")["status"] == "cancelled"
        assert page.locator("#page button").count() == 0
        assert errors.seen == []


class TestPagesAndLimits:
    def test_lanes_and_wallets_beyond_one_page(self, page: Page, dev: Dev, errors: Errors) -> None:
        """The console asks for the API's largest page (500); the browser rewrites that to 1
        here, so two wallets span two pages."""
        dev.call("POST", "/v1/wallets", {"generate": True, "label": "second", "chain_ids": [31337]})

        def one_per_page(route: Any) -> None:
            route.continue_(url=route.request.url.replace("limit=500", "limit=1"))

        page.route(re.compile(r"/v1/(lanes|wallets)\?"), one_per_page)
        sign_in(page, dev, dev.admin_key)
        lanes = page.locator("table", has_text="Lanes: one per wallet")
        expect(lanes.locator("tbody tr")).to_have_count(1)
        page.get_by_role("button", name="Show 500 more lanes").click()
        expect(lanes.locator("tbody tr")).to_have_count(2)
        expect(page.get_by_role("button", name="Show 500 more lanes")).to_have_count(0)

        nav(page, "Wallets")
        wallets = page.locator("table", has_text="Balance per chain")
        expect(wallets.locator("tbody > tr")).to_have_count(1)
        page.get_by_role("button", name="Show 500 more wallets").click()
        expect(wallets.locator("tbody > tr")).to_have_count(2)
        expect(wallets).to_contain_text("second")
        assert errors.seen == []

    def test_a_restricted_key_gets_a_clear_message_and_what_it_may_read(
        self, page: Page, dev: Dev, errors: Errors
    ) -> None:
        sign_in(page, dev, dev.restricted_key)
        expect(page.locator("#whoami")).to_contain_text("restricted")
        expect(page.get_by_role("note")).to_contain_text("restricted to 1 wallet(s)")
        lanes = page.locator("table", has_text="Lanes: one per wallet")
        expect(lanes).to_contain_text("anvil dev wallet")
        expect(page.locator("table", has_text="Enabled chains")).to_contain_text("Anvil (local)")
        expect(page.locator("#page")).to_contain_text("refreshes every 5 s")
        nav(page, "Wallets")
        expect(page.locator("table", has_text="anvil dev wallet")).to_contain_text("ETH")
        nav(page, "Webhooks")
        expect(page.locator("main")).to_contain_text("restricted to some wallets or chains")
        nav(page, "Schedules")
        expect(page.locator("main")).to_contain_text("restricted to some wallets or chains")
        nav(page, "Transactions")
        expect(page.locator("table", has_text="newest first")).to_be_visible()
        assert errors.seen == []


class TestFirefox:
    def test_signs_in_and_the_overview_goes_live_without_errors(
        self, dev: Dev, tmp_path: Path
    ) -> None:
        """Playwright's Firefox is a patched build it downloads (never used here); Debian's
        firefox-esr is driven over WebDriver BiDi by puppeteer-core instead."""
        env = os.environ | {
            "PUPPETEER_DIR": str(PUPPETEER_DIR),
            "FIREFOX": FIREFOX,
            "TMPDIR": str(tmp_path),  # the throw-away Firefox profile
        }
        script = Path(__file__).with_name("console_firefox.mjs")
        done = subprocess.run(
            ["node", str(script), dev.base, dev.admin_key],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("ok: firefox/"), done.stdout
