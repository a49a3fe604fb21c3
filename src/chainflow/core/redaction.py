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
# AWS credentials as botocore's debug lines show them (defence in depth: those loggers are
# kept at INFO, core/logging.py): a session token header or query value, and an access key
# id, alone or in a SigV4 `Credential=AKIA…/date/region/service/aws4_request` scope.
_AWS_TOKEN = re.compile(
    r"""(x-amz-security-token['"]?\s*[:=]\s*b?['"]?)[^'"\s,;&}]+""", re.IGNORECASE
)
_AWS_CREDENTIAL = re.compile(r"(credential=)[^,\s'\"&]+", re.IGNORECASE)
_AWS_KEY_ID_PREFIXES = ("AKIA", "ASIA", "AIDA", "AROA")
_AWS_KEY_ID = re.compile(rf"\b(?:{'|'.join(_AWS_KEY_ID_PREFIXES)})[A-Z0-9]{{12,}}\b")


def has_key_material(text: str) -> bool:
    """True when `text` holds a run of 64+ hex digits: what a private key looks like."""
    return _KEY_MATERIAL.search(text) is not None


def scrub_text(text: str) -> str:
    """Replace key-shaped hex runs, bearer tokens and AWS credentials in free text."""
    text = _BEARER.sub(r"\1" + REDACTED, _KEY_MATERIAL.sub(REDACTED, text))
    # The AWS patterns only where their markers are: they doubled the cost of every log
    # line (~34 -> ~73 us a typical event, review); case-insensitive as the patterns are.
    folded = text.casefold()
    if "x-amz-security-token" in folded:
        text = _AWS_TOKEN.sub(r"\1" + REDACTED, text)
    if "credential=" in folded:
        text = _AWS_CREDENTIAL.sub(r"\1" + REDACTED, text)
    if any(prefix in text for prefix in _AWS_KEY_ID_PREFIXES):
        text = _AWS_KEY_ID.sub(REDACTED, text)
    return text


def scrub_value(value: Any) -> Any:
    """scrub_text applied to every string of a JSON-like value, mapping keys included."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {scrub_value(key): scrub_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(item) for item in value]
    return value
