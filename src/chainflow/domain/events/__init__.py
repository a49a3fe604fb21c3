"""Events: the transactional outbox (models, repository), the sequencer that orders it, and
the envelope every consumer renders (schemas)."""

from chainflow.domain.events.models import EventRow
from chainflow.domain.events.repository import EVENTS, NewEvent, append, append_many, new_event
from chainflow.domain.events.schemas import envelope, envelope_id
from chainflow.domain.events.sequencer import sequence_pending

__all__ = [
    "EVENTS",
    "EventRow",
    "NewEvent",
    "append",
    "append_many",
    "envelope",
    "envelope_id",
    "new_event",
    "sequence_pending",
]
