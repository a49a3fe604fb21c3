"""JSON objects that name a key twice: refused, never read one way or the other.

RFC 8259 leaves such an object's meaning open: Python's parser keeps the last value, many
others (and many proxies, WAFs and audit tools in front of an API) the first. A body such as
`{"value": "1", "value": "1000000000000000000000"}` was stored with the last amount, while
anything that read it first saw the other; a request that moves money has one meaning or none.
"""

import json
from typing import Any

from chainflow.core.redaction import scrub_text

_SHOWN_CHARS = 64


class DuplicateJsonKey(ValueError):
    """An object of the input has the same key more than once."""

    def __init__(self, key: str) -> None:
        # Redacted before it is cut: cut first, a key-shaped key kept 62 of its digits, too
        # few for redaction to know it.
        shown = scrub_text(key)
        shown = shown if len(shown) <= _SHOWN_CHARS else shown[:_SHOWN_CHARS] + "…"
        super().__init__(f"a JSON object has the key {shown!r} more than once")
        self.key = shown


def check_unique_keys(data: bytes) -> None:
    """Raise DuplicateJsonKey if an object in `data` names a key twice. Input that is not
    JSON passes: its own parser refuses it. Run after jsondepth.check_depth (the parser
    recurses)."""
    if data.count(b'"') < 4:  # fewer than two keys anywhere
        return
    try:
        json.loads(data, object_pairs_hook=_unique)
    except DuplicateJsonKey:
        raise
    except (ValueError, RecursionError):
        return


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateJsonKey(key)
            seen.add(key)
    return found
