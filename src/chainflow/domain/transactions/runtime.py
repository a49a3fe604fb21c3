"""What the engine needs at run time: sessions, RPC per chain, signers, configuration."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.crashpoints import Crasher
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions.fees import Market
from chainflow.domain.wallets.custody import signer_for
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.pkcs11 import Pkcs11Token
from chainflow.infra.signing.signer import Signer


class ChainRpc(Protocol):
    """JSON-RPC to one chain (one client or a failover pool)."""

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any: ...

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]: ...


@dataclass(frozen=True)
class EngineConfig:
    max_in_flight_per_lane: int = 64
    batch_size: int = 64
    gas_buffer_percent: int = 20
    min_tip_wei: int = 1_000_000_000
    stuck_after_blocks: int = 3
    stuck_after_s: float = 15.0
    resend_after_s: float = 5.0
    foreign_nonce_grace_s: float = 30.0
    stranded_after_s: float = 2.0
    stranded_held_after_s: float = 0.5
    lane_lease_s: float = 5.0  # a lane sticks to the process draining it; a dead one's expires
    bump_percent: str = "12.5"
    track_limit: int = 5000
    tracker_lease_s: float = 10.0
    # A signed request whose fee cap cannot pay the base fee, and that no bump within its
    # caps can help, is replaced by a cancel this long after its last attempt was signed.
    fee_cap_wait_s: float = 600.0


@dataclass(frozen=True)
class ChainConfig:
    """A snapshot of a chain's settings for one engine round."""

    chain_id: int
    eip1559: bool
    confirmations: int
    block_time_s: float
    max_fee_per_gas_cap: int | None
    max_priority_fee_per_gas_cap: int | None

    @classmethod
    def of(cls, chain: Chain) -> "ChainConfig":
        return cls(
            chain_id=chain.chain_id,
            eip1559=chain.eip1559,
            confirmations=max(chain.confirmations, 1),
            block_time_s=chain.block_time_s,
            max_fee_per_gas_cap=chain.max_fee_per_gas_cap,
            max_priority_fee_per_gas_cap=chain.max_priority_fee_per_gas_cap,
        )


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
    # The PKCS#11 token of wallets whose keys it holds (issue 20), when one is configured.
    pkcs11: Pkcs11Token | None = None

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
        """The wallet's signer, decrypted (or its public key read) once per process and kept.

        Raises: SignerUnavailable (nothing cached: the next call tries again).
        """
        signer = self._signers.get(wallet.id)
        if signer is None:
            signer = signer_for(wallet, master=self.master_key, pkcs11=self.pkcs11)
            self._signers[wallet.id] = signer
        return signer
