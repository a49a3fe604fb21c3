"""The engine of a worker process: immutable ports and configuration, and the mutable state
the process keeps between rounds (caches, what its drains hold, its loops' wake-ups)."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.crashpoints import Crasher
from chainflow.core.types import ChainId, TxId, WalletId
from chainflow.domain.transactions.attempts import Signers
from chainflow.domain.transactions.config import EngineConfig
from chainflow.domain.transactions.drain.plan import Counts
from chainflow.domain.transactions.market import FeeCache
from chainflow.domain.transactions.node import ChainRpc
from chainflow.domain.transactions.track.judge import TrackerMemory
from chainflow.domain.transactions.track.pool import PoolSupport
from chainflow.infra.signing.aws_kms import AwsKms
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.pkcs11 import Pkcs11Token
from chainflow.workers.outbox import OutboxConfig
from chainflow.workers.pace import Pace
from chainflow.workers.placement import Placing
from chainflow.workers.webhooks import WebhookPorts


@dataclass(frozen=True)
class ScheduleConfig:
    poll_s: float = 1.0  # CHAINFLOW_SCHEDULE_POLL_S
    misfire_grace_s: float = 60.0  # CHAINFLOW_SCHEDULE_MISFIRE_GRACE_S


@dataclass(frozen=True)
class Ports:
    """What the engine talks to and how it is tuned; fixed for the process's life."""

    sessionmaker: async_sessionmaker[AsyncSession]
    # Chain id → RPC. A live view: the registry adds chains enabled later (context.py).
    rpc: Mapping[int, ChainRpc]
    master_key: MasterKey
    config: EngineConfig = field(default_factory=EngineConfig)
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)  # lane and tracker leases
    crasher: Crasher = field(default_factory=Crasher)  # chaos tests only
    # Re-reads the chain registry into `rpc`; returns the chain ids it added.
    refresh_chains: Callable[[], Awaitable[list[int]]] | None = None
    # The PKCS#11 token of wallets whose keys it holds (issue 20), when one is configured.
    pkcs11: Pkcs11Token | None = None
    # Webhook delivery (issue 16): None in processes that do not deliver (engine tests).
    webhooks: WebhookPorts | None = None
    # The events outbox: how it is sequenced and pruned (issue 16).
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    # The AWS KMS client of wallets whose keys KMS holds (issue 20).
    aws_kms: AwsKms | None = None
    # Schedules (issue 19): how often a chain's loop looks for due occurrences, the misfire grace.
    schedules: ScheduleConfig = field(default_factory=lambda: ScheduleConfig())


@dataclass
class WorkerState:
    """What one worker process remembers between rounds; never shared with another."""

    fees: FeeCache
    signers: Signers
    # What the tracker remembers between rounds, per chain id: only while this process holds
    # the chain's tracker lease (workers/tracking.py drops it otherwise).
    tracking: dict[int, TrackerMemory] = field(default_factory=dict)
    # Wallet addresses by id (they never change), for the counts read before a drain plans.
    addresses: dict[WalletId, str] = field(default_factory=dict)
    # The (wallet id, chain id) lanes a drain of this process is working on: one at a time.
    draining: set[tuple[WalletId, ChainId]] = field(default_factory=set)
    # The requests a drain of this process signed and is sending: the tracker leaves them to
    # it (track/judge.py). Not every `signed` request of a lane being drained: one signed by
    # a drain that crashed before its send is no running drain's, and a lane drained round
    # after round (a request waiting behind it, drain/estimate.py) would never see it sent.
    sending: set[TxId] = field(default_factory=set)
    # Per (wallet id, chain id) lane, the request that waits for what is ahead of it to be mined
    # (drain/estimate.py), with the lane's next nonce and node counts then: the lane is
    # estimated again once one of them changes (workers/drain.py `_estimate`).
    estimate_waits: dict[tuple[WalletId, ChainId], tuple[TxId, int, Counts]] = field(
        default_factory=dict
    )
    # Drains that failed in a row, per chain id (main.py logs only some of them).
    drain_failures: dict[int, int] = field(default_factory=dict)
    # Set by a doorbell to start a chain's next round now instead of at its next poll.
    wakeups: dict[int, asyncio.Event] = field(default_factory=dict)
    # Tells the other worker processes a chain has work now (infra/queue/signals.py).
    signal: Callable[[int], None] | None = None
    # When each chain's loop last looked for due schedule occurrences (monotonic seconds).
    schedules_read_at: dict[int, float] = field(default_factory=dict)
    # Schedule passes that failed in a row, per chain id (main.py logs only some of them).
    schedule_failures: dict[int, int] = field(default_factory=dict)
    # Each chain loop's pacing: its wait between rounds, whether signals are for it (pace.py).
    paces: dict[int, Pace] = field(default_factory=dict)
    # When a drain last took or renewed the lease of one of a chain's lanes (monotonic seconds).
    leased_at: dict[int, float] = field(default_factory=dict)
    # The chains whose lanes showing key_unreadable this process has read, once at its first
    # round of each (workers/unreadable.py): a row repaired while no worker ran is cleared too.
    unreadable_read: set[int] = field(default_factory=set)
    # Which txpool methods each chain's node answers (track/pool.py), learnt once per process.
    pools: dict[int, PoolSupport] = field(default_factory=dict)
    # The live workers serving a chain, this one included (infra/queue/roster.py); None: alone.
    roster: Callable[[int], Sequence[str]] | None = None
    # The same read again now, when a round sees this worker alone (bounded: roster.py `reread`).
    reread: Callable[[int], Awaitable[Sequence[str]]] | None = None
    # Tells the other worker processes a round left lanes to them (placement.py).
    call: Callable[[int], None] | None = None
    # Each chain loop's memory of the lanes it left to others (placement.py).
    placing: dict[int, Placing] = field(default_factory=dict)
    # Tells the other worker processes a drain recorded sends: for their tracker only.
    signal_sent: Callable[[int], None] | None = None
    # Set by another worker's sends to start a tracking pass alone between rounds (pace.py).
    looks: dict[int, asyncio.Event] = field(default_factory=dict)


@dataclass(frozen=True)
class Engine:
    ports: Ports
    state: WorkerState

    @classmethod
    def start(cls, ports: Ports) -> "Engine":
        """An engine with fresh process state."""
        state = WorkerState(
            fees=FeeCache(min_tip_wei=ports.config.min_tip_wei),
            signers=Signers(ports.master_key, pkcs11=ports.pkcs11, aws_kms=ports.aws_kms),
        )
        return cls(ports, state)

    async def stop(self) -> None:
        """End what the engine runs in the background: its signers' health probes."""
        await self.state.signers.close()

    @property
    def config(self) -> EngineConfig:
        return self.ports.config

    def rpc(self, chain_id: int) -> ChainRpc:
        return self.ports.rpc[chain_id]

    def wakeup(self, chain_id: int) -> asyncio.Event:
        """The event a chain's loop waits on between rounds."""
        return self.state.wakeups.setdefault(chain_id, asyncio.Event())

    def wake(self, chain_id: int) -> None:
        """Start the chain's next round now (a doorbell or a signal); a chain this engine
        does not serve (a worker restricted to other chains) is ignored."""
        if chain_id in self.ports.rpc:
            self.wakeup(chain_id).set()

    def hear(self, chain_id: int) -> None:
        """Another worker's signal: start the chain's next round now if the signal can be for
        this process (it holds a lane or the tracker lease of the chain; pace.py)."""
        pace = self.state.paces.get(chain_id)
        if pace is None or pace.hears_signals(time.monotonic()):
            self.wake(chain_id)

    def look(self, chain_id: int) -> asyncio.Event:
        """The event that starts a tracking pass alone in a chain's loop between rounds."""
        return self.state.looks.setdefault(chain_id, asyncio.Event())

    def hear_sends(self, chain_id: int) -> None:
        """Another worker's drain recorded sends: a tracking pass alone if this loop tracks
        and drains nothing (pace.py), else as any other signal."""
        pace = self.state.paces.get(chain_id)
        if pace is not None and chain_id in self.ports.rpc and pace.tracks_alone(time.monotonic()):
            self.look(chain_id).set()
        else:
            self.hear(chain_id)

    def workers(self, chain_id: int) -> Sequence[str]:
        """The live workers serving `chain_id`, this one included (just this one without a
        roster: embedded mode, or Redis away)."""
        if self.state.roster is None:
            return (self.ports.owner,)
        return self.state.roster(chain_id)

    async def workers_now(self, chain_id: int) -> Sequence[str]:
        """The live workers serving `chain_id`, read again now if the roster allows it (at
        most every few hundred ms; as `workers` without a roster)."""
        if self.state.reread is None:
            return self.workers(chain_id)
        return await self.state.reread(chain_id)

    def call_others(self, chain_id: int) -> None:
        """Wake the chain's loop in the other worker processes, those that hold nothing too:
        a round left lanes to them (best effort: a lane left is taken anyway if none comes)."""
        if self.state.call is not None:
            self.state.call(chain_id)

    def signal_others(self, chain_id: int) -> None:
        """Wake the chain's loop in the other worker processes (best effort): room freed in
        lanes another process drains."""
        if self.state.signal is not None:
            self.state.signal(chain_id)

    def signal_sends(self, chain_id: int) -> None:
        """Tell the other worker processes a drain recorded sends (best effort): for the
        chain's tracker, which may look without a whole round (pace.py)."""
        if self.state.signal_sent is not None:
            self.state.signal_sent(chain_id)
