"""Wait for a condition by polling with a deadline; never sleep to synchronise.

The one polling helper of the tests, in two forms: `eventually` in async tests (it yields to
the event loop between checks) and `eventually_sync` in blocking code (child processes). A
check that raises (a child process exited, another one holds its port) ends the wait at once
with that error; a check still falsy at the deadline fails it with an AssertionError naming
`what` was awaited and the last result."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# What a wait was for, in its AssertionError: a text, or made when it fails (a log's tail).
What = str | Callable[[], str]


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float = 10,
    interval_s: float = 0.05,
    what: What = "condition",
) -> T:
    """Return the first truthy result of `check`, or fail after `timeout_s`. The deadline
    runs on the event loop's clock; `interval_s=0` yields one turn between checks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        last = await check()
        if last:
            return last
        if loop.time() >= deadline:
            raise _timed_out(what, timeout_s, last)
        await asyncio.sleep(interval_s)


def eventually_sync(
    check: Callable[[], T | None],
    *,
    timeout_s: float = 10,
    interval_s: float = 0.05,
    what: What = "condition",
) -> T:
    """`eventually` for blocking code: the first truthy result of `check`, or fail after
    `timeout_s`, blocking the thread between checks."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s, last)
        time.sleep(interval_s)  # the poll interval of this one polling helper


def _timed_out(what: What, timeout_s: float, last: object) -> AssertionError:
    said = what if isinstance(what, str) else what()
    return AssertionError(f"{said} not met within {timeout_s} s (last: {last!r})")
