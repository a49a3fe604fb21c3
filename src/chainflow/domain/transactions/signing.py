"""Build, sign and store attempts: the write-ahead step before any broadcast (DESIGN §6.3)."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.domain.transactions.fees import Eip1559Fees, Fees, LegacyFees
from chainflow.domain.transactions.models import AttemptKind, AttemptStatus, Transaction, TxAttempt
from chainflow.domain.transactions.runtime import ChainConfig
from chainflow.infra.signing.signer import Signer

CANCEL_GAS = 21_000


def tx_fields(
    tx: Transaction, *, chain: ChainConfig, nonce: int, gas_limit: int, fees: Fees, cancel: bool
) -> dict[str, Any]:
    """The dict eth-account signs. A cancel is a 0-value self-transfer at the same nonce."""
    fields: dict[str, Any] = {
        "chainId": chain.chain_id,
        "nonce": nonce,
        "to": tx.from_address if cancel else tx.to_address,
        "value": 0 if cancel else tx.value_wei,
        "data": b"" if cancel else tx.data,
        "gas": CANCEL_GAS if cancel else gas_limit,
    }
    if isinstance(fees, Eip1559Fees):
        fields |= {
            "type": 2,
            "maxFeePerGas": fees.max_fee_per_gas_wei,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas_wei,
        }
    else:
        fields["gasPrice"] = fees.gas_price_wei
    return fields


def fees_of(attempt: TxAttempt) -> Fees:
    if attempt.gas_price_wei is not None:
        return LegacyFees(attempt.gas_price_wei)
    return Eip1559Fees(attempt.max_fee_per_gas_wei or 0, attempt.max_priority_fee_per_gas_wei or 0)


async def signed_attempt(
    tx: Transaction,
    *,
    signer: Signer,
    chain: ChainConfig,
    nonce: int,
    gas_limit: int,
    fees: Fees,
    kind: AttemptKind,
) -> dict[str, Any]:
    """Sign an attempt of `tx`; its column values (id, raw bytes, hash, fees, ...)."""
    cancel = kind is AttemptKind.CANCEL
    fields = tx_fields(tx, chain=chain, nonce=nonce, gas_limit=gas_limit, fees=fees, cancel=cancel)
    signed = await signer.sign_transaction(fields)
    return {
        "id": uuid.uuid4(),
        "tx_id": tx.id,
        "kind": kind,
        "status": AttemptStatus.SIGNED,
        "nonce": nonce,
        "gas_limit": fields["gas"],
        "max_fee_per_gas_wei": fields.get("maxFeePerGas"),
        "max_priority_fee_per_gas_wei": fields.get("maxPriorityFeePerGas"),
        "gas_price_wei": fields.get("gasPrice"),
        "raw": signed.raw,
        "hash": signed.hash,
        "broadcast_count": 0,
        "created_at": utcnow(),
    }


async def sign_attempt(
    session: AsyncSession,
    tx: Transaction,
    *,
    signer: Signer,
    chain: ChainConfig,
    nonce: int,
    gas_limit: int,
    fees: Fees,
    kind: AttemptKind,
) -> TxAttempt:
    """Sign and add an attempt row; the caller commits before sending it."""
    values = await signed_attempt(
        tx, signer=signer, chain=chain, nonce=nonce, gas_limit=gas_limit, fees=fees, kind=kind
    )
    attempt = TxAttempt(**values)
    session.add(attempt)
    return attempt
