"""Retry schedules written as comma-separated seconds (`CHAINFLOW_WEBHOOK_RETRY_SCHEDULE`)."""

import math

MAX_STEPS = 50
MAX_DELAY_S = 7 * 86_400.0


def parse_retry_schedule(text: str) -> tuple[float, ...]:
    """'5,300,1800' → (5.0, 300.0, 1800.0): the waits before the 2nd, 3rd, … attempt.

    Raises:
        ValueError: not 1 to 50 finite numbers in [0, 7 days].
    """
    try:
        steps = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("must be comma-separated seconds, e.g. 5,300,1800") from None
    if not 1 <= len(steps) <= MAX_STEPS:
        raise ValueError(f"must list 1 to {MAX_STEPS} delays")
    if any(not math.isfinite(s) or not 0 <= s <= MAX_DELAY_S for s in steps):
        raise ValueError("each delay must be between 0 and 604800 seconds")
    return steps
