"""What the engine needs at run time: sessions, RPC per chain, signers, configuration."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.crashpoints import Crasher
from chainflow.domain.transactions.config import EngineConfig
from chainflow.domain.transactions.fees import Market
from chainflow.domain.wallets.custody import signer_for
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.signer import Signer


class ChainRpc(Protocol):
    """JSON-RPC to one chain (one client or a failover pool)."""

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any: ...

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]: ...


@dataclass
class Engine:
    sessionmaker: async_sessionmaker[AsyncSession]
    rpc: Mapping[int, ChainRpc]
    master_key: MasterKey
    config: EngineConfig = field(default_factory=EngineConfig)
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    # When the tracker first saw a request's nonce consumed with no receipt of ours (monotonic s).
    foreign_since: dict[uuid.UUID, float] = field(default_factory=dict)
    crasher: Crasher = field(default_factory=Crasher)  # chaos tests only
    # Market fees per chain id, with the monotonic time they were read (gas.market).
    fee_cache: dict[int, tuple[float, Market]] = field(default_factory=dict)
    # The (wallet id, chain id) lanes a drain of this process is working on: one at a time.
    draining: set[tuple[uuid.UUID, int]] = field(default_factory=set)
    # Set by a doorbell to start a chain's next round now instead of at its next poll.
    wakeups: dict[int, asyncio.Event] = field(default_factory=dict)
    # Re-reads the chain registry into `rpc`; returns the chain ids it added (workers only).
    refresh_chains: Callable[[], Awaitable[list[int]]] | None = None
    # Tells the other worker processes a chain has work now (infra/queue/signals.py).
    signal: Callable[[int], None] | None = None
    _signers: dict[uuid.UUID, Signer] = field(default_factory=dict)
    # Wallet addresses by id (they never change), for the counts read before a drain plans.
    addresses: dict[uuid.UUID, str] = field(default_factory=dict)
    # Requests the tracker found stuck at their fee cap, with the attempt it said so for: the
    # warning is logged once per attempt, not every round (issue 14 saw ~7 lines a second).
    capped: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    # Drains that failed in a row, per chain id (workers/main.py logs only some of them).
    drain_failures: dict[int, int] = field(default_factory=dict)

    def wakeup(self, chain_id: int) -> asyncio.Event:
        """The event a chain's loop waits on between rounds."""
        return self.wakeups.setdefault(chain_id, asyncio.Event())

    def wake(self, chain_id: int) -> None:
        """Start the chain's next round now (a doorbell or a signal); a chain this engine
        does not serve (a worker restricted to other chains) is ignored."""
        if chain_id in self.rpc:
            self.wakeup(chain_id).set()

    def signal_others(self, chain_id: int) -> None:
        """Wake the chain's loop in the other worker processes (best effort): sends for the
        tracker, or room freed in lanes another process drains."""
        if self.signal is not None:
            self.signal(chain_id)

    def signer(self, wallet: Wallet) -> Signer:
        """The wallet's signer, decrypted once per process and kept in memory."""
        signer = self._signers.get(wallet.id)
        if signer is None:
            signer = signer_for(wallet, master=self.master_key)
            self._signers[wallet.id] = signer
        return signer
