"""Calldata from a function signature and JSON arguments, encoded with eth-abi.

The size is counted before anything is encoded (calldata_size.py), and large encodings run in
a worker thread: one request must not hold the event loop for long.
"""

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from eth_abi.abi import encode
from eth_abi.exceptions import EncodingError, ParseError
from eth_abi.grammar import ABIType, BasicType, TupleType, parse
from eth_utils.abi import function_signature_to_4byte_selector

from chainflow.core.addresses import checksum_address
from chainflow.core.errors import InvalidInput
from chainflow.domain.transactions.calldata_size import (
    MAX_CALLDATA_BYTES,
    CalldataTooLarge,
    InvalidCall,
    measure_call,
)
from chainflow.domain.transactions.schemas import TxCreate

__all__ = [
    "MAX_CALLDATA_BYTES",
    "CalldataTooLarge",
    "InvalidCall",
    "encode_call",
    "encode_calls",
]

Call = tuple[str, list[Any]]
# eth-abi encodes ~4 MB/s here, so calls totalling up to this many bytes cost the event loop
# at most ~2 ms; anything larger is encoded in a worker thread.
_INLINE_BYTES = 8 * 1024

_INTEGER_TEXT = re.compile(r"-?(?:0x[0-9a-fA-F]+|[0-9]+)")
_HEX_BYTES = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


async def encode_calls(calls: Sequence[Call]) -> list[bytes | InvalidInput]:
    """Encode each call; a call that fails gets its error in place of its bytes."""
    if _fits_inline(calls):
        return _encode_each(calls)
    return await asyncio.to_thread(_encode_each, calls)


def _fits_inline(calls: Sequence[Call]) -> bool:
    left = _INLINE_BYTES
    for signature, args in calls:
        try:
            left -= _measure(signature, args, limit=left)
        except InvalidInput:
            return False  # too big to encode here, or an error the thread reports as well
    return True


def _encode_each(calls: Sequence[Call]) -> list[bytes | InvalidInput]:
    encoded: list[bytes | InvalidInput] = []
    for signature, args in calls:
        try:
            encoded.append(encode_call(signature, args))
        except InvalidInput as exc:
            encoded.append(exc)
    return encoded


def _argument_types(signature: str) -> list[ABIType]:
    name, _, rest = signature.partition("(")
    if not name.isidentifier() or not rest.endswith(")"):
        raise InvalidCall(f"function must look like name(type,...), got {signature!r}")
    if rest == ")":
        return []  # eth-abi has no empty tuple type, but `pause()` takes no arguments
    try:
        parsed = parse("(" + rest)
        parsed.validate()
    except (ParseError, ValueError) as exc:  # ValueError: `()` nested, uint7, …
        raise InvalidCall(f"bad argument types in {signature!r}: {exc}") from None
    if not isinstance(parsed, TupleType):
        raise InvalidCall(f"bad argument types in {signature!r}")
    return list(parsed.components)


def _coerce(type_str: str, value: Any) -> Any:
    """JSON has no big ints or bytes: accept decimal strings for ints and 0x-hex for bytes."""
    parsed = parse(type_str)
    if parsed.is_array:
        if not isinstance(value, list):
            raise InvalidCall(f"{type_str} argument must be a JSON array")
        return [_coerce(parsed.item_type.to_type_str(), item) for item in value]
    if isinstance(parsed, TupleType):
        if not isinstance(value, list):
            raise InvalidCall(f"{type_str} argument must be a JSON array")
        return tuple(
            _coerce(c.to_type_str(), v) for c, v in zip(parsed.components, value, strict=True)
        )
    return _coerce_basic(parsed, value) if isinstance(parsed, BasicType) else value


def _coerce_basic(parsed: BasicType, value: Any) -> Any:
    """Integers as JSON numbers, decimal or 0x-hex strings; bytes as 0x-hex; addresses as
    validated for `to` (a wrong checksum or a `0X` prefix is refused, not repaired)."""
    kind = parsed.to_type_str()
    if parsed.base in {"uint", "int"} and isinstance(value, str):
        if not _INTEGER_TEXT.fullmatch(value):
            raise InvalidCall(f"{kind} argument {value!r} is not a decimal or 0x-hex number")
        return int(value, 0)
    if parsed.base == "bytes" and isinstance(value, str):
        if not _HEX_BYTES.fullmatch(value):
            raise InvalidCall(f"{kind} argument must be 0x-prefixed hex, an even digit count")
        return bytes.fromhex(value[2:])
    if parsed.base == "address":
        if not isinstance(value, str):
            raise InvalidCall("address argument must be a 0x-prefixed string")
        try:
            return checksum_address(value)
        except ValueError as exc:
            raise InvalidCall(f"address argument {exc}") from None
    return value


def _measure(signature: str, args: list[Any], *, limit: int) -> int:
    types = _argument_types(signature.replace(" ", ""))
    if len(args) != len(types):
        raise InvalidCall(f"{signature} takes {len(types)} argument(s), got {len(args)}")
    return measure_call(types, args, limit=limit)


def encode_call(signature: str, args: list[Any], *, limit: int = MAX_CALLDATA_BYTES) -> bytes:
    """4-byte selector plus ABI-encoded arguments, at most `limit` bytes; the size is checked
    before any encoding. Raises: InvalidCall, CalldataTooLarge."""
    _measure(signature, args, limit=limit)
    signature = signature.replace(" ", "")
    types = [abi_type.to_type_str() for abi_type in _argument_types(signature)]
    try:
        values = [_coerce(t, v) for t, v in zip(types, args, strict=True)]
        return bytes(function_signature_to_4byte_selector(signature)) + encode(types, values)
    except (EncodingError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidCall(f"arguments do not match {signature}: {exc}") from None


async def calldata_of(bodies: Sequence[TxCreate]) -> list[bytes | InvalidInput]:
    """Each body's calldata, or the error that refuses it (raised after the body's other
    checks, so a request's first error stays the same)."""
    calls = [(body.function, body.args or []) for body in bodies if body.function is not None]
    encoded = iter(await encode_calls(calls) if calls else [])
    return [
        next(encoded) if body.function is not None else bytes.fromhex((body.data or "0x")[2:])
        for body in bodies
    ]
