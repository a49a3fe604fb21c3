"""The JSON-RPC client against real sockets: the URL guard at connect time, redirects, and the
size cap on answers."""

import gzip

import orjson
import pytest

from chainflow.infra.net.urlguard import UrlGuard
from chainflow.infra.rpc.client import (
    RpcCallError,
    RpcClient,
    RpcResponseTooLarge,
    RpcTransportError,
    new_http_session,
)
from chainflow.infra.rpc.errors import RpcErrorKind, RpcFailure, classify
from tests.support.tcp_servers import endless_body, http_answer, json_rpc, redirect, tcp_server

STRICT = UrlGuard(allow_private=False)
OPEN = UrlGuard(allow_private=True)


class TestConnectTimeGuard:
    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0x7f.1", "[::ffff:127.0.0.1]"])
    async def test_a_non_public_address_is_never_connected(self, host: str) -> None:
        # Whatever the URL said when it was stored, the address a name resolves to now is
        # what gets checked: a DNS answer that changed (rebinding) meets the same refusal.
        async with tcp_server(json_rpc({"result": "0x1"})) as node:
            async with new_http_session(guard=STRICT) as http:
                client = RpcClient(http, f"http://{host}:{node.port}", timeout_s=3)
                with pytest.raises(RpcTransportError, match="URL guard") as refused:
                    await client.call("eth_chainId")
            assert node.connections == 0
        assert refused.value.is_unsent

    async def test_allowed_by_the_guard_setting(self) -> None:
        async with (
            tcp_server(json_rpc({"result": "0x1"})) as node,
            new_http_session(guard=OPEN) as http,
        ):
            assert await RpcClient(http, node.url).call("eth_chainId") == "0x1"


class TestRedirects:
    @pytest.mark.parametrize("status", ["301 Moved Permanently", "307 Temporary Redirect"])
    async def test_are_failures_and_never_followed(self, status: str) -> None:
        async with (
            tcp_server(json_rpc({"result": "0x1"})) as node,
            tcp_server(redirect(node.url, status)) as hop,
            new_http_session(guard=OPEN) as http,
        ):
            client = RpcClient(http, hop.url)
            with pytest.raises(RpcTransportError, match="redirect") as failed:
                await client.call("eth_chainId")
            with pytest.raises(RpcTransportError, match="redirect"):
                await client.batch([("eth_chainId", []), ("eth_blockNumber", [])])
            assert node.connections == 0
        assert failed.value.is_answered


class TestAnswerSize:
    async def test_an_endless_answer_is_cut_at_the_cap(self) -> None:
        async with tcp_server(endless_body()) as node, new_http_session(guard=OPEN) as http:
            client = RpcClient(http, node.url, max_response_bytes=1 << 20)
            with pytest.raises(RpcResponseTooLarge):
                await client.call("eth_getBlockByNumber", ["latest", True])
            assert node.bytes_sent < 12 << 20  # 1 MiB read; ~4 MiB more sat in socket buffers

    async def test_a_declared_length_over_the_cap_is_refused_unread(self) -> None:
        async with (
            tcp_server(endless_body(declared_bytes=200 << 20)) as node,
            new_http_session(guard=OPEN) as http,
        ):
            client = RpcClient(http, node.url, max_response_bytes=1 << 20)
            with pytest.raises(RpcResponseTooLarge):
                await client.batch([("eth_getTransactionReceipt", ["0x00"])])
            assert node.bytes_sent < 12 << 20

    async def test_a_compressed_answer_counts_its_decompressed_size(self) -> None:
        bomb = gzip.compress(b'{"jsonrpc": "2.0", "id": 1, "result": "' + b"0" * (64 << 20))
        handler = http_answer("200 OK", bomb, headers={"Content-Encoding": "gzip"})
        async with tcp_server(handler) as node, new_http_session(guard=OPEN) as http:
            with pytest.raises(RpcResponseTooLarge):
                await RpcClient(http, node.url, max_response_bytes=1 << 20).call("eth_chainId")

    async def test_an_answer_up_to_the_cap_is_read(self) -> None:
        result = "0x" + "ab" * 100_000
        answer = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": result})
        async with (
            tcp_server(http_answer("200 OK", answer)) as node,
            new_http_session(guard=OPEN) as http,
        ):
            client = RpcClient(http, node.url, max_response_bytes=len(answer))
            assert await client.call("eth_call", []) == result
            tighter = RpcClient(http, node.url, max_response_bytes=len(answer) - 1)
            with pytest.raises(RpcResponseTooLarge):
                await tighter.call("eth_call", [])


# "²" (U+00B2): str.isdigit() says True, int() raises ValueError (the audit's reproduction).
SUPERSCRIPT_TWO = "\u00b2"
CHAIN_ID_ANSWER = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": "0x1"})


class TestMalformedAnswers:
    """Whatever an endpoint answers, the client raises only its own errors."""

    @pytest.mark.parametrize(
        ("retry_after", "seconds"),
        [
            ("7", 7.0),
            (" 7 ", 7.0),
            (SUPERSCRIPT_TWO, None),
            ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: int() takes it, no header means it
            ("1_0", None),
            ("-1", None),
            ("1.5", None),
            ("9" * 21, None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ],
    )
    async def test_a_429s_retry_after_is_read_as_ascii_delay_seconds(
        self, retry_after: str, seconds: float | None
    ) -> None:
        handler = http_answer(
            "429 Too Many Requests", b"slow down", headers={"Retry-After": retry_after}
        )
        async with tcp_server(handler) as node, new_http_session(guard=OPEN) as http:
            with pytest.raises(RpcTransportError) as limited:
                await RpcClient(http, node.url).call("eth_chainId")
        assert (limited.value.http_status, limited.value.is_unsent) == (429, True)
        assert limited.value.retry_after_s == seconds

    async def test_a_200_with_an_unreadable_retry_after_is_answered(self) -> None:
        headers = {"Retry-After": SUPERSCRIPT_TWO}
        async with (
            tcp_server(http_answer("200 OK", CHAIN_ID_ANSWER, headers=headers)) as node,
            new_http_session(guard=OPEN) as http,
        ):
            assert await RpcClient(http, node.url).call("eth_chainId") == "0x1"

    async def test_a_batch_entry_with_an_unhashable_id_matches_no_call(self) -> None:
        answer = orjson.dumps([{"jsonrpc": "2.0", "id": [1], "result": "0x1"}])
        async with (
            tcp_server(http_answer("200 OK", answer)) as node,
            new_http_session(guard=OPEN) as http,
        ):
            [entry] = await RpcClient(http, node.url).batch([("eth_chainId", [])])
        assert isinstance(entry, RpcTransportError)
        assert "missing" in str(entry)

    async def test_an_unreadable_content_length_is_a_transport_error(self) -> None:
        headers = {"Content-Length": SUPERSCRIPT_TWO}
        handler = http_answer("200 OK", CHAIN_ID_ANSWER, headers=headers)
        async with tcp_server(handler) as node, new_http_session(guard=OPEN) as http:
            with pytest.raises(RpcTransportError):
                await RpcClient(http, node.url).call("eth_chainId")

    @pytest.mark.parametrize("code", [[], {}, "-32000", True, 1.5])
    async def test_an_error_code_that_is_no_integer_is_classified_by_its_message(
        self, code: object
    ) -> None:
        error = {"code": code, "message": "nonce too low"}
        answer = orjson.dumps({"jsonrpc": "2.0", "id": 1, "error": error})
        async with (
            tcp_server(http_answer("200 OK", answer)) as node,
            new_http_session(guard=OPEN) as http,
        ):
            with pytest.raises(RpcCallError) as refused:
                await RpcClient(http, node.url).call("eth_sendRawTransaction", ["0x00"])
        assert refused.value.rpc_code is None
        failure = RpcFailure(code=refused.value.rpc_code, message=refused.value.message)
        assert classify(failure) is RpcErrorKind.NONCE_TOO_LOW

    async def test_a_closed_session_is_the_callers_error_not_a_maybe_sent_one(self) -> None:
        async with tcp_server(http_answer("200 OK", CHAIN_ID_ANSWER)) as node:
            async with new_http_session(guard=OPEN) as http:
                client = RpcClient(http, node.url)
            with pytest.raises(RuntimeError):
                await client.call("eth_chainId")
