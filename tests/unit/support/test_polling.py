"""The tests' one polling helper: the first truthy result, a check's own error at once, and
an AssertionError naming what was awaited at the deadline, in both forms."""

import asyncio
import itertools

import pytest

from tests.support.polling import eventually, eventually_sync


async def test_it_returns_the_first_truthy_result() -> None:
    results = iter([None, 0, "", 7, 8])

    async def check() -> int | str | None:
        return next(results)

    assert await eventually(check, interval_s=0) == 7
    assert next(results) == 8  # no check after the first truthy one


async def test_it_names_what_it_waited_for_and_the_last_result() -> None:
    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"^the reply not met within 0.1 s \(last: False\)"):
        await eventually(never, timeout_s=0.1, interval_s=0.01, what="the reply")
    with pytest.raises(AssertionError, match=r"^log: empty not met"):
        await eventually(never, timeout_s=0, what=lambda: "log: empty")


async def test_a_check_that_raises_ends_the_wait_at_once() -> None:
    async def exited() -> bool:
        raise AssertionError("the process exited")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AssertionError, match="the process exited"):
        await eventually(exited, timeout_s=30)
    assert loop.time() - started < 5


async def test_a_zero_timeout_still_checks_once() -> None:
    async def ready() -> bool:
        return True

    assert await eventually(ready, timeout_s=0)


def test_the_blocking_form_polls_until_truthy_or_fails_at_the_deadline() -> None:
    calls = itertools.count()
    assert eventually_sync(lambda: next(calls) == 3, interval_s=0.001)
    with pytest.raises(AssertionError, match=r"^a port not met within 0.05 s \(last: None\)"):
        eventually_sync(lambda: None, timeout_s=0.05, interval_s=0.01, what="a port")
