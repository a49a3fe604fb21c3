"""Errors of schedules, each with a stable code."""

from chainflow.core.errors import Conflict, InvalidInput, NotFound


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"


class ScheduleFinished(Conflict):
    code = "schedule_finished"  # cancelled or completed: it cannot be paused or resumed


class ScheduleOwnerKeyInactive(Conflict):
    # revoked, expired, deleted or without transactions:write: the schedule is not resumed
    code = "schedule_owner_key_inactive"


class ScheduleActionExpired(Conflict):
    # a transaction action's valid_until is not after the next occurrence: not resumed
    code = "schedule_action_expired"


class IntervalTooShort(InvalidInput):
    code = "schedule_interval_too_short"


class InvalidSchedule(InvalidInput):
    code = "invalid_schedule"


class WalletNotOnChain(InvalidInput):
    code = "wallet_not_enabled_on_chain"


class NotAContract(InvalidInput):
    code = "not_a_contract"  # a DCA router or token without code at its address
