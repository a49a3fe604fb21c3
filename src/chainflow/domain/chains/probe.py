"""Verify that every RPC URL of a chain answers `eth_chainId` with that chain's id.

The URL comes from an admin, so the probe must not become a port scanner or a reader of
internal services: non-public hosts are refused first (unless allowed), and a failure says
only "refused", "unreachable", "not a JSON-RPC node" or "another chain", never what the
target answered.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from chainflow.core.errors import ChainflowError
from chainflow.core.logging import get_logger
from chainflow.core.urls import redact_url
from chainflow.domain.chains.errors import RpcChainMismatch, RpcUnreachable, RpcUrlForbidden
from chainflow.infra.net.urlguard import UrlForbidden, UrlGuard
from chainflow.infra.rpc.answers import MalformedAnswer, quantity

if TYPE_CHECKING:
    import aiohttp

ChainIdProbe = Callable[[str], Awaitable[int]]

_MAX_ANSWER_BYTES = 4096  # an eth_chainId answer is ~40 bytes
_ALLOW_HINT = "set CHAINFLOW_RPC_ALLOW_PRIVATE_URLS=true to allow private and loopback hosts"
log = get_logger(__name__)


class _NotJsonRpc(RpcUnreachable):
    """Something answered, but not a usable eth_chainId: the same code, another detail."""

    def __init__(self) -> None:
        super().__init__("did not answer eth_chainId as a JSON-RPC node")


def rpc_chain_id_probe(
    http: "aiohttp.ClientSession", *, timeout_s: float, guard: UrlGuard
) -> ChainIdProbe:
    """A probe that checks the URL against `guard`, then asks it for `eth_chainId`."""
    # Imported by the processes that probe (the API, `chainflow dev`), not by every command
    # that reads or seeds chains: aiohttp took a tenth of `chainflow db upgrade`'s start-up.
    from chainflow.infra.rpc.client import RpcCallError, RpcClient, RpcTransportError

    async def probe(url: str) -> int:
        try:
            await guard.check_url(url)
        except UrlForbidden as exc:
            raise RpcUrlForbidden(f"is refused: {exc.detail}; {_ALLOW_HINT}") from None
        client = RpcClient(http, url, timeout_s=timeout_s, max_response_bytes=_MAX_ANSWER_BYTES)
        try:
            result = await client.call("eth_chainId")
        except RpcCallError:
            raise _NotJsonRpc() from None
        except RpcTransportError as exc:
            raise (_NotJsonRpc() if exc.is_answered else RpcUnreachable("is unreachable")) from None
        return _chain_id(result)

    return probe


def _chain_id(result: object) -> int:
    try:
        return quantity(result)
    except MalformedAnswer:
        raise _NotJsonRpc() from None


async def verify_rpc_urls(probe: ChainIdProbe, urls: Sequence[str], *, chain_id: int) -> None:
    """Check every URL concurrently.

    Raises:
        RpcUrlForbidden: a URL's host is not public and private hosts are not allowed.
        RpcUnreachable: a URL gave no usable answer.
        RpcChainMismatch: a URL serves another chain.
    """
    answers = await asyncio.gather(*(probe(url) for url in urls), return_exceptions=True)
    for index, (url, answer) in enumerate(zip(urls, answers, strict=True)):
        where = f"rpc_urls[{index}] ({redact_url(url)})"
        if isinstance(answer, RpcUrlForbidden):
            raise RpcUrlForbidden(f"{where} {answer.detail}")
        if isinstance(answer, RpcUnreachable):
            raise RpcUnreachable(f"{where} {answer.detail}")
        if isinstance(answer, ChainflowError | OSError | TimeoutError | ValueError):
            log.warning("chains.probe_failed", error_type=type(answer).__name__)
            raise RpcUnreachable(f"{where} is unreachable")
        if isinstance(answer, BaseException):
            raise answer
        if answer != chain_id:
            raise RpcChainMismatch(f"{where} does not serve chain {chain_id}")
