"""Checked readers of a node's answers (Ethereum JSON-RPC spec, "hex encoding").

A QUANTITY is "0x" and hex digits; a DATA is "0x" and an even number of hex digits. Python's
`int(x, 16)` accepts far more (" 0x1", "0x_1", "-0x1", "1", digits without end), so nothing
that reads a node's answer calls it: it calls `quantity` or `hex_data`, which raise
`MalformedAnswer`. The client checks the answers of the methods in `_SHAPES` before it returns
them (client.py), so a node that answers badly is a failing endpoint (failover, breaker),
never an exception deep inside a round.

Leniency, only where real nodes are known to deviate: leading zeros ("0x01": Ganache padded
quantities to whole bytes, web3j accepts them since) and upper-case digits are read, within
the same bound on digits; "0x" alone, signs, spaces, underscores and a "0X" prefix are not.
eth-utils does not fit: `to_int(hexstr=…)` is `int(x, 16)` (it reads "0x_1", " 0x1", "-0x1"),
`is_hexstr` takes "abc" without its prefix, and HexBytes pads "0x1" to a byte.
"""

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

__all__ = ["MalformedAnswer", "check", "hex_data", "quantity"]

_QUANTITY = re.compile(r"0x[0-9a-fA-F]+", re.ASCII)
# Even length is checked apart: a pattern of digit pairs cost ~0.3 s of the event loop per MB of
# an eth_call answer, this one ~3 ms (review)
_DATA = re.compile(r"0x[0-9a-fA-F]*", re.ASCII)


class MalformedAnswer(ValueError):
    """A node's answer is not of the shape the JSON-RPC spec gives it."""


def quantity(value: object, *, bits: int = 256) -> int:
    """The integer a QUANTITY encodes; at most `bits` bits (uint256 unless said otherwise)."""
    if not isinstance(value, str):
        raise MalformedAnswer(f"not a hex quantity: {_shown(value)}")
    # The bound comes first, so a huge string is never matched or converted.
    if len(value) > 2 + (bits + 3) // 4 or _QUANTITY.fullmatch(value) is None:
        raise MalformedAnswer(f"not a {bits}-bit hex quantity: {_shown(value)}")
    number = int(value[2:], 16)
    if number.bit_length() > bits:
        raise MalformedAnswer(f"not a {bits}-bit hex quantity: {_shown(value)}")
    return number


def hex_data(value: object, *, size: int | None = None) -> str:
    """The DATA string as it was answered; exactly `size` bytes when `size` is given."""
    if size is not None and (not isinstance(value, str) or len(value) != 2 + 2 * size):
        raise MalformedAnswer(f"not {size} bytes of hex data: {_shown(value)}")
    if not isinstance(value, str) or len(value) % 2 or _DATA.fullmatch(value) is None:
        raise MalformedAnswer(f"not hex data: {_shown(value)}")
    return value


def check(method: str, result: Any) -> Any:
    """`result`, checked: raise MalformedAnswer if it is not what `method` answers (other
    methods pass). A pending receipt (Parity/OpenEthereum answer one with a null
    `blockNumber` for a transaction in their pool) is read as null: not mined yet, not a bad
    node (review: one such endpoint stalled a chain's tracking)."""
    if method == "eth_getTransactionReceipt" and _pending(result):
        return None
    shape = _SHAPES.get(method)
    if shape is not None:
        shape(result)
    return result


def _pending(receipt: object) -> bool:
    return isinstance(receipt, dict) and receipt.get("blockNumber", 0) is None


def _shown(value: object) -> str:
    # Never the value itself: errors reach logs and API answers (a lane's rpc_error), and a
    # node's text can carry anything a provider puts there.
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return "null" if value is None else f"a JSON {type(value).__name__}"


def _uint64(value: object) -> None:
    # 63 bits, not the spec's 64: block numbers, nonces and gas are stored in signed BIGINT
    # columns, and a value over 2**63 - 1 would fail there, in the middle of a round (review)
    quantity(value, bits=63)


def _uint256(value: object) -> None:
    quantity(value)


def _hash(value: object) -> None:
    hex_data(value, size=32)


def _data(value: object) -> None:
    hex_data(value)


_Fields: TypeAlias = Mapping[str, Callable[[object], None]]


def _object(value: object, required: _Fields, optional: _Fields) -> None:
    """A JSON object with every `required` field, and `optional` ones absent, null or read."""
    if not isinstance(value, dict):
        raise MalformedAnswer(f"not a JSON object: {_shown(value)}")
    name = ""
    try:
        for name, read in required.items():
            if name not in value:
                raise MalformedAnswer("absent")
            read(value[name])
        for name, read in optional.items():
            field = value.get(name)
            if field is not None:
                read(field)
    except MalformedAnswer as exc:
        raise MalformedAnswer(f"{name}: {exc}") from None


def _status(value: object) -> None:
    if quantity(value, bits=8) not in (0, 1):
        raise MalformedAnswer(f"not a receipt status: {_shown(value)}")


# The fields the tracker reads (track/mined.py, decisions.py). A receipt's status is absent
# before Byzantium (and on chains that kept the state root instead).
_RECEIPT = (
    {"blockNumber": _uint64, "blockHash": _hash},
    {"status": _status, "gasUsed": _uint64, "effectiveGasPrice": _uint256},
)
_BLOCK = ({"number": _uint64, "timestamp": _uint64}, {"baseFeePerGas": _uint256})


def _receipt(value: object) -> None:
    if value is not None:  # null: not mined (yet)
        _object(value, *_RECEIPT)


def _block(value: object) -> None:
    if value is not None:  # null: no such block
        _object(value, *_BLOCK)


def _list_of(
    read: Callable[[object], None], *, non_empty: bool = False
) -> Callable[[object], None]:
    def check_list(value: object) -> None:
        if not isinstance(value, list) or (non_empty and not value):
            raise MalformedAnswer(f"not a{' non-empty' if non_empty else ''} list")
        for item in value:
            read(item)

    return check_list


_FEE_HISTORY = (
    {"baseFeePerGas": _list_of(_uint256, non_empty=True)},
    {"reward": _list_of(_list_of(_uint256))},
)


def _fee_history(value: object) -> None:
    _object(value, *_FEE_HISTORY)


def _count(value: object) -> None:
    # A txpool_status count: some nodes count in plain JSON numbers (track/pool.py).
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return
    _uint64(value)


def _pool_status(value: object) -> None:
    _object(value, {}, {"pending": _count, "queued": _count})


_SHAPES: dict[str, Callable[[object], None]] = {
    "eth_chainId": _uint256,
    "eth_blockNumber": _uint64,
    "eth_gasPrice": _uint256,
    "eth_maxPriorityFeePerGas": _uint256,
    "eth_estimateGas": _uint64,
    "eth_getBalance": _uint256,
    "eth_getTransactionCount": _uint64,
    "eth_feeHistory": _fee_history,
    "eth_getBlockByNumber": _block,
    "eth_getBlockByHash": _block,
    "eth_getTransactionReceipt": _receipt,
    "eth_sendRawTransaction": _hash,
    "eth_call": _data,
    "eth_getCode": _data,
    "txpool_status": _pool_status,
}
