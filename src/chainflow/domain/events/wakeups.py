"""In-process wake-ups of the outbox's readers: the sequencer waits for events appended in
this process, the stream's poller for events sequenced in it. Only hints: both also poll, so
events written by another process are found at the next poll (docs/events.md)."""

from collections.abc import Callable

from chainflow.infra.db.commit_hooks import on_commit


class Wakeups:
    """Callbacks to run when something happens; each must be cheap and must not raise."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` on every ring until the returned function is called."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def ring(self) -> None:
        for listener in list(self._listeners):
            listener()

    def ring_on_commit(self) -> None:
        """Ring once the open unit of work commits (at once when none is open)."""
        if self._listeners:  # the API process of a distributed shape has none: no cost
            on_commit(self.ring)


appended = Wakeups()  # events were committed in this process
sequenced = Wakeups()  # events got their cursors in this process
