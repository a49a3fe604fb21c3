"""The engine's knobs and a chain's settings for one round: frozen values. Pure."""

from dataclasses import dataclass
from typing import Protocol

from chainflow.core.types import ChainId


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


class ChainSettings(Protocol):
    """What a chain's registry row (chains.models.Chain) says of how to send on it."""

    @property
    def chain_id(self) -> int: ...
    @property
    def eip1559(self) -> bool: ...
    @property
    def confirmations(self) -> int: ...
    @property
    def block_time_s(self) -> float: ...
    @property
    def max_fee_per_gas_cap(self) -> int | None: ...
    @property
    def max_priority_fee_per_gas_cap(self) -> int | None: ...


@dataclass(frozen=True)
class ChainConfig:
    """A snapshot of a chain's settings for one engine round."""

    chain_id: ChainId
    eip1559: bool
    confirmations: int
    block_time_s: float
    max_fee_per_gas_cap: int | None
    max_priority_fee_per_gas_cap: int | None

    @classmethod
    def of(cls, chain: ChainSettings) -> "ChainConfig":
        return cls(
            chain_id=ChainId(chain.chain_id),
            eip1559=chain.eip1559,
            confirmations=max(chain.confirmations, 1),
            block_time_s=chain.block_time_s,
            max_fee_per_gas_cap=chain.max_fee_per_gas_cap,
            max_priority_fee_per_gas_cap=chain.max_priority_fee_per_gas_cap,
        )
