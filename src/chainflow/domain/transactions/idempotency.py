"""Idempotency keys: what a caller may send, and the key each request is stored under.

A key is 1 to 250 characters of printable ASCII other than `#` (no space, no control
character): UUIDs, ULIDs, hashes and base64 fit. A single request is stored under the key as
sent; item i of a batch under `<key>#<i>`. A key a caller sends never holds `#`, so a single
request's stored key never equals a batch item's: the two namespaces cannot collide (a single
`K#0` once took the place of item 0 of batch `K`). The empty key is refused, not a key.
"""

import re

from chainflow.domain.transactions.errors import InvalidIdempotencyKey

KEY_MAX = 250  # with "#499", the last item of the largest batch, it fits the 255-char column
_SEPARATOR = "#"
_KEY = re.compile(r"[\x21\x22\x24-\x7e]+")  # printable ASCII without space and `#`
RULE = f"1 to {KEY_MAX} printable ASCII characters, none of them a space or `#`"


def single_key(key: str | None) -> str | None:
    """The stored key of a single request. Raises: InvalidIdempotencyKey."""
    return None if key is None else _checked(key)


def batch_keys(key: str | None, count: int) -> list[str] | None:
    """The stored key of each of `count` items, and one more: the key an item past the end
    of a longer batch would have. Raises: InvalidIdempotencyKey."""
    if key is None:
        return None
    base = _checked(key)
    return [f"{base}{_SEPARATOR}{index}" for index in range(count + 1)]


def _checked(key: str) -> str:
    if len(key) > KEY_MAX or not _KEY.fullmatch(key):
        # The key is not quoted back: a caller may have put anything in the header.
        raise InvalidIdempotencyKey(f"the Idempotency-Key header must be {RULE}")
    return key
