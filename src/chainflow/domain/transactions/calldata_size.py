"""The ABI-encoded size of a call, counted from its JSON arguments without encoding them.

Encoding is slow (eth-abi: ~35 ms for 128 KiB here) and grows with the arguments, so the size
is counted first and the count stops as soon as it passes the limit: every value it visits
adds at least 32 bytes, so it visits at most limit / 32 values whatever the input holds.
"""

from typing import Any

from eth_abi.grammar import ABIType, BasicType, TupleType

from chainflow.core.errors import InvalidInput

# geth refuses a transaction above 128 KiB (txMaxSize), so larger calldata can never be sent.
MAX_CALLDATA_BYTES = 128 * 1024
_WORD = 32
_SELECTOR = 4
# A static value given as text (a number, an address, bytes32 hex) is at most ~80 characters;
# the cap keeps a huge string from being parsed as a number or echoed in an error.
_MAX_STATIC_TEXT = 256


class InvalidCall(InvalidInput):
    code = "invalid_function_call"


class CalldataTooLarge(InvalidInput):
    code = "calldata_too_large"


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise CalldataTooLarge(
                f"the encoded call is larger than the calldata limit of {self.limit} bytes",
                limit_bytes=self.limit,
            )


def measure_call(types: list[ABIType], args: list[Any], *, limit: int) -> int:
    """Selector plus encoded arguments, in bytes, checking the shape of every value visited.

    Raises:
        CalldataTooLarge: as soon as the count passes `limit`.
        InvalidCall: a value's shape does not fit its type (array length, tuple size).
    """
    budget = _Budget(limit)
    budget.spend(_SELECTOR)
    _measure_sequence(types, args, budget)
    return budget.used


def _measure_sequence(types: list[ABIType], values: list[Any], budget: _Budget) -> None:
    for abi_type, value in zip(types, values, strict=True):
        _measure_item(abi_type, value, budget)


def _measure_item(abi_type: ABIType, value: Any, budget: _Budget) -> None:
    # A dynamic value sits in the tail, pointed at by a one-word offset in the head.
    if abi_type.is_dynamic:
        budget.spend(_WORD)
    _measure(abi_type, value, budget)


def _measure(abi_type: ABIType, value: Any, budget: _Budget) -> None:
    if abi_type.is_array:
        _measure_array(abi_type, value, budget)
    elif isinstance(abi_type, TupleType):
        components = list(abi_type.components)
        _require_list(abi_type, value, len(components))
        _measure_sequence(components, value, budget)
    elif isinstance(abi_type, BasicType):
        budget.spend(_basic_size(abi_type, value, budget))


def _measure_array(abi_type: ABIType, value: Any, budget: _Budget) -> None:
    dimension = abi_type.arrlist[-1] if abi_type.arrlist else ()
    _require_list(abi_type, value, dimension[0] if dimension else None)
    if not dimension:
        budget.spend(_WORD)  # the length of a dynamic array
    item = abi_type.item_type
    for element in value:
        _measure_item(item, element, budget)


def _require_list(abi_type: ABIType, value: Any, length: int | None) -> None:
    if not isinstance(value, list):
        raise InvalidCall(f"{abi_type.to_type_str()} argument must be a JSON array")
    if length is not None and len(value) != length:
        raise InvalidCall(f"{abi_type.to_type_str()} argument must have {length} item(s)")


def _basic_size(abi_type: BasicType, value: Any, budget: _Budget) -> int:
    if not isinstance(value, str):
        return _WORD  # a static value, or a dynamic one the encoder refuses anyway
    if not abi_type.is_dynamic:
        if len(value) > _MAX_STATIC_TEXT:
            raise InvalidCall(f"{abi_type.to_type_str()} argument is too long")
        return _WORD
    if abi_type.base == "bytes":
        digits = len(value) - 2 if value.startswith("0x") else len(value)  # no copy of value
        length = (digits + 1) // 2
    elif len(value) > budget.limit:  # UTF-8 takes at least a byte per character
        length = len(value)
    else:
        try:
            length = len(value.encode())
        except UnicodeEncodeError:
            raise InvalidCall("string argument is not valid Unicode") from None
    return _WORD + -(-length // _WORD) * _WORD  # length word, then the padded bytes
