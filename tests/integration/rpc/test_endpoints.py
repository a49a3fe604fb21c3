"""EndpointPool against a real anvil behind fault-injecting proxies, on a fake clock."""

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import structlog

from chainflow.core.types import SecretBytes
from chainflow.core.urls import redact_url
from chainflow.domain.transactions.node import nonce_counts
from chainflow.domain.transactions.readings import read_head
from chainflow.infra.anvil import DEV_PRIVATE_KEY_HEX, run_anvil
from chainflow.infra.net.urlguard import UrlGuard
from chainflow.infra.rpc.answers import quantity
from chainflow.infra.rpc.client import (
    RpcCallError,
    RpcClient,
    RpcTransportError,
    new_http_session,
)
from chainflow.infra.rpc.endpoints import (
    BreakerSettings,
    EndpointPool,
    EndpointState,
    NoHealthyEndpoint,
)
from chainflow.infra.rpc.errors import RpcErrorKind, RpcFailure, classify
from chainflow.infra.signing.local import LocalSigner
from chainflow.infra.signing.signer import SignedTx
from tests.support.polling import eventually
from tests.support.processes import refusing_port
from tests.support.rpc_proxy import Fault, RpcProxy, serve_proxy

ANVIL_CHAIN_ID = 31337
ANVIL_CHAIN_ID_HEX = hex(ANVIL_CHAIN_ID)
FAILURES_TO_OPEN = 2
OPEN_S = 30.0
REVERTING_INIT_CODE = "0x60006000fd"  # PUSH1 0 PUSH1 0 REVERT: eth_call without `to` runs it
GARBAGE_RAW_TX = "0xdeadbeef"
ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's first funded account


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now_s = 1_000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture(scope="module")
async def node_url() -> AsyncIterator[str]:
    async with run_anvil() as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_http_session(guard=UrlGuard(allow_private=True)) as session:
        yield session


@pytest.fixture
async def first(node_url: str, http: aiohttp.ClientSession) -> AsyncIterator[RpcProxy]:
    async with serve_proxy(node_url, http, path="/v3/first-secret-key") as proxy:
        yield proxy


@pytest.fixture
async def second(node_url: str, http: aiohttp.ClientSession) -> AsyncIterator[RpcProxy]:
    async with serve_proxy(node_url, http, path="/v3/second-secret-key") as proxy:
        yield proxy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_pool(
    http: aiohttp.ClientSession,
    urls: list[str],
    clock: FakeClock,
    *,
    chain_id: int = ANVIL_CHAIN_ID,
    timeout_s: float = 5.0,
) -> EndpointPool:
    breaker = BreakerSettings(failures_to_open=FAILURES_TO_OPEN, open_s=OPEN_S)
    return EndpointPool(
        http, chain_id=chain_id, urls=urls, timeout_s=timeout_s, breaker=breaker, clock=clock
    )


@pytest.fixture
def pool(
    http: aiohttp.ClientSession, first: RpcProxy, second: RpcProxy, clock: FakeClock
) -> EndpointPool:
    return make_pool(http, [first.url, second.url], clock)


def dead_url() -> str:
    return f"http://127.0.0.1:{refusing_port()}/nothing-listens-here"


async def warm_up(pool: EndpointPool) -> None:
    """Verify the first endpoint's chain, so that later faults hit real calls, not the probe."""
    assert await pool.call("eth_chainId") == ANVIL_CHAIN_ID_HEX


async def open_first_breaker(pool: EndpointPool, first: RpcProxy) -> None:
    await warm_up(pool)
    first.fault = Fault.HTTP_502
    for _ in range(FAILURES_TO_OPEN):
        await pool.call("eth_blockNumber")
    assert pool.health()[0].state is EndpointState.OPEN


@pytest.fixture
async def signed(pool: EndpointPool, http: aiohttp.ClientSession, node_url: str) -> SignedTx:
    """A transfer signed for the node, once the pool has verified its first endpoint."""
    await warm_up(pool)
    return await signed_transfer(http, node_url)


async def signed_transfer(http: aiohttp.ClientSession, node_url: str) -> SignedTx:
    signer = LocalSigner(SecretBytes(bytes.fromhex(DEV_PRIVATE_KEY_HEX)))
    node = RpcClient(http, node_url)
    nonce = int(await node.call("eth_getTransactionCount", [signer.address, "pending"]), 16)
    tx: dict[str, object] = {
        "type": 2,
        "chainId": ANVIL_CHAIN_ID,
        "nonce": nonce,
        "to": "0x000000000000000000000000000000000000dEaD",
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": 10_000_000_000,
        "maxPriorityFeePerGas": 1_000_000_000,
        "data": b"",
    }
    return await signer.sign_transaction(tx)


def kind_of(error: RpcCallError) -> RpcErrorKind:
    return classify(RpcFailure(message=error.message, code=error.rpc_code, data=error.data))


class TestRouting:
    async def test_uses_the_first_endpoint_while_it_is_healthy(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy
    ) -> None:
        await pool.call("eth_blockNumber")
        await pool.call("eth_blockNumber")
        assert first.received == ["eth_chainId", "eth_blockNumber", "eth_blockNumber"]
        assert second.received == []

    async def test_concurrent_first_calls_verify_the_chain_once(
        self, pool: EndpointPool, first: RpcProxy
    ) -> None:
        await asyncio.gather(*(pool.call("eth_blockNumber") for _ in range(10)))
        assert first.received == ["eth_chainId"] + ["eth_blockNumber"] * 10


class TestFailover:
    async def test_fails_over_when_the_first_endpoint_refuses_connections(
        self, http: aiohttp.ClientSession, second: RpcProxy, clock: FakeClock
    ) -> None:
        pool = make_pool(http, [dead_url(), second.url], clock)
        assert await pool.call("eth_chainId") == ANVIL_CHAIN_ID_HEX
        assert second.forwarded == ["eth_chainId", "eth_chainId"]
        dead = pool.health()[0]
        assert (dead.consecutive_failures, dead.last_error_kind) == (1, RpcErrorKind.TRANSPORT)

    @pytest.mark.parametrize(
        "fault",
        [Fault.DROP, Fault.HTTP_500, Fault.HTTP_502, Fault.DELAY, Fault.LOSE_RESPONSE],
    )
    async def test_fails_a_read_over_on_an_endpoint_failure(
        self,
        http: aiohttp.ClientSession,
        first: RpcProxy,
        second: RpcProxy,
        clock: FakeClock,
        fault: Fault,
    ) -> None:
        # 2 s, not less: on a loaded CI machine the warm-up's own answer could time out,
        # and the read under test would then skip the first endpoint (seen once at 0.3 s).
        pool = make_pool(http, [first.url, second.url], clock, timeout_s=2.0)
        await warm_up(pool)
        first.fault = fault
        block = await pool.call("eth_blockNumber")
        assert int(block, 16) >= 0
        assert first.received[-1] == "eth_blockNumber"
        assert second.forwarded == ["eth_chainId", "eth_blockNumber"]
        assert pool.health()[0].consecutive_failures == 1


class TestBreaker:
    async def test_opens_after_consecutive_failures_and_skips_the_endpoint(
        self, pool: EndpointPool, first: RpcProxy, clock: FakeClock
    ) -> None:
        await open_first_breaker(pool, first)
        seen = len(first.received)
        clock.advance(OPEN_S - 0.1)
        await pool.call("eth_blockNumber")
        assert len(first.received) == seen
        health = pool.health()[0]
        assert (health.state, health.consecutive_failures) == (EndpointState.OPEN, 2)
        assert not health.is_usable

    async def test_half_open_probe_closes_the_breaker_of_a_recovered_endpoint(
        self, pool: EndpointPool, first: RpcProxy, clock: FakeClock
    ) -> None:
        await open_first_breaker(pool, first)
        clock.advance(OPEN_S)
        assert pool.health()[0].state is EndpointState.HALF_OPEN
        first.fault = Fault.NONE
        await pool.call("eth_blockNumber")
        assert first.received[-2:] == ["eth_chainId", "eth_blockNumber"]
        health = pool.health()[0]
        assert (health.state, health.consecutive_failures) == (EndpointState.CLOSED, 0)

    async def test_failed_half_open_probe_reopens_the_breaker(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy, clock: FakeClock
    ) -> None:
        await open_first_breaker(pool, first)
        clock.advance(OPEN_S)
        seen = len(first.received)
        await pool.call("eth_blockNumber")
        assert first.received[seen:] == ["eth_chainId"]  # the probe, and nothing else
        assert second.forwarded[-1] == "eth_blockNumber"
        clock.advance(OPEN_S - 0.1)
        assert pool.health()[0].state is EndpointState.OPEN

    async def test_a_success_resets_the_failure_count(
        self, pool: EndpointPool, first: RpcProxy
    ) -> None:
        await warm_up(pool)
        for fault in (Fault.HTTP_500, Fault.NONE, Fault.HTTP_500):
            first.fault = fault
            await pool.call("eth_blockNumber")
        health = pool.health()[0]
        assert (health.state, health.consecutive_failures) == (EndpointState.CLOSED, 1)


class TestRateLimit:
    async def test_429_backs_off_for_retry_after_without_opening_the_breaker(
        self, pool: EndpointPool, first: RpcProxy, clock: FakeClock
    ) -> None:
        await warm_up(pool)
        first.fault, first.retry_after_s = Fault.HTTP_429, 5
        await pool.call("eth_blockNumber")
        health = pool.health()[0]
        assert (health.state, health.consecutive_failures) == (EndpointState.CLOSED, 0)
        assert (health.last_error_kind, health.rate_limited_for_s) == (RpcErrorKind.RATE_LIMITED, 5)
        first.fault = Fault.NONE
        seen = len(first.received)
        clock.advance(4.9)
        await pool.call("eth_blockNumber")
        assert len(first.received) == seen
        clock.advance(0.1)
        await pool.call("eth_blockNumber")
        assert first.received[seen:] == ["eth_blockNumber"]

    async def test_429_without_retry_after_backs_off_exponentially(
        self, pool: EndpointPool, first: RpcProxy, clock: FakeClock
    ) -> None:
        await warm_up(pool)
        first.fault = Fault.HTTP_429
        backoffs_s: list[float] = []
        for _ in range(3):
            await pool.call("eth_blockNumber")
            backoffs_s.append(pool.health()[0].rate_limited_for_s)
            clock.advance(backoffs_s[-1])
        assert backoffs_s == [1.0, 2.0, 4.0]


class TestChainVerification:
    async def test_an_endpoint_on_the_wrong_chain_is_never_used(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy
    ) -> None:
        first.fault = Fault.WRONG_CHAIN
        with structlog.testing.capture_logs() as logs:
            await pool.call("eth_blockNumber")
            await pool.call("eth_blockNumber")
        assert first.received == ["eth_chainId"]
        assert second.forwarded == ["eth_chainId", "eth_blockNumber", "eth_blockNumber"]
        health = pool.health()[0]
        assert health.is_wrong_chain
        assert not health.is_usable
        disabled = [entry for entry in logs if entry["event"] == "rpc_endpoint.disabled"]
        assert [(e["url"], e["reason"]) for e in disabled] == [
            (redact_url(first.url), "wrong_chain")
        ]
        assert "secret-key" not in repr(logs)

    async def test_a_pool_for_another_chain_raises_no_healthy_endpoint(
        self, http: aiohttp.ClientSession, first: RpcProxy, second: RpcProxy, clock: FakeClock
    ) -> None:
        pool = make_pool(http, [first.url, second.url], clock, chain_id=1)
        with pytest.raises(NoHealthyEndpoint) as caught:
            await pool.call("eth_blockNumber")
        assert caught.value.is_unsent
        assert (first.received, second.received) == (["eth_chainId"], ["eth_chainId"])
        assert all(health.is_wrong_chain for health in pool.health())


class TestAllDown:
    async def test_raises_no_healthy_endpoint_when_every_endpoint_fails(
        self, http: aiohttp.ClientSession, first: RpcProxy, clock: FakeClock
    ) -> None:
        pool = make_pool(http, [dead_url(), first.url], clock)
        first.fault = Fault.HTTP_502
        with pytest.raises(NoHealthyEndpoint) as caught:
            await pool.call("eth_blockNumber")
        assert caught.value.is_unsent  # only chain id probes went out

    async def test_raises_without_touching_the_network_once_every_breaker_is_open(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy
    ) -> None:
        first.fault = second.fault = Fault.DROP
        for _ in range(FAILURES_TO_OPEN):
            with pytest.raises(NoHealthyEndpoint):
                await pool.call("eth_blockNumber")
        assert {health.state for health in pool.health()} == {EndpointState.OPEN}
        first.fault = second.fault = Fault.DELAY  # any request would now hang for 30 s
        seen = (len(first.received), len(second.received))
        async with asyncio.timeout(1):
            with pytest.raises(NoHealthyEndpoint):
                await pool.call("eth_blockNumber")
        assert (len(first.received), len(second.received)) == seen


class TestNodeErrors:
    async def test_a_revert_is_the_nodes_answer_and_is_not_failed_over(
        self, pool: EndpointPool, second: RpcProxy
    ) -> None:
        with pytest.raises(RpcCallError) as caught:
            await pool.call("eth_call", [{"data": REVERTING_INIT_CODE}, "latest"])
        assert kind_of(caught.value) is RpcErrorKind.EXECUTION_REVERTED
        assert second.received == []
        health = pool.health()[0]
        assert (health.state, health.consecutive_failures) == (EndpointState.CLOSED, 0)

    async def test_a_garbage_raw_transaction_is_rejected_without_failover(
        self, pool: EndpointPool, second: RpcProxy
    ) -> None:
        with pytest.raises(RpcCallError):
            await pool.call("eth_sendRawTransaction", [GARBAGE_RAW_TX], retry_on_failover=True)
        assert second.received == []
        assert pool.health()[0].consecutive_failures == 0


class TestSends:
    @pytest.mark.parametrize("fault", [Fault.LOSE_RESPONSE, Fault.CORRUPT])
    async def test_a_send_whose_answer_was_lost_or_malformed_is_not_resent_elsewhere(
        self,
        pool: EndpointPool,
        first: RpcProxy,
        second: RpcProxy,
        signed: SignedTx,
        http: aiohttp.ClientSession,
        node_url: str,
        fault: Fault,
    ) -> None:
        first.fault = fault
        first.corrupt = {"eth_sendRawTransaction": lambda tx_hash: tx_hash[:-2]}  # CORRUPT's
        with pytest.raises(RpcTransportError) as caught:
            await pool.call("eth_sendRawTransaction", ["0x" + signed.raw.hex()])
        assert not isinstance(caught.value, NoHealthyEndpoint)
        assert not caught.value.is_unsent
        assert second.received == []
        # "Maybe sent" was right: the node executed it.
        node = RpcClient(http, node_url)
        assert await node.call("eth_getTransactionByHash", [signed.hash]) is not None

    async def test_a_send_is_resent_elsewhere_when_the_caller_opts_in(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy, signed: SignedTx
    ) -> None:
        first.fault = Fault.LOSE_RESPONSE
        raw = "0x" + signed.raw.hex()
        # Why sends are not resent by default: the copy meets the effect of the lost first one.
        with pytest.raises(RpcCallError) as caught:
            await pool.call("eth_sendRawTransaction", [raw], retry_on_failover=True)
        assert kind_of(caught.value) in {RpcErrorKind.NONCE_TOO_LOW, RpcErrorKind.ALREADY_KNOWN}
        assert second.forwarded[-1] == "eth_sendRawTransaction"

    async def test_a_send_fails_over_when_it_certainly_never_left(
        self,
        http: aiohttp.ClientSession,
        second: RpcProxy,
        clock: FakeClock,
        node_url: str,
    ) -> None:
        async with serve_proxy(node_url, http) as going_down:
            pool = make_pool(http, [going_down.url, second.url], clock)
            await warm_up(pool)
        # The first endpoint is verified and now refuses connections.
        signed = await signed_transfer(http, node_url)
        tx_hash = await pool.call("eth_sendRawTransaction", ["0x" + signed.raw.hex()])
        assert tx_hash == signed.hash
        assert second.forwarded == ["eth_chainId", "eth_sendRawTransaction"]
        assert pool.health()[0].consecutive_failures == 1

    async def test_a_rate_limited_send_fails_over(
        self, pool: EndpointPool, first: RpcProxy, signed: SignedTx
    ) -> None:
        first.fault = Fault.HTTP_429
        tx_hash = await pool.call("eth_sendRawTransaction", ["0x" + signed.raw.hex()])
        assert tx_hash == signed.hash
        assert "eth_sendRawTransaction" not in first.forwarded

    async def test_a_batch_of_sends_is_not_resent_after_a_lost_answer(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy
    ) -> None:
        await warm_up(pool)
        first.fault = Fault.LOSE_RESPONSE
        with pytest.raises(RpcTransportError) as caught:
            await pool.batch([("eth_sendRawTransaction", [GARBAGE_RAW_TX])])
        assert not caught.value.is_unsent
        assert second.received == []


class TestBatch:
    async def test_a_batch_fails_over_as_a_whole(
        self, http: aiohttp.ClientSession, second: RpcProxy, clock: FakeClock
    ) -> None:
        pool = make_pool(http, [dead_url(), second.url], clock)
        address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's first funded account
        answers = await pool.batch(
            [("eth_chainId", []), ("eth_getBalance", [address, "latest"]), ("eth_blockNumber", [])]
        )
        assert answers[0] == ANVIL_CHAIN_ID_HEX
        assert int(answers[1], 16) > 0
        assert int(answers[2], 16) >= 0
        assert second.forwarded[1:] == ["eth_chainId", "eth_getBalance", "eth_blockNumber"]

    async def test_entry_errors_are_answers_not_failures(
        self, pool: EndpointPool, second: RpcProxy
    ) -> None:
        answers = await pool.batch(
            [("eth_chainId", []), ("eth_sendRawTransaction", [GARBAGE_RAW_TX])]
        )
        assert answers[0] == ANVIL_CHAIN_ID_HEX
        assert isinstance(answers[1], RpcCallError)
        assert second.received == []
        assert pool.health()[0].consecutive_failures == 0

    async def test_an_empty_batch_sends_nothing(self, pool: EndpointPool, first: RpcProxy) -> None:
        assert await pool.batch([]) == []
        assert first.received == []


class TestHealth:
    async def test_reports_every_endpoint_in_order_with_its_url_redacted(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy
    ) -> None:
        before = pool.health()
        await pool.call("eth_blockNumber")
        after = pool.health()
        assert [h.url for h in after] == [redact_url(first.url), redact_url(second.url)]
        assert all(h.url.endswith("/***") for h in after)
        assert [h.is_verified for h in before] == [False, False]
        assert [h.is_verified for h in after] == [True, False]
        assert all(h.state is EndpointState.CLOSED and h.is_usable for h in after)


# "²" (U+00B2): str.isdigit() says True, int() raises ValueError (the audit's reproduction).
SUPERSCRIPT_TWO = "\u00b2"


class TestUnreadableRetryAfter:
    """An answer with a Retry-After no one can read is still the endpoint's failure: the pool
    fails over and its breaker counts it, as for the same answer without the header."""

    async def test_a_rate_limited_send_fails_over_and_confirms(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy, signed: SignedTx
    ) -> None:
        first.fault, first.retry_after_s = Fault.HTTP_429, SUPERSCRIPT_TWO
        tx_hash = await pool.call("eth_sendRawTransaction", ["0x" + signed.raw.hex()])
        assert tx_hash == signed.hash
        assert "eth_sendRawTransaction" not in first.forwarded
        assert second.forwarded[-1] == "eth_sendRawTransaction"
        health = pool.health()[0]
        assert (health.last_error_kind, health.rate_limited_for_s) == (RpcErrorKind.RATE_LIMITED, 1)

        async def receipt() -> dict[str, object] | None:
            found: dict[str, object] | None = await pool.call(
                "eth_getTransactionReceipt", [tx_hash]
            )
            return found

        mined = await eventually(receipt, timeout_s=10, what="the send's receipt")
        assert mined["status"] == "0x1"
        assert "eth_getTransactionReceipt" not in first.forwarded

    async def test_server_errors_open_the_breaker(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy
    ) -> None:
        await warm_up(pool)
        first.fault, first.retry_after_s = Fault.HTTP_502, SUPERSCRIPT_TWO
        for _ in range(FAILURES_TO_OPEN):
            assert str(await pool.call("eth_blockNumber")).startswith("0x")
        assert pool.health()[0].state is EndpointState.OPEN
        assert second.forwarded[-1] == "eth_blockNumber"


# Answers a broken node or a proxy in the way could give, each of which int(x, 16) either
# reads as a number or raises deep inside the caller (answers.py).
MALFORMED_QUANTITIES = ["0xzz", "", None, 16, "0x_1", " 0x1", "-0x1", "0x" + "1" * 100_000]


class TestMalformedAnswers:
    @pytest.mark.parametrize("bad", MALFORMED_QUANTITIES, ids=lambda v: repr(v)[:12])
    async def test_a_malformed_read_fails_over_to_the_next_endpoint(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy, bad: object
    ) -> None:
        await warm_up(pool)
        first.fault = Fault.CORRUPT
        first.corrupt = {"eth_blockNumber": lambda _: bad}
        block = await pool.call("eth_blockNumber")
        assert quantity(block, bits=64) >= 0  # the second endpoint's answer
        assert first.forwarded[-1] == second.forwarded[-1] == "eth_blockNumber"
        failing = pool.health()[0]
        assert (failing.consecutive_failures, failing.last_error_kind) == (
            1,
            RpcErrorKind.TRANSPORT,
        )

    async def test_a_node_that_keeps_answering_badly_opens_its_breaker(
        self, pool: EndpointPool, first: RpcProxy
    ) -> None:
        await warm_up(pool)
        first.fault = Fault.CORRUPT
        first.corrupt = {"eth_getBalance": lambda _: "0x10 "}
        for _ in range(FAILURES_TO_OPEN + 1):
            assert quantity(await pool.call("eth_getBalance", [ADDRESS, "latest"])) > 0
        assert pool.health()[0].state is EndpointState.OPEN
        assert first.received.count("eth_getBalance") == FAILURES_TO_OPEN  # then skipped

    async def test_one_malformed_entry_fails_the_whole_batch_over(
        self, pool: EndpointPool, first: RpcProxy, second: RpcProxy, http: aiohttp.ClientSession
    ) -> None:
        # node.py reads the counts: old code read "0x_5" as 5, a nonce that is not the node's.
        await warm_up(pool)
        first.fault = Fault.CORRUPT
        first.corrupt = {"eth_getTransactionCount": lambda _: "0x_5"}
        mined, pending = await nonce_counts(pool, [ADDRESS])
        node = RpcClient(http, second.upstream)
        truth = await node.call("eth_getTransactionCount", [ADDRESS, "latest"])
        assert mined == {ADDRESS: quantity(truth)}
        assert pending == {ADDRESS: quantity(truth)}
        assert second.forwarded[-2:] == ["eth_getTransactionCount"] * 2
        assert pool.health()[0].consecutive_failures == 1

    async def test_a_malformed_receipt_field_fails_over(
        self, pool: EndpointPool, first: RpcProxy, signed: SignedTx
    ) -> None:
        tx_hash = await pool.call("eth_sendRawTransaction", ["0x" + signed.raw.hex()])
        first.fault = Fault.CORRUPT
        first.corrupt = {
            "eth_getTransactionReceipt": lambda receipt: {**receipt, "blockNumber": "0x1g"}
        }
        (receipt,) = await pool.batch([("eth_getTransactionReceipt", [tx_hash])])
        assert quantity(receipt["blockNumber"], bits=64) > 0
        assert quantity(receipt["status"]) == 1
        assert pool.health()[0].consecutive_failures == 1

    async def test_a_pending_receipt_is_not_mined_not_a_bad_node(
        self, pool: EndpointPool, first: RpcProxy, signed: SignedTx
    ) -> None:
        """Parity-style nodes answer a pooled transaction's receipt with a null blockNumber:
        read as null, on the same endpoint, with no failure counted (review)."""
        tx_hash = await pool.call("eth_sendRawTransaction", ["0x" + signed.raw.hex()])
        first.fault = Fault.CORRUPT
        pending = {"transactionHash": tx_hash, "blockNumber": None, "blockHash": None}
        first.corrupt = {"eth_getTransactionReceipt": lambda _: pending}
        assert await pool.batch([("eth_getTransactionReceipt", [tx_hash])]) == [None]
        assert await pool.call("eth_getTransactionReceipt", [tx_hash]) is None
        assert first.forwarded[-1] == "eth_getTransactionReceipt"
        assert pool.health()[0].consecutive_failures == 0

    async def test_a_single_bad_endpoint_raises_the_pools_error_not_a_value_error(
        self, http: aiohttp.ClientSession, first: RpcProxy, clock: FakeClock
    ) -> None:
        pool = make_pool(http, [first.url], clock)
        await warm_up(pool)
        first.fault = Fault.CORRUPT
        first.corrupt = {"eth_getBlockByNumber": lambda block: {**block, "timestamp": "0x-1"}}
        with pytest.raises(NoHealthyEndpoint) as caught:
            await read_head(pool)
        assert "malformed answer" in caught.value.detail
        assert "0x-1" not in caught.value.detail  # the node's text is never echoed
