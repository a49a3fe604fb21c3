"""Group commit of submissions (PostgreSQL): the requests that reach the insert within a short
window are stored by one statement and one commit, on a connection of the group's own.

Each caller still gets its own answer: `insert` returns whether its request was stored, or
False when its idempotency key was taken (by a stored request or by an earlier caller of the
same group), exactly as `intake.insert_request` answers for one request, so the service's
replay and conflict paths run unchanged. A group whose statement fails (a database error, a
lost connection) is atomic: it stored all or nothing. Each of its callers is told to store its
request on its own connection (None); a request the lost statement did store is found there by
its id (service.submit), never stored twice, and any other error is that request's own, as
without groups.

Every check before the insert (key restrictions, chain, wallet, lane, caps, rate limits) runs
per request, as before; a wallet with a spending policy never reaches a group (it needs a DB
transaction that holds the policy's lock, service.py). The chain, wallet and lane a request
is checked against are remembered in `targets` for the next requests, and the group's
statement checks them again as it stores (domain/transactions/targets.py): a request they no
longer admit is not stored by it, and is checked again on its own.
"""

import asyncio
import contextlib

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chainflow.core.logging import get_logger
from chainflow.core.types import TxId
from chainflow.domain.transactions.repository import intake
from chainflow.domain.transactions.rows import NewRequest
from chainflow.domain.transactions.targets import TargetCache

log = get_logger(__name__)

MAX_GROUP = 500  # rows per statement; beyond, the next group


class GroupCommit:
    """Coalesce `insert` calls arriving within `window_s` into one statement."""

    def __init__(self, engine: AsyncEngine, window_s: float) -> None:
        """`engine`: the group's own (closed by `close`), not the one whose pooled connections
        the waiting callers hold."""
        self._own = engine
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._window_s = window_s
        self._pending: list[tuple[NewRequest, asyncio.Future[bool | None]]] = []
        self._connection: AsyncConnection | None = None
        # The one task storing groups: one statement at a time on the group's connection.
        self._flusher: asyncio.Task[None] | None = None
        # Valid only with the group's statement, which checks them again as it stores.
        self.targets = TargetCache()

    async def insert(self, request: NewRequest) -> bool | None:
        """Store `request` with the others of its group; False when its idempotency key was
        taken, None when the group stored nothing (store it on your own)."""
        answer: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._pending.append((request, answer))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await answer

    async def _flush(self) -> None:
        """Store groups while requests wait: the first after `window_s`, each next one at once
        with what arrived while the previous statement ran (so a slow commit makes groups
        larger, not a queue of small ones)."""
        try:
            await asyncio.sleep(self._window_s)
            while self._pending:
                group = self._pending[:MAX_GROUP]
                del self._pending[:MAX_GROUP]
                await self._store(group)
        finally:
            self._flusher = None
            if self._pending:  # arrived after the loop's last look (cancelled: on close)
                self._flusher = asyncio.create_task(self._flush())

    async def _store(self, group: list[tuple[NewRequest, asyncio.Future[bool | None]]]) -> None:
        try:
            stored = await self._run([request for request, _ in group])
        except BaseException as exc:  # cancelled too (shutdown): no caller is left waiting
            log.warning("api.group_commit_failed", rows=len(group), error=type(exc).__name__)
            for _, answer in group:
                if not answer.done():
                    answer.set_result(None)
            if not isinstance(exc, Exception):
                raise
            return
        for request, answer in group:
            if not answer.done():
                answer.set_result(request.id in stored)

    async def _run(self, requests: list[NewRequest]) -> set[TxId]:
        if self._connection is None:
            self._connection = await self._engine.connect()
        try:
            return await intake.insert_grouped(self._connection, requests)
        except BaseException:
            # A connection that failed is not reused: the next group opens a new one.
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await connection.invalidate()
                await connection.close()
            raise

    async def close(self) -> None:
        """Store what is pending, then close the group's connection."""
        while self._flusher is not None:
            await self._flusher
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        await self._own.dispose()
