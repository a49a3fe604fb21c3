"""Metrics of the distributed shape (issue 18): a short load through a real API and two real
workers on PostgreSQL, Redis and anvil, with a webhook receiver that refuses each event's first
attempt, then a scrape of all three processes."""

import re
import subprocess
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.anvil import run_anvil
from tests.chaos.cluster import Cluster, open_cluster
from tests.support.databases import REDIS_URL
from tests.support.deploy import metrics_used
from tests.support.polling import eventually
from tests.support.processes import serving_on_free_port
from tests.support.receiver import Received, Receiver, receiver
from tests.support.rpc_proxy import Fault, serve_proxy

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.parametrize("dialect", ["postgresql"], indirect=True),
]

PER_WALLET = 15  # per active wallet and wave
PAUSED_QUEUED = 3
METRICS_TOKEN = "metrics-secret-token-123"

# Every metric of README "Operating Chainflow".
NAMES = (
    "chainflow_tx_transitions",
    "chainflow_tx_stage_seconds",
    "chainflow_tx_fee_bumps",
    "chainflow_tx_reorgs",
    "chainflow_tx_errors",
    "chainflow_lane_queued",
    "chainflow_lane_in_flight",
    "chainflow_lane_oldest_pending_seconds",
    "chainflow_lanes_paused",
    "chainflow_lane_nonce_lag",
    "chainflow_wallet_balance_wei",
    "chainflow_rpc_requests",
    "chainflow_rpc_request_seconds",
    "chainflow_rpc_endpoint_healthy",
    "chainflow_chain_head_block",
    "chainflow_chain_head_age_seconds",
    "chainflow_db_pool_in_use",
    "chainflow_queue_jobs",
    "chainflow_signer_seconds",
    "chainflow_api_requests",
    "chainflow_api_request_seconds",
    "chainflow_api_overloaded",
    "chainflow_outbox_lag_seconds",
    "chainflow_webhook_deliveries",
    "chainflow_webhook_attempt_errors",
    "chainflow_webhook_attempt_seconds",
    "chainflow_webhook_delivery_lag_seconds",
    "chainflow_webhook_endpoints_disabled",
    "chainflow_webhook_backlog",
    "chainflow_webhook_oldest_pending_seconds",
    "chainflow_webhook_endpoint_enabled",
)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Scrape:
    """One process's /metrics answer, parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [
            Sample(s.name, dict(s.labels), s.value)
            for f in self.families.values()
            for s in f.samples
        ]

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.matching(name, **labels))

    def matching(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]


def total(scrapes: Iterable[Scrape], name: str, **labels: str) -> float:
    return sum(scrape.total(name, **labels) for scrape in scrapes)


async def scrape(url: str, token: str | None = None) -> Scrape:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        return Scrape(await response.text())


@pytest.fixture
async def anvil() -> AsyncIterator[str]:
    async with run_anvil() as url:
        yield url


@dataclass
class Run:
    cluster: Cluster
    api: Scrape
    workers: list[Scrape]
    paused_wallet: str
    proxy_endpoint: str
    oldest_before: float
    hook: Receiver
    webhook_id: str
    events: int


async def _pause(cluster: Cluster, address: str) -> None:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.patch(f"{cluster.api_url}/v1/wallets/{address}", json={"status": "paused"}) as r,
    ):
        assert r.status == 200, await r.text()


async def _confirmed_at_least(cluster: Cluster, count: int) -> None:
    async def enough() -> bool:
        return await cluster.count(TxStatus.CONFIRMED) >= count

    await eventually(enough, timeout_s=90, interval_s=0.2)


def first_try_fails(_request: Received, seen: int) -> tuple[int, dict[str, str]]:
    return (500, {}) if seen == 0 else (200, {})


async def _subscribe(cluster: Cluster, url: str) -> str:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    body = {"url": url, "events": ["transaction.*"]}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"{cluster.api_url}/v1/webhooks", json=body) as r,
    ):
        assert r.status == 201, await r.text()
        webhook_id: str = (await r.json())["id"]
        return webhook_id


async def _event_count(cluster: Cluster) -> int:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    count, after = 0, 0
    async with aiohttp.ClientSession(headers=headers) as http:
        while True:
            url = f"{cluster.api_url}/v1/events?after={after}&limit=500"
            async with http.get(url) as r:
                page = await r.json()
            count += len(page["items"])
            if not page["next_cursor"]:
                return count
            after = int(page["next_cursor"])


async def _all_delivered(cluster: Cluster, hook: Receiver, *, at_least: int) -> int:
    """Wait until there are `at_least` events (the outbox's sequencer numbers them up to
    0.25 s after the change that wrote them: the API lists only numbered ones) and the
    receiver accepted every one (all are transaction.*); their number."""

    async def done() -> int | None:
        events = await _event_count(cluster)
        accepted = len({r.msg_id for r in hook.accepted()})
        return events if events >= at_least and accepted == events else None

    return await eventually(done, timeout_s=60, interval_s=0.5)


def _start_worker_with_metrics(cluster: Cluster) -> int:
    """A worker serving its metrics on a port of its own; its port: one picked free, and a new
    one while another process took it first (the worker cannot bind port 0 and report it, and
    without the port it runs on without metrics). A worker that lost its port is stopped."""

    def start(port: int) -> subprocess.Popen[bytes]:
        return cluster.start("worker", "--metrics-port", str(port)).popen

    def stop(popen: subprocess.Popen[bytes]) -> None:
        (proc,) = [p for p in cluster.procs if p.popen is popen]
        proc.killed = True  # stopped by us: its exit code is not the cluster's concern
        popen.terminate()
        popen.wait(timeout=60)

    _, port = serving_on_free_port(start, lambda port: f"http://127.0.0.1:{port}/metrics", stop)
    return port


@pytest.fixture
async def run(database_url: str, anvil: str, tmp_path: Path) -> AsyncIterator[Run]:
    async with (
        aiohttp.ClientSession() as http,
        receiver(first_try_fails) as hook,
        serve_proxy(anvil, http) as proxy,
        open_cluster(
            tmp_path,
            database_url,
            anvil,
            wallets=3,
            workers=0,
            rpc_urls=[proxy.url, anvil],  # the proxy is preferred while it answers
            redis_url=REDIS_URL,
            metrics_token=METRICS_TOKEN,
            metrics_cache_s="0.5",
            rpc_timeout_s="2",
            webhook_allow_private_urls="true",  # the receiver is on loopback
            webhook_retry_schedule="0.2,0.2,0.2,0.2,0.2",
        ) as cluster,
    ):
        webhook_id = await _subscribe(cluster, hook.url)
        active, paused = cluster.wallets[:2], cluster.wallets[2]
        # Queued before any worker runs, then paused: its lane keeps its work.
        await cluster.submit(PAUSED_QUEUED, wallets=[paused])
        await _pause(cluster, paused.address)
        ports = [_start_worker_with_metrics(cluster) for _ in range(2)]
        await cluster.submit(PER_WALLET, wallets=active)
        await _confirmed_at_least(cluster, 2 * PER_WALLET)
        api_url = f"{cluster.api_url}/metrics"
        before = await scrape(api_url, METRICS_TOKEN)
        oldest = before.total("chainflow_lane_oldest_pending_seconds", wallet=paused.address)
        proxy.fault = Fault.DROP  # the preferred endpoint stops answering mid-run
        await cluster.submit(PER_WALLET, wallets=active)
        await _confirmed_at_least(cluster, 4 * PER_WALLET)
        # At least queued, signed, mined, confirmed per transaction (submitted is skipped when
        # a receipt is seen before the send was recorded), and the paused wallet's queued ones.
        events = await _all_delivered(cluster, hook, at_least=4 * (4 * PER_WALLET) + PAUSED_QUEUED)

        async def read_workers() -> list[Scrape] | None:
            found = [await scrape(f"http://127.0.0.1:{p}/metrics") for p in ports]
            # The tracker's holder reads the head every 5 s: a short run can end before the
            # first reading after its blocks (seen 1 run in 3 on a busy machine).
            heads = [s.total("chainflow_chain_head_block") for s in found]
            # A delivery is counted once its outcome is recorded, a moment after the answer.
            delivered = total(found, "chainflow_webhook_deliveries_total", outcome="delivered")
            return found if any(head > 0 for head in heads) and delivered >= events else None

        worker_scrapes = await eventually(read_workers, timeout_s=30, interval_s=0.5)

        async def read_api() -> Scrape | None:
            # The API reads backlogs every 0.5 s: wait for the one after the last delivery.
            found = await scrape(api_url, METRICS_TOKEN)
            backlog = found.matching("chainflow_webhook_backlog", webhook_id=webhook_id)
            return found if backlog and backlog[0].value == 0 else None

        yield Run(
            cluster,
            await eventually(read_api, timeout_s=30, interval_s=0.5),
            worker_scrapes,
            paused.address,
            proxy.url.split("//", 1)[1].split("/", 1)[0],
            oldest,
            hook,
            webhook_id,
            events,
        )


async def test_a_short_load_shows_in_every_scrape(run: Run) -> None:
    """One cluster run (~30 s) serves the three checks of issue 18's "Done when"."""
    _check_values(run)
    _check_deploy_queries(run)
    _check_no_secret(run)
    await _check_token(run)


def _check_deploy_queries(run: Run) -> None:
    """Every metric the alert rules and the dashboard query is in the scrapes."""
    scraped = {name for s in [run.api, *run.workers] for name in s.families}
    assert metrics_used() - scraped == set()


def _check_values(run: Run) -> None:
    everything = [run.api, *run.workers]
    for name in NAMES:
        assert all(name in s.families for s in everything), name
    sent = 4 * PER_WALLET
    created = sent + PAUSED_QUEUED
    # Counters match what was sent: created by the API, moved by the workers.
    assert run.api.total("chainflow_tx_transitions_total", to="queued") == created
    assert total(run.workers, "chainflow_tx_transitions_total", to="confirmed") == sent
    assert total(run.workers, "chainflow_tx_transitions_total", to="signed") >= sent
    assert total(run.workers, "chainflow_signer_seconds_count", backend="local") >= sent
    assert total(run.workers, "chainflow_tx_stage_seconds_count", stage="request_final") == sent
    # A request seen mined before its send was recorded has no submitted time: not observed.
    assert total(run.workers, "chainflow_tx_stage_seconds_count", stage="submitted_mined") > 0
    assert total(run.workers, "chainflow_tx_stage_seconds_count", stage="submitted_mined") <= sent
    assert total(run.workers, "chainflow_tx_stage_seconds_count", stage="mined_confirmed") > 0
    posted = run.api.total(
        "chainflow_api_requests_total", route="/v1/transactions", method="POST", status="202"
    )
    assert posted == created
    assert run.api.total("chainflow_api_overloaded_total") == 0
    # The paused lane: its work queued, its oldest request older at every scrape.
    assert run.api.total("chainflow_lane_queued", wallet=run.paused_wallet) == PAUSED_QUEUED
    later = run.api.total("chainflow_lane_oldest_pending_seconds", wallet=run.paused_wallet)
    assert later > run.oldest_before > 0
    assert run.api.total("chainflow_lane_queued") == PAUSED_QUEUED  # the others drained
    assert run.api.matching("chainflow_queue_jobs", state="waiting")
    # The worker holding the chain's tracker reads the head and every lane.
    holders = [s for s in run.workers if s.matching("chainflow_chain_head_block")]
    assert len(holders) == 1
    assert holders[0].total("chainflow_chain_head_block") > 0
    assert 0 <= holders[0].total("chainflow_chain_head_age_seconds") < 60
    assert len(holders[0].matching("chainflow_wallet_balance_wei")) == 3
    assert holders[0].total("chainflow_wallet_balance_wei", wallet=run.paused_wallet) > 0
    assert len(holders[0].matching("chainflow_lane_nonce_lag")) == 3
    # The stopped endpoint is unhealthy where it was used; the other one carried the load.
    down = [
        s.matching("chainflow_rpc_endpoint_healthy", endpoint=run.proxy_endpoint)
        for s in run.workers
    ]
    assert any(samples and samples[0].value == 0 for samples in down)
    failed = total(
        run.workers,
        "chainflow_rpc_requests_total",
        endpoint=run.proxy_endpoint,
        outcome="transport",
    )
    assert failed > 0
    assert all(s.matching("chainflow_db_pool_in_use", pool="engine") for s in run.workers)
    assert run.api.matching("chainflow_db_pool_in_use", pool="api")
    _check_webhooks(run)


def _check_webhooks(run: Run) -> None:
    """Every event was refused once, then delivered: the workers counted exactly that."""
    events = run.events
    # At least queued, signed, mined, confirmed per transaction (submitted is skipped when a
    # receipt is seen before the send was recorded), and the paused wallet's queued ones.
    assert events >= 4 * (4 * PER_WALLET) + PAUSED_QUEUED
    deliveries = "chainflow_webhook_deliveries_total"
    assert total(run.workers, deliveries, outcome="delivered") == events
    assert total(run.workers, deliveries, outcome="retry") == events
    assert total(run.workers, deliveries, outcome="gave_up") == 0
    assert total(run.workers, "chainflow_webhook_attempt_errors_total", error="non_2xx") == events
    assert total(run.workers, "chainflow_webhook_attempt_seconds_count") == 2 * events
    assert total(run.workers, "chainflow_webhook_delivery_lag_seconds_count") == events
    assert total(run.workers, "chainflow_outbox_lag_seconds_count") == events  # each once
    # The API reads the backlog from the database: drained, enabled, nothing waiting.
    hook = {"webhook_id": run.webhook_id}
    assert run.api.total("chainflow_webhook_endpoint_enabled", **hook) == 1
    assert run.api.matching("chainflow_webhook_oldest_pending_seconds", **hook)[0].value == 0
    assert len({r.msg_id for r in run.hook.received}) == events


def _check_no_secret(run: Run) -> None:
    text = "\n".join(s.text for s in [run.api, *run.workers])
    assert run.cluster.token not in text
    assert METRICS_TOKEN not in text
    for wallet in run.cluster.wallets:
        assert wallet.private_key.hex() not in text.lower()
    assert run.cluster.env["CHAINFLOW_MASTER_KEY"] not in text
    assert run.cluster.database_url.split("@")[-1] not in text
    assert "query-secret" not in text  # the webhook URL's query: no URL is a label
    # No URL at all, so no RPC URL with a path or a key: endpoints are host:port labels.
    assert not re.search(r"https?://", text)
    for sample in (s for scrape in [run.api, *run.workers] for s in scrape.samples):
        for name, value in sample.labels.items():
            assert "/" not in value or name == "route", (sample.name, name, value)


async def _check_token(run: Run) -> None:
    url = f"{run.cluster.api_url}/metrics"
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with http.get(url, headers=headers) as response:
                assert response.status == 401
                assert (await response.json())["code"] == "invalid_metrics_token"
