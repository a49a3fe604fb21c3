"""Whole numbers read from text that came from outside: ASCII digits only, bounded length.

`str.isdigit()` is True for "²" (U+00B2), which `int()` refuses with ValueError; `int()` itself
takes "٣", " 7 " and "1_000", which no header, cursor or query parameter means. Both readings
of external text go through here instead.
"""

import re

_ASCII_DIGITS = re.compile(r"[0-9]+")
# RFC 9110 §10.2.3 delay-seconds: 1*DIGIT. Longer than this is no delay anyone means; it is
# ignored rather than converted (int() refuses past 4,300 digits, and it costs time before).
MAX_DELAY_DIGITS = 20


def ascii_int(text: str, *, max_digits: int) -> int | None:
    """The value of `text` if it is 1 to `max_digits` ASCII digits and nothing else, else None."""
    if not 0 < len(text) <= max_digits or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)


def delay_seconds(header: str | None, *, max_s: float) -> float | None:
    """A Retry-After in its delay-seconds form (surrounding spaces allowed), at most `max_s`;
    None if absent or not that form (an unparsable field is ignored: RFC 9110 §5.5)."""
    if header is None:
        return None
    seconds = ascii_int(header.strip(" \t"), max_digits=MAX_DELAY_DIGITS)
    return None if seconds is None else float(min(seconds, max_s))
