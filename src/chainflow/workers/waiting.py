"""Waiting in worker loops: until any of some events is set, or a timeout."""

import asyncio


async def wait_any(*events: asyncio.Event, timeout_s: float) -> None:
    """Return when any of `events` is set or after `timeout_s`, whichever comes first."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
