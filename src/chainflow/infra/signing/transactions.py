"""Sign a transaction dict through any signer's `sign_digest`: hash, sign, encode.

One path for every backend, so the encoding of v (typed: y-parity; legacy EIP-155:
35 + 2 * chain id + recovery id) is written once (research/kms-hsm.md pitfall 5).

Plain type-2 dicts (what Chainflow builds) take type2.py's fast path; any other goes through
eth-account's serializers. Both import eth-account on first use (type2.load_eth_account),
never at start-up.
"""

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from eth_utils.crypto import keccak

from chainflow.core.types import TxHash
from chainflow.infra.signing.ecdsa import RecoverableSignature
from chainflow.infra.signing.signer import SignedTx
from chainflow.infra.signing.type2 import (
    encode_type_2,
    load_eth_account,
    type_2_fields,
    type_2_hash,
)

__all__ = ["SignDigest", "sign_transaction_with"]

SignDigest = Callable[[bytes], Awaitable[RecoverableSignature]]
_EIP155_OFFSET = 35
_PRE_EIP155_OFFSET = 27


async def sign_transaction_with(tx: Mapping[str, object], sign_digest: SignDigest) -> SignedTx:
    """Sign a type-2 dict on the fast path (type2.py), any other through eth-account's
    serializers."""
    fields = type_2_fields(tx)
    if fields is not None:
        signature = await sign_digest(type_2_hash(fields))
        raw = encode_type_2(fields, y_parity=signature.recovery_id, r=signature.r, s=signature.s)
    else:
        raw = await _sign_with_eth_account(tx, sign_digest)
    return SignedTx(raw=raw, hash=TxHash("0x" + keccak(raw).hex()))


async def _sign_with_eth_account(tx: Mapping[str, object], sign_digest: SignDigest) -> bytes:
    load_eth_account()  # keeps the recursion limit
    from eth_account._utils.legacy_transactions import (
        Transaction,
        encode_transaction,
        serializable_unsigned_transaction_from_dict,
    )
    from eth_account.typed_transactions.typed_transaction import TypedTransaction

    unsigned = serializable_unsigned_transaction_from_dict(cast(Any, dict(tx)))
    signature = await sign_digest(bytes(unsigned.hash()))
    if isinstance(unsigned, TypedTransaction):
        v = signature.recovery_id
    elif isinstance(unsigned, Transaction):  # chain-aware: its v holds the chain id
        v = _EIP155_OFFSET + 2 * int(unsigned.v) + signature.recovery_id
    else:
        v = _PRE_EIP155_OFFSET + signature.recovery_id
    raw: bytes = encode_transaction(unsigned, vrs=(v, signature.r, signature.s))
    return raw
