"""Pydantic field types for the wire formats: wei as decimal strings, checksummed addresses."""

from typing import Annotated

from eth_utils.address import is_address, to_checksum_address
from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

MAX_UINT256 = 2**256 - 1

MAX_CHAIN_ID = 2**53  # exclusive
ChainId = Annotated[int, Field(gt=0, lt=MAX_CHAIN_ID)]
"""EIP-155 chain id: positive and below 2**53, so every stored one fits the BIGINT columns
and a larger one is refused as invalid input (not an int64 overflow in the database driver)."""


def _parse_wei(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a decimal string of wei")
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 78:
        raise ValueError("must be a decimal string of wei (digits only)")
    amount = int(text)
    if amount > MAX_UINT256:
        raise ValueError("must fit in 256 bits")
    return amount


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _checksum(value: str) -> str:
    if not is_address(value):
        raise ValueError("must be a 20-byte hex address (0x + 40 hex digits)")
    return str(to_checksum_address(value))


WeiStr = Annotated[
    int,
    BeforeValidator(_parse_wei),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{1,78}$", "examples": ["1000000000"]}),
]
"""Wei amount: a decimal string on the wire, an int in Python."""

TextStr = Annotated[str, AfterValidator(_no_nul)]
"""Free text kept in the database: no NUL character, which PostgreSQL text cannot hold."""

AddressStr = Annotated[
    str,
    AfterValidator(_checksum),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^0x[0-9a-fA-F]{40}$",
            "examples": ["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"],
        }
    ),
]
"""Address in any case on input, EIP-55 checksummed on output."""
