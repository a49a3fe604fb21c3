"""One definition of "shaped like a secret", for every place that echoes text back.

A secp256k1 private key is 64 hex digits: it looks exactly like a hash, and a caller who pastes
one into the wrong field (a label, a path, an argument) must never see it echoed in a problem
body, a log line or a CLI message. Every run of 64 or more hex digits is hidden whole, with or
without a `0x`/`0X` prefix: a key glued to other hex digits is still a key.
"""

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"
_KEY_MATERIAL = re.compile(r"(?:0[xX])?[0-9a-fA-F]{64,}")
_BEARER = re.compile(r"(bearer\s+)\S+", re.IGNORECASE)


def has_key_material(text: str) -> bool:
    """True when `text` holds a run of 64+ hex digits: what a private key looks like."""
    return _KEY_MATERIAL.search(text) is not None


def scrub_text(text: str) -> str:
    """Replace key-shaped hex runs and bearer tokens in free text."""
    return _BEARER.sub(r"\1" + REDACTED, _KEY_MATERIAL.sub(REDACTED, text))


def scrub_value(value: Any) -> Any:
    """scrub_text applied to every string of a JSON-like value, mapping keys included."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {scrub_value(key): scrub_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(item) for item in value]
    return value
