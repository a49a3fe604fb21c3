"""Chain signals: tell every worker process at once that a chain's loop has work now.

A drain that sent transactions wants the tracker (maybe in another process) to look; a
tracker round that confirmed requests frees room in lanes another process drains. Without a
signal each waits for its next poll. Redis pub/sub, best effort by design: a lost signal
costs one poll interval, never a request (every round re-reads the database).

A signal that says "come" (a round left lanes to the other workers: workers/placement.py)
carries the sender's id with `_COME` after it; it wakes a worker that holds nothing too. One
that says "sent" (a drain's step recorded its sends) carries `_SENT`: it can only concern the
chain's tracker, which may look without a whole round (docs/performance.md item 49). A worker
of an earlier version reads either as another sender's plain signal.
"""

import asyncio
import contextlib
from collections.abc import Callable

import redis.asyncio as redis

from chainflow.core.logging import get_logger
from chainflow.core.numerals import ascii_int

log = get_logger(__name__)
_PUBLISH_TIMEOUT_S = 0.5
_RETRY_S = (0.5, 5.0)  # reconnect backoff of the listener: first, cap
_COME = " come"
_SENT = " sent"


class RedisSignals:
    """Publish and receive chain signals; `sender` tells this process's own apart."""

    def __init__(self, url: str, *, sender: str, prefix: str = "chainflow") -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
        self._sender = sender
        self._prefix = f"{prefix}:signal:"
        self._pending: dict[tuple[int, str], asyncio.Task[None]] = {}
        self._failing = False

    def publish_soon(self, chain_id: int, *, come: bool = False, sent: bool = False) -> None:
        """Signal `chain_id` in the background; never blocks nor fails the caller. A signal
        of the same kind still on its way for this chain covers this one. `come`: lanes were
        left for the other workers; `sent`: a drain recorded sends, for the tracker only."""
        kind = _COME if come else _SENT if sent else ""
        running = self._pending.get((chain_id, kind))
        if running is not None and not running.done():
            return
        self._pending[chain_id, kind] = asyncio.create_task(self._publish(chain_id, kind))

    async def _publish(self, chain_id: int, kind: str) -> None:
        message = self._sender + kind
        try:
            await asyncio.wait_for(
                self._redis.publish(f"{self._prefix}{chain_id}", message),
                timeout=_PUBLISH_TIMEOUT_S,
            )
            self._failing = False
        except Exception as exc:  # best effort, in the background: a lost signal costs a poll
            if not self._failing:  # once per outage, not once per round
                log.warning("signals.publish_failed", error=repr(exc)[:200])
            self._failing = True

    async def listen(
        self,
        on_signal: Callable[[int], None],
        stop: asyncio.Event,
        *,
        on_come: Callable[[int], None] | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        """Call `on_signal(chain_id)` for each signal from another process until `stop`, or
        `on_come(chain_id)` if given for one that says "come", `on_sent(chain_id)` if given
        for one that says "sent"; reconnects with backoff while Redis is away."""
        handlers = {"": on_signal, _COME: on_come or on_signal, _SENT: on_sent or on_signal}
        delay_s = _RETRY_S[0]
        while not stop.is_set():
            try:
                await self._receive(handlers, stop)
                delay_s = _RETRY_S[0]
            except Exception as exc:  # never the worker's end: its loops poll without signals
                log.warning("signals.listen_failed", error=repr(exc)[:200], retry_s=delay_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay_s)
                delay_s = min(delay_s * 2, _RETRY_S[1])

    async def _receive(
        self, handlers: dict[str, Callable[[int], None]], stop: asyncio.Event
    ) -> None:
        async with self._redis.pubsub() as pubsub:
            await pubsub.psubscribe(f"{self._prefix}*")
            while not stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") != "pmessage":
                    continue
                sender = _text(message["data"])
                kind = next((k for k in (_COME, _SENT) if sender.endswith(k)), "")
                if sender.removesuffix(kind) == self._sender:
                    continue
                chain = _text(message["channel"]).removeprefix(self._prefix)
                chain_id = ascii_int(chain, max_digits=16)  # a channel anyone on Redis can name
                if chain_id is not None:
                    handlers[kind](chain_id)

    async def close(self) -> None:
        for task in self._pending.values():
            task.cancel()
        await self._redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
