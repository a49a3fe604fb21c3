"""The checks a transaction request passes at admission against its chain, wallet and lane
(`service.submit`, `batch.submit_batch`), and the row it is stored as."""

import uuid
from dataclasses import dataclass

from chainflow.core.clock import utcnow
from chainflow.core.errors import InvalidInput
from chainflow.core.types import ChainId, TxId, WalletId, Wei
from chainflow.domain.chains.errors import UnknownChain
from chainflow.domain.transactions.errors import (
    ChainDisabled,
    FeeAboveCap,
    FeeCapBelowTip,
    FeeCapZero,
    LaneDisabled,
    UnknownWallet,
    WalletNotActive,
)
from chainflow.domain.transactions.models import TxKind
from chainflow.domain.transactions.repository import intake
from chainflow.domain.transactions.rows import NewRequest
from chainflow.domain.transactions.schemas import TxCreate
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import WalletStatus


@dataclass(frozen=True)
class Checked:
    """What the checks keep of a request's target."""

    chain_id: ChainId
    wallet_id: WalletId
    wallet_address: str


def checked_target(target: intake.Target | None, body: TxCreate) -> Checked:
    if target is None:
        raise UnknownChain(f"chain {body.chain_id} is not in the registry")
    if not target.chain_enabled:
        raise ChainDisabled(f"chain {target.chain_id} is disabled")
    if target.wallet_id is None or target.wallet_address is None:
        raise UnknownWallet(f"wallet {body.wallet} does not exist")
    if target.wallet_status is not WalletStatus.ACTIVE:
        raise WalletNotActive(f"wallet {target.wallet_address} is {target.wallet_status}")
    if not target.lane_enabled:
        raise LaneDisabled(
            f"wallet {target.wallet_address} is not enabled on chain {target.chain_id}"
        )
    _check_caps(body, target)
    return Checked(target.chain_id, target.wallet_id, target.wallet_address)


def _check_fee_order(body: TxCreate) -> None:
    """A fee cap of 0 can never pay a base fee, and one below the tip is refused by every
    node (geth's ErrTipAboveFeeCap): stored, either would only wait (issue 14)."""
    cap, tip = body.max_fee_per_gas, body.max_priority_fee_per_gas
    if cap == 0:
        raise FeeCapZero("max_fee_per_gas must be at least 1 wei")
    if cap is not None and tip is not None and cap < tip:
        raise FeeCapBelowTip(
            f"max_fee_per_gas ({cap} wei) is below max_priority_fee_per_gas ({tip} wei)"
        )


def _check_caps(body: TxCreate, target: intake.Target) -> None:
    _check_fee_order(body)
    cap = target.max_fee_per_gas_cap
    if cap is not None and body.max_fee_per_gas is not None and body.max_fee_per_gas > cap:
        raise FeeAboveCap(f"max_fee_per_gas is above chain {target.chain_id}'s cap of {cap} wei")
    tip_cap = target.max_priority_fee_per_gas_cap
    tip = body.max_priority_fee_per_gas
    if tip_cap is not None and tip is not None and tip > tip_cap:
        raise FeeAboveCap(f"max_priority_fee_per_gas is above the chain's cap of {tip_cap} wei")


def new_request(
    body: TxCreate,
    target: Checked,
    *,
    data: bytes | InvalidInput,
    fingerprint: str,
    api_key_id: uuid.UUID | None,
    idempotency_key: str | None,
    fee_cap: int | None,
) -> NewRequest:
    if isinstance(data, InvalidInput):
        raise data
    now = utcnow()
    return NewRequest(
        id=TxId(uuid.uuid4()),
        kind=TxKind.REQUEST,
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        chain_id=target.chain_id,
        wallet_id=target.wallet_id,
        from_address=target.wallet_address,
        to_address=body.to,
        value_wei=Wei(body.value),
        data=data,
        gas_limit=body.gas_limit,
        max_fee_per_gas_cap=_wei(fee_cap),
        max_priority_fee_per_gas_cap=_wei(body.max_priority_fee_per_gas),
        valid_until=body.valid_until,
        status=TxStatus.QUEUED,
        cancel_requested=False,
        confirmations=0,
        created_at=now,
        updated_at=now,
    )


def _wei(value: int | None) -> Wei | None:
    return None if value is None else Wei(value)
