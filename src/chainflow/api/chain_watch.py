"""What an API process shows of each chain from its nodes (issue 22): the head, every RPC
endpoint's health, and lanes' pending nonces and balances.

Read at most once per `CHAINFLOW_CONSOLE_CHAIN_READ_S` per chain (and per lane) by each API
process, one read at a time per chain, whatever the request rate: requests are answered from
what the last read stored. A workers' tracker keeps its own readings for the metrics; these
are the API's, as an API process in the distributed shape has no tracker.
"""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from chainflow.core.errors import ChainflowError
from chainflow.core.urls import redact_url
from chainflow.domain.transactions import readings
from chainflow.domain.transactions.readings import ChainLane
from chainflow.infra.rpc.client import RpcClient, RpcMalformedAnswer

# A probe is a health check: an endpoint slower than this is reported unhealthy.
_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class EndpointHealth:
    url: str  # redacted: scheme, host and port only
    healthy: bool
    latency_ms: float | None
    head_block: int | None
    error: str | None  # a stable code, never what the endpoint answered


@dataclass(frozen=True)
class ChainHead:
    read_at: float  # unix seconds
    head_block: int | None
    head_at: float | None  # the head block's timestamp, unix seconds
    endpoints: list[EndpointHealth]


_NEVER: tuple[float, ChainLane | None] = (-float("inf"), None)


@dataclass
class _ChainState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    head: ChainHead | None = None
    head_read_at: float = -float("inf")  # monotonic
    lanes: dict[str, tuple[float, ChainLane | None]] = field(default_factory=dict)


class ChainWatch:
    """Cached reads of chains for the console's endpoints; one per API process."""

    def __init__(self, http: aiohttp.ClientSession, *, every_s: float, max_response_bytes: int):
        self.http = http
        self.every_s = every_s
        self.max_response_bytes = max_response_bytes
        self._chains: dict[int, _ChainState] = {}

    async def head(self, chain_id: int, urls: Sequence[str]) -> ChainHead:
        """The chain's head and endpoint health, read again if older than `every_s`."""
        state = self._chains.setdefault(chain_id, _ChainState())
        async with state.lock:
            if state.head is None or time.monotonic() - state.head_read_at >= self.every_s:
                state.head_read_at = time.monotonic()
                state.head = await self._read_head(urls)
            return state.head

    async def lanes(
        self, chain_id: int, urls: Sequence[str], addresses: Sequence[str]
    ) -> dict[str, ChainLane]:
        """Pending nonce and balance of each address the node answered for; the stale or
        missing ones are read in one batch from the first healthy endpoint."""
        head = await self.head(chain_id, urls)
        state = self._chains.setdefault(chain_id, _ChainState())
        async with state.lock:
            now = time.monotonic()
            stale = [a for a in addresses if now - state.lanes.get(a, _NEVER)[0] >= self.every_s]
            url = next((u for u, e in zip(urls, head.endpoints, strict=False) if e.healthy), None)
            if stale and url is not None:
                found = await self._read_lanes(url, stale)
                state.lanes.update((a, (now, lane)) for a, lane in zip(stale, found, strict=True))
            known = {a: state.lanes.get(a, _NEVER)[1] for a in addresses}
            return {a: lane for a, lane in known.items() if lane is not None}

    def forget(self, chain_ids: set[int]) -> None:
        """Drop the chains not in `chain_ids` (removed or disabled)."""
        for chain_id in set(self._chains) - chain_ids:
            del self._chains[chain_id]

    async def _read_head(self, urls: Sequence[str]) -> ChainHead:
        probes = await asyncio.gather(*(self._probe(url) for url in urls))
        heads = [(p.head_block, at) for p, at in probes if p.head_block is not None]
        block, at = max(heads, key=lambda h: h[0]) if heads else (None, None)
        return ChainHead(time.time(), block, at, [p for p, _ in probes])

    async def _probe(self, url: str) -> tuple[EndpointHealth, float | None]:
        started = time.monotonic()
        try:
            block, at = await readings.read_head(self._client(url, _PROBE_TIMEOUT_S))
        except RpcMalformedAnswer:  # not a block (answers.py): named as before the client checked
            return EndpointHealth(redact_url(url), False, None, None, "invalid_answer"), None
        except ChainflowError as exc:
            return EndpointHealth(redact_url(url), False, None, None, exc.code), None
        except (ValueError, TypeError, KeyError):
            return EndpointHealth(redact_url(url), False, None, None, "invalid_answer"), None
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        return EndpointHealth(redact_url(url), True, latency_ms, block, None), at

    async def _read_lanes(self, url: str, addresses: list[str]) -> list[ChainLane | None]:
        try:
            return await readings.read_lanes(self._client(url, _PROBE_TIMEOUT_S), addresses)
        except (ChainflowError, ValueError, TypeError):
            return [None] * len(addresses)

    def _client(self, url: str, timeout_s: float) -> RpcClient:
        return RpcClient(
            self.http, url, timeout_s=timeout_s, max_response_bytes=self.max_response_bytes
        )
