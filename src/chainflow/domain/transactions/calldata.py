"""Calldata from a function signature and JSON arguments, encoded with eth-abi."""

import re
from typing import Any

from eth_abi.abi import encode
from eth_abi.exceptions import EncodingError, ParseError
from eth_abi.grammar import BasicType, TupleType, parse
from eth_utils.abi import function_signature_to_4byte_selector

from chainflow.core.addresses import checksum_address
from chainflow.core.errors import InvalidInput

_INTEGER_TEXT = re.compile(r"-?(?:0x[0-9a-fA-F]+|[0-9]+)")
_HEX_BYTES = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


class InvalidCall(InvalidInput):
    code = "invalid_function_call"


def _argument_types(signature: str) -> list[str]:
    name, _, rest = signature.partition("(")
    if not name.isidentifier() or not rest.endswith(")"):
        raise InvalidCall(f"function must look like name(type,...), got {signature!r}")
    try:
        parsed = parse("(" + rest)
    except ParseError as exc:
        raise InvalidCall(f"bad argument types in {signature!r}: {exc}") from None
    if not isinstance(parsed, TupleType):
        raise InvalidCall(f"bad argument types in {signature!r}")
    parsed.validate()
    return [component.to_type_str() for component in parsed.components]


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


def encode_call(signature: str, args: list[Any]) -> bytes:
    """4-byte selector plus ABI-encoded arguments. Raises: InvalidCall."""
    signature = signature.replace(" ", "")
    types = _argument_types(signature)
    if len(args) != len(types):
        raise InvalidCall(f"{signature} takes {len(types)} argument(s), got {len(args)}")
    try:
        values = [_coerce(t, v) for t, v in zip(types, args, strict=True)]
        return bytes(function_signature_to_4byte_selector(signature)) + encode(types, values)
    except (EncodingError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidCall(f"arguments do not match {signature}: {exc}") from None
