"""EIP-1559 (type 2) transactions in the shape Chainflow builds, serialized without
eth-account's per-call dict handling.

`Account.sign_transaction` validates and reformats the dict twice per signature (once to
hash, once to encode the signed form): ~90% of its CPU in a profile, against ~8% for the
secp256k1 signature itself. For the dicts Chainflow builds (domain/transactions/attempts.py:
plain ints, a checksummed `to`, bytes `data`) the validation says nothing new, so this module
encodes them directly with the rlp library's raw encoder, the fields made as eth-account's own
definitions make them (`DynamicFeeTransaction`'s serializers); anything else returns None and
goes through eth-account. Tests compare the bytes with eth-account's for generated inputs.

eth-account is imported on first use (`load_eth_account`), not when this module is: any of
its modules imports eth-keyfile and py_ecc's BLS code, ~0.5 s of CPU that the API and every
CLI command paid at start-up without signing anything. An engine loads it when it opens
(workers/context.py), so no drain pays for it while holding its lanes' locks.
"""

import sys
from collections.abc import Callable, Mapping
from functools import cache, lru_cache
from typing import Any

from eth_utils.address import is_checksum_address
from eth_utils.crypto import keccak
from rlp.codec import encode_raw
from rlp.sedes.big_endian_int import big_endian_int

__all__ = [
    "Type2Fields",
    "encode_type_2",
    "load_eth_account",
    "sign_type_2",
    "type_2_fields",
    "type_2_hash",
]

_TYPE_BYTE = b"\x02"
_KEYS = frozenset(
    {
        "type",
        "chainId",
        "nonce",
        "to",
        "value",
        "data",
        "gas",
        "maxFeePerGas",
        "maxPriorityFeePerGas",
    }
)
_INTS = ("chainId", "nonce", "maxPriorityFeePerGas", "maxFeePerGas", "gas", "value")

Type2Fields = tuple[int, int, int, int, int, bytes, int, bytes, tuple[()]]


@cache
def load_eth_account() -> tuple[Any, Any]:
    """Import eth-account once, keeping CPython's recursion limit (py_ecc raises it to 100,000
    when first imported; issue 14), and return `DynamicFeeTransaction`'s serializers for the
    unsigned and the signed payload (EIP-1559 field order)."""
    limit = sys.getrecursionlimit()
    from eth_account.typed_transactions.dynamic_fee_transaction import DynamicFeeTransaction

    sys.setrecursionlimit(limit)
    return (
        DynamicFeeTransaction._unsigned_transaction_serializer,
        DynamicFeeTransaction._signed_transaction_serializer,
    )


@lru_cache(maxsize=4096)
def _address_bytes(address: str) -> bytes | None:
    """The 20 bytes of an EIP-55 checksummed address (what eth-account accepts), else None."""
    return bytes.fromhex(address[2:]) if is_checksum_address(address) else None


def type_2_fields(tx: Mapping[str, object]) -> Type2Fields | None:
    """The RLP values of a plain type-2 dict, in field order; None for any other dict
    (another type, an access list, a contract creation, hex-string values, ...)."""
    if tx.keys() != _KEYS or type(tx["type"]) is not int or tx["type"] != 2:
        return None
    ints: list[int] = []
    for key in _INTS:
        number = tx[key]
        if type(number) is not int or number < 0:  # bool is not int here
            return None
        ints.append(number)
    to, data = tx["to"], tx["data"]
    if not isinstance(to, str) or type(data) is not bytes:
        return None
    to_bytes = _address_bytes(to)
    if to_bytes is None:
        return None
    chain_id, nonce, tip, max_fee, gas, value = ints
    return (chain_id, nonce, tip, max_fee, gas, to_bytes, value, data, ())


def type_2_hash(fields: Type2Fields) -> bytes:
    """The 32-byte keccak digest a type-2 transaction's signature signs."""
    digest: bytes = keccak(_TYPE_BYTE + encode_raw(_items(fields)))
    return digest


def encode_type_2(fields: Type2Fields, *, y_parity: int, r: int, s: int) -> bytes:
    """The signed transaction's raw bytes (0x02 || rlp)."""
    signature = [_int(y_parity), _int(r), _int(s)]
    raw: bytes = _TYPE_BYTE + encode_raw(_items(fields) + signature)
    return raw


# The rlp library's raw encoder on the fields serialized by the rlp sedes eth-account's
# `DynamicFeeTransaction` declares (every int `big_endian_int`, `to` and `data` byte
# strings, the access list an empty list): the same bytes (tests/unit/infra/signing/
# test_type2.py compares them for generated inputs) without building an rlp.Serializable,
# which validated and serialized each field again in Python for the hash and for the raw
# bytes (~5% of the draining worker's CPU).
def _items(fields: Type2Fields) -> list[bytes | list[bytes]]:
    chain_id, nonce, tip, max_fee, gas, to, value, data, _ = fields
    return [
        _int(chain_id),
        _int(nonce),
        _int(tip),
        _int(max_fee),
        _int(gas),
        to,
        _int(value),
        data,
        [],
    ]


def _int(number: int) -> bytes:
    serialized: bytes = big_endian_int.serialize(number)  # minimal big-endian, 0: b""
    return serialized


def sign_type_2(
    fields: Type2Fields, sign_recoverable: Callable[[bytes], bytes]
) -> tuple[bytes, bytes]:
    """Sign and encode; returns (raw transaction, transaction hash).

    `sign_recoverable` takes the 32-byte signing hash and returns r || s || recovery id
    (65 bytes, low-s), as coincurve's `PrivateKey.sign_recoverable(hash, hasher=None)`.
    """
    signature = sign_recoverable(type_2_hash(fields))
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    raw = encode_type_2(fields, y_parity=signature[64], r=r, s=s)
    return raw, keccak(raw)
