"""Pydantic field types for the wire formats: wei as decimal strings, checksummed addresses."""

import unicodedata
from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    Strict,
    WithJsonSchema,
)

from chainflow.core.addresses import checksum_address, parse_wallet_ref
from chainflow.core.redaction import has_key_material

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


def _plain_text(value: str) -> str:
    _no_nul(value)
    if has_key_material(value):  # it would be stored in clear and shown in every listing
        raise ValueError("must not contain 64 hex digits in a row (it looks like a private key)")
    return value


def _one_line(value: str) -> str:
    _plain_text(value)
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters (newlines, terminal escapes)")
    return value


def _wallet_ref(value: str) -> str:
    parse_wallet_ref(value)  # refuses a malformed address; the text is kept as given
    return value


def _timestamp_text(value: object) -> object:
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string, e.g. 2026-01-01T00:00:00Z")
    return value


WeiStr = Annotated[
    int,
    BeforeValidator(_parse_wei),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{1,78}$", "examples": ["1000000000"]}),
]
"""Wei amount: a decimal string on the wire, an int in Python."""

TextStr = Annotated[str, AfterValidator(_plain_text)]
"""Free text kept in the database: no NUL character, which PostgreSQL text cannot hold, and
nothing shaped like a private key."""

LabelStr = Annotated[str, AfterValidator(_one_line)]
"""A label shown on one line (the console, `chainflow wallet list`): TextStr without control
characters, as the CLI's `--label` takes it (a newline or a terminal escape forged lines of the
operator's listing)."""

NoNulStr = Annotated[str, AfterValidator(_no_nul)]
"""Text compared with stored text (a query filter): no NUL character, which PostgreSQL text
cannot hold (it failed the whole statement: a 500)."""

AddressStr = Annotated[
    str,
    AfterValidator(checksum_address),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^0x[0-9a-fA-F]{40}$",
            "examples": ["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"],
        }
    ),
]
"""Address all lower, all upper or EIP-55 case on input (a wrong checksum is refused),
checksummed on output."""

WalletRef = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_wallet_ref)]
"""A wallet id or address. Kept as given: it is part of a request's idempotency fingerprint."""

Timestamp = Annotated[datetime, BeforeValidator(_timestamp_text), Strict(False)]
"""A date-time in a strict request body: an RFC 3339 string, never a number."""


def _utc_representable(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must include a timezone, e.g. 2026-01-01T00:00:00Z")
    try:
        value.astimezone(UTC)  # compared and stored in UTC
    except OverflowError:  # 9999-12-31T23:00-02:00 is past year 9999 in UTC
        raise ValueError("must fall within years 1 to 9999 in UTC") from None
    return value


UtcTimestamp = Annotated[Timestamp, AfterValidator(_utc_representable)]
"""A `Timestamp` with a time zone that stays within years 1 to 9999 once in UTC (kept as
given, offset and all): refused as input, not an OverflowError (a 500) where it is compared
or stored."""
