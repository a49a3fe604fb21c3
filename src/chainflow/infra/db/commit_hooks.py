"""What the innermost open unit of work runs once it has committed: metrics of what it wrote
(a count taken before the commit would over-count every rolled-back round, issue 18).

Apart from uow.py, so that domain code may register a hook without being able to open a
unit of work (import-linter: "domain steps never open a unit of work").
"""

from collections.abc import Callable
from contextvars import ContextVar

after_commit: ContextVar[list[Callable[[], None]] | None] = ContextVar(
    "chainflow_after_commit", default=None
)


def on_commit(callback: Callable[[], None]) -> None:
    """Run `callback` once the open unit of work commits (never if it rolls back); at once
    when none is open (the caller commits by itself)."""
    callbacks = after_commit.get()
    if callbacks is None:
        callback()
    else:
        callbacks.append(callback)
