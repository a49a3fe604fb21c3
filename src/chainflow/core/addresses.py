"""EVM addresses and wallet references as callers write them.

An address is `0x` and 40 hex digits, all lower case, all upper case, or mixed case that is
exactly its EIP-55 checksum: mixed case with a wrong checksum is a typo, and "fixing" it would
send funds to an address nobody checked. A `0X` prefix, or none, is refused.
"""

import functools
import re
import uuid

from eth_utils.address import to_checksum_address

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
# What a caller meant as an address: refused with a reason, never read as "no such wallet".
_ADDRESS_LIKE = re.compile(r"(?:0[xX])?[0-9a-fA-F]{40}")


def checksum_address(text: str) -> str:
    """The EIP-55 form of an address. Raises: ValueError, saying what is wrong (never echoing
    the input)."""
    if not _ADDRESS.fullmatch(text):
        raise ValueError("must be 0x followed by 40 hex digits")
    checksummed = _checksummed(text[2:].lower())
    digits = text[2:]
    if digits not in (digits.lower(), digits.upper()) and text != checksummed:
        raise ValueError("has a wrong EIP-55 checksum: give it all lower case or checksummed")
    return checksummed


# Keccak per address was 7% of the API's CPU per submission (the body's wallet and `to`, each
# checked twice; docs/performance.md); callers send to and from the same addresses again and
# again. Bounded: at most this many addresses, ~150 bytes each.
@functools.lru_cache(maxsize=8192)
def _checksummed(lower_digits: str) -> str:
    return str(to_checksum_address("0x" + lower_digits))


def parse_wallet_ref(text: str) -> uuid.UUID | str | None:
    """A wallet id (UUID) or a checksummed address; None when `text` is neither, which no
    wallet matches. Raises: ValueError when it is shaped like an address but is not a valid one.
    """
    if _ADDRESS_LIKE.fullmatch(text):
        return checksum_address(text)
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
