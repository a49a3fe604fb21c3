"""Verify that every RPC URL of a chain answers `eth_chainId` with that chain's id."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

from chainflow.core.errors import ChainflowError
from chainflow.core.urls import redact_url
from chainflow.domain.chains.errors import RpcChainMismatch, RpcUnreachable
from chainflow.infra.rpc.client import RpcClient

ChainIdProbe = Callable[[str], Awaitable[int]]


def rpc_chain_id_probe(http: aiohttp.ClientSession, *, timeout_s: float) -> ChainIdProbe:
    """A probe that asks the URL for `eth_chainId` over JSON-RPC."""

    async def probe(url: str) -> int:
        result = await RpcClient(http, url, timeout_s=timeout_s).call("eth_chainId")
        if not isinstance(result, str) or not result.startswith("0x"):
            raise RpcUnreachable(f"{redact_url(url)} answered eth_chainId with {result!r}")
        return int(result, 16)

    return probe


async def verify_rpc_urls(probe: ChainIdProbe, urls: Sequence[str], *, chain_id: int) -> None:
    """Check every URL concurrently.

    Raises:
        RpcUnreachable: a URL gave no usable answer.
        RpcChainMismatch: a URL serves another chain.
    """
    answers = await asyncio.gather(*(probe(url) for url in urls), return_exceptions=True)
    for index, (url, answer) in enumerate(zip(urls, answers, strict=True)):
        where = f"rpc_urls[{index}] ({redact_url(url)})"
        if isinstance(answer, RpcUnreachable):
            raise answer
        if isinstance(answer, ChainflowError | OSError | TimeoutError):
            raise RpcUnreachable(f"{where} is unreachable: {answer}")
        if isinstance(answer, BaseException):
            raise answer
        if answer != chain_id:
            raise RpcChainMismatch(f"{where} serves chain {answer}, expected chain {chain_id}")
