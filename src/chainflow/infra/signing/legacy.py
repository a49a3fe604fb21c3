"""Legacy (EIP-155) transactions in the shape Chainflow builds for a chain without EIP-1559,
serialized with the `rlp` library alone, as type2.py does type 2.

The signature signs keccak(rlp([nonce, gasPrice, gas, to, value, data, chainId, 0, 0])) and
the transaction is rlp([nonce, gasPrice, gas, to, value, data, v, r, s]) with
v = 35 + 2 * chainId + recovery id (EIP-155): what eth-account's legacy serializers make of
such a dict. Without this path a worker's first legacy signature imported eth-account (and
py_ecc through eth-keyfile), ~0.5 s of CPU inside a drain holding its lanes' locks. Anything
else returns None and goes through eth-account; tests compare the bytes with eth-account's.
"""

from collections.abc import Mapping

from eth_utils.crypto import keccak
from rlp.codec import encode

from chainflow.infra.signing.type2 import plain_values

__all__ = ["EIP155_OFFSET", "LegacyFields", "encode_legacy", "legacy_fields", "legacy_hash"]

_KEYS = frozenset({"chainId", "nonce", "to", "value", "data", "gas", "gasPrice"})
_INTS = ("nonce", "gasPrice", "gas", "value", "chainId")
EIP155_OFFSET = 35

# nonce, gasPrice, gas, to, value, data, chainId
LegacyFields = tuple[int, int, int, bytes, int, bytes, int]


def legacy_fields(tx: Mapping[str, object]) -> LegacyFields | None:
    """The RLP values of a plain legacy dict with a chain id; None for any other dict."""
    plain = plain_values(tx, keys=_KEYS, ints=_INTS)
    if plain is None:
        return None
    (nonce, gas_price, gas, value, chain_id), to_bytes, data = plain
    if chain_id == 0:  # no replay protection asked for: eth-account decides
        return None
    return (nonce, gas_price, gas, to_bytes, value, data, chain_id)


def legacy_hash(fields: LegacyFields) -> bytes:
    """The 32-byte keccak digest an EIP-155 signature signs."""
    digest: bytes = keccak(encode([*fields, 0, 0]))
    return digest


def encode_legacy(fields: LegacyFields, *, recovery_id: int, r: int, s: int) -> bytes:
    """The signed transaction's raw bytes."""
    *unsigned, chain_id = fields
    raw: bytes = encode([*unsigned, EIP155_OFFSET + 2 * chain_id + recovery_id, r, s])
    return raw
