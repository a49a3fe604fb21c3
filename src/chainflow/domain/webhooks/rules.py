"""Which events an endpoint takes and when a failed delivery is tried again: pure, no I/O."""

import functools
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from chainflow.core.numerals import delay_seconds

# A Retry-After longer than this is read as this: a receiver cannot park a delivery for days.
MAX_RETRY_AFTER_S = 3600.0
_JITTER = 0.1  # ±10 %, so deliveries failed together do not come back together


@dataclass(frozen=True)
class Subscription:
    """An endpoint's filters: event-type globs, and optional wallet and chain ids."""

    event_types: Sequence[str]
    wallet_ids: Sequence[str] | None = None
    chain_ids: Sequence[int] | None = None

    def matches(self, event_type: str, *, wallet_id: str | None, chain_id: int | None) -> bool:
        """True if the event passes every filter (an event without a wallet or chain passes
        that filter: `webhook.endpoint.disabled` has neither)."""
        if not any(_glob(glob).fullmatch(event_type) for glob in self.event_types):
            return False
        if self.wallet_ids and wallet_id is not None and wallet_id not in self.wallet_ids:
            return False
        return not (self.chain_ids and chain_id is not None and chain_id not in self.chain_ids)


# An endpoint's few globs, matched against every event fanned out; bounded, as patterns come
# from users and can be changed at will (re's own cache held 512).
@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """`*` matches any run of characters (dots too); every other character only itself."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def retry_delay_s(
    schedule: Sequence[float],
    attempts: int,
    *,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """The wait before attempt `attempts + 1`, None once the schedule is used up.

    `attempts` counts the attempts made so far (≥ 1). A receiver's Retry-After (bounded by
    MAX_RETRY_AFTER_S) lengthens the wait, never shortens it.
    """
    if attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    jittered = base * (1 + _JITTER * (2 * (rng or random).random() - 1))
    if retry_after_s is not None:
        jittered = max(jittered, min(retry_after_s, MAX_RETRY_AFTER_S))
    return jittered


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None if absent or
    unreadable (RFC 9110 §10.2.3)."""
    if not value:
        return None
    text = value.strip()
    seconds = delay_seconds(text, max_s=10.0**9)  # retry_delay_s bounds it further
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    seconds = (when - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
