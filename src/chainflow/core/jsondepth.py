"""Bounded JSON nesting: a scan of the raw bytes that refuses deep input before any recursive
parser sees it, so the bound holds whatever the interpreter's recursion limit is (issue 14:
100,000 nested `[` overflowed the C stack inside the stdlib parser and killed the process)."""

import json
from typing import Any

MAX_JSON_DEPTH = 32
"""Our deepest legitimate JSON (a batch item's nested ABI arguments, an RPC receipt's log
topics) is under 10 levels."""

# Every byte but brackets and quotes goes; brackets become `(` and `)`.
_STRUCTURE_ONLY = bytes(byte for byte in range(256) if byte not in b'[]{}"')
_TO_PARENS = bytes.maketrans(b"[{]}", b"(())")


class JsonTooDeep(ValueError):
    """The input nests deeper than allowed (or leaves that many brackets open)."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nested deeper than {max_depth} levels")
        self.max_depth = max_depth


def check_depth(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise JsonTooDeep if a parser could recurse more than `max_depth` levels into `data`.

    Conservative: unclosed brackets count as open levels. Input that is not JSON at all may
    pass; the parser then refuses it without recursing past this bound.
    """
    raw = _utf8(data)
    if raw is None:
        return
    structure = raw.translate(_TO_PARENS, _STRUCTURE_ONLY)
    if structure.count(b"(") <= max_depth:
        return  # the common case: too few brackets to be deep
    if _exceeds(_brackets_outside_strings(raw, structure), max_depth):
        raise JsonTooDeep(max_depth)


def loads(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads (exact big integers) after check_depth. Raises: JsonTooDeep, ValueError."""
    check_depth(data, max_depth)
    return json.loads(data)


def _utf8(data: bytes | str) -> bytes | None:
    """The bytes to scan: in UTF-8 every bracket and quote byte is that ASCII character (in
    UTF-16 a quote byte can sit inside another character and hide brackets from the scan)."""
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    encoding = json.detect_encoding(data)
    if encoding in ("utf-8", "utf-8-sig"):
        return data
    try:
        return data.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    except UnicodeError:
        return None  # json.loads fails to decode it too, before parsing anything


def _brackets_outside_strings(raw: bytes, structure: bytes) -> bytes:
    """`(`/`)` for each bracket outside a string, from `raw` and its `structure` (its
    brackets and quotes). Escaped backslashes, then escaped quotes, go first (left to right,
    as a parser pairs them), so every quote left opens or closes a string; strings are then
    the odd pieces between quotes. On input that is not JSON the parser stops at its first
    error, before any level this reading could have missed.

    Costs (a batch of 100 receipts, 136 KB; docs/performance.md item 56): the escapes are
    looked for only when there is a backslash (two replaces over the whole input were ~70%
    of the scan), and most answers have no bracket inside a string, so each string is a
    `""` and deleting those pairs, left to right, leaves no quote exactly when that is so
    (the first quote left is one whose string holds a bracket, or an unpaired one); only
    then are the strings cut out piece by piece."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
        structure = raw.translate(_TO_PARENS, _STRUCTURE_ONLY)
    plain = structure.replace(b'""', b"")
    if b'"' not in plain:
        return plain
    return b"".join(structure.split(b'"')[::2])


def _exceeds(brackets: bytes, max_depth: int) -> bool:
    """Each round deletes the innermost `()` pairs, so a pair goes in the round equal to its
    height; whatever survives `max_depth` rounds is nested deeper."""
    too_deep_run = b"(" * (max_depth + 1)
    for rounds in range(max_depth + 1):
        if b"(" not in brackets:
            return False
        if too_deep_run in brackets:
            return True
        shorter = brackets.replace(b"()", b"")
        if len(shorter) == len(brackets):  # only unmatched `)…)(…(` are left
            return rounds + brackets.count(b"(") > max_depth
        brackets = shorter
    return True
