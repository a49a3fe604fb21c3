"""When a schedule's occurrences fall: cron (in a timezone), a fixed interval, or one instant.
Pure: no I/O.

Cron expressions are evaluated by croniter on pytz timezones. croniter 2.0.7 with a
`zoneinfo` timezone gets daylight-saving changes wrong (measured in Europe/Berlin: `30 2 * * *`
on the spring-forward day gave 02:30+01:00, a local time that does not exist, and 03:30+01:00
the day after the fall-back); with pytz it does what cron does: a daily job in the skipped
hour runs once, at the same offset past the change (03:30+02:00), a daily job in the repeated
hour runs once (the first 02:30), and an hourly job runs in both repeated hours.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytz  # type: ignore[import-untyped]
from croniter import CroniterBadCronError, croniter  # type: ignore[import-untyped]

from chainflow.core.errors import InvalidInput

# The occurrences listed by one pass for a schedule that fell behind (downtime): every one is
# recorded as a skipped run, up to this many; the rest are counted in the last one's reason.
MAX_MISSED_LISTED = 100
# Past the listed ones, the missed occurrences of a cron are counted one step at a time up to
# this many; beyond it the pass jumps to the latest one and says "more than" (bounded work on
# the event loop, inside the transaction that locks the schedules).
MAX_MISSED_COUNTED = 100
# The jump to the latest occurrence: tries of croniter's get_prev, then steps forward (a few,
# or up to ~370 for a cron every minute when the latest is next to a daylight-saving change:
# an instant within `_DST_MARGIN` of a change of UTC offset, at most 2 h in Antarctica/Troll,
# is not trusted as a start, so the walk starts before the change).
_PREV_TRIES = 6
_WALK_STEPS = 500
_DST_MARGIN = timedelta(hours=3)


class InvalidTrigger(InvalidInput):
    code = "invalid_trigger"


@dataclass(frozen=True)
class Trigger:
    """Exactly one of `cron` (with `timezone`), `interval_s` or `at`."""

    cron: str | None = None
    timezone: str = "UTC"
    interval_s: int | None = None
    at: datetime | None = None

    def next_after(self, moment: datetime, *, anchor: datetime) -> datetime | None:
        """The first occurrence strictly after `moment` (UTC); None if there is none (also a
        cron that never matches, such as 30 February, and any time past year 9999).
        `anchor` is the first occurrence of an interval trigger (its start)."""
        try:
            return self._next_after(moment, anchor=anchor)
        except (OverflowError, ValueError):  # CroniterBadDateError is a ValueError
            return None

    def _next_after(self, moment: datetime, *, anchor: datetime) -> datetime | None:
        if self.interval_s is not None:
            if moment < anchor:
                return anchor
            steps = (moment - anchor) // timedelta(seconds=self.interval_s) + 1
            return anchor + steps * timedelta(seconds=self.interval_s)
        if self.at is not None:
            return self.at if self.at > moment else None
        assert self.cron is not None  # noqa: S101 - one of the three, checked on parse
        zone = pytz.timezone(self.timezone)
        local = moment.astimezone(zone)
        nxt: datetime = croniter(self.cron, local).get_next(datetime)
        return nxt.astimezone(UTC)

    def first_at_or_after(self, moment: datetime, *, anchor: datetime) -> datetime | None:
        """The first occurrence at or after `moment`."""
        return self.next_after(moment - timedelta(microseconds=1), anchor=anchor)

    def due(
        self, start: datetime, now: datetime, *, anchor: datetime
    ) -> tuple[list[datetime], int | None]:
        """The occurrences from `start` (an occurrence) up to `now`: at most
        `MAX_MISSED_LISTED` of the earliest plus the latest, and how many were left out (None:
        more than `MAX_MISSED_COUNTED`, not counted). Bounded work whatever the gap: at most
        `MAX_MISSED_LISTED + MAX_MISSED_COUNTED + 1` steps, then one jump to the latest
        (`_latest_at_or_before`, bounded too)."""
        if start > now:
            return [], 0
        if self.interval_s is not None:
            step = timedelta(seconds=self.interval_s)
            total = (now - start) // step + 1
            listed = [start + i * step for i in range(min(total, MAX_MISSED_LISTED))]
            last = start + (total - 1) * step
            if listed[-1] != last:
                listed.append(last)
            return listed, total - len(listed)
        found = [start]
        while True:
            nxt = self.next_after(found[-1], anchor=anchor)
            if nxt is None or nxt > now:
                return found, 0
            if len(found) < MAX_MISSED_LISTED:
                found.append(nxt)
                continue
            return self._tail(found, nxt, now, anchor=anchor)

    def _tail(
        self, found: list[datetime], nxt: datetime, now: datetime, *, anchor: datetime
    ) -> tuple[list[datetime], int | None]:
        """Past the listed ones: count the rest up to `now`, exactly if at most
        `MAX_MISSED_COUNTED`; past those (one more step tells), jump to the latest occurrence
        at or before `now` and say "more than" (None), also when the jump finds nothing within
        its bound: then the last one walked to stands for the latest. One step costs ~180 µs
        (croniter): counting every minute since 2000 took 42 min (audit)."""
        skipped, last = 0, nxt
        while True:
            after = self.next_after(last, anchor=anchor)
            if after is None or after > now:  # counted to the end
                return [*found, last], skipped
            if skipped == MAX_MISSED_COUNTED:
                break
            skipped, last = skipped + 1, after
        # more than MAX_MISSED_COUNTED left out (`after` is one more): not counted
        latest = self._latest_at_or_before(now, anchor=anchor)
        if latest is None or latest < after:  # not found within its bound
            latest = after
        return [*found, latest], None

    def _latest_at_or_before(self, moment: datetime, *, anchor: datetime) -> datetime | None:
        """The last cron occurrence at or before `moment`, as `next_after` walks them; None if
        not found in a bounded number of steps. croniter's `get_prev` on a pytz zone can give an
        instant the cron never fires at next to a daylight-saving change (review: `*/7 2 * * *`
        in New York, just after the fall-back, gave 03:56 EDT), so its answer is only a starting
        point: `next_after` from just before it must land at or before `moment` (else try again
        from earlier), then walks forward to the last one."""
        assert self.cron is not None  # noqa: S101 - intervals and `at` never get here
        zone = pytz.timezone(self.timezone)
        probe, latest = moment, None
        for _ in range(_PREV_TRIES):
            try:
                prev: datetime = croniter(self.cron, probe.astimezone(zone)).get_prev(datetime)
            except (OverflowError, ValueError):
                return None
            candidate = prev.astimezone(UTC)
            if candidate >= probe:  # no progress backwards: give up rather than loop
                return None
            latest = self.first_at_or_after(candidate, anchor=anchor)
            if latest is not None and latest <= moment and _steady(zone, latest):
                break
            # not one `next_after` walks to, or next to a change where it may not be: try from
            # before the change (twice the margin back is at least the margin before it)
            probe = candidate if latest is None else min(candidate, latest - 2 * _DST_MARGIN)
            latest = None
        if latest is None:
            return None
        for _ in range(_WALK_STEPS):
            following = self.next_after(latest, anchor=anchor)
            if following is None or following > moment:
                return latest
            latest = following
        return None


def _steady(zone: pytz.BaseTzInfo, moment: datetime) -> bool:
    """No change of the zone's UTC offset within `_DST_MARGIN` either side of `moment`."""
    before = (moment - _DST_MARGIN).astimezone(zone).utcoffset()
    return before == (moment + _DST_MARGIN).astimezone(zone).utcoffset()


def parse_trigger(
    *, cron: str | None, timezone: str | None, interval_s: int | None, at: datetime | None
) -> Trigger:
    """Check a trigger's fields. Raises: InvalidTrigger (a bad cron, an unknown timezone)."""
    given = [name for name, v in (("cron", cron), ("interval_s", interval_s), ("at", at)) if v]
    if len(given) != 1:
        raise InvalidTrigger("trigger needs exactly one of cron, interval_s or at")
    if timezone is not None and cron is None:
        raise InvalidTrigger("timezone goes with a cron trigger only")
    if cron is not None:
        fields = cron.split()
        if len(fields) != 5:
            raise InvalidTrigger(
                "cron must have 5 fields (minute hour day-of-month month day-of-week)"
            )
        try:
            croniter(cron)
        except (CroniterBadCronError, ValueError, KeyError):
            raise InvalidTrigger(f"cron expression {cron!r} is not valid") from None
        zone = timezone or "UTC"
        try:
            pytz.timezone(zone)
        except (pytz.UnknownTimeZoneError, ValueError):
            raise InvalidTrigger(
                f"unknown timezone {zone!r} (an IANA name, e.g. Europe/Berlin)"
            ) from None
        return Trigger(cron=" ".join(fields), timezone=zone)
    if interval_s is not None:
        return Trigger(interval_s=interval_s)
    return Trigger(at=at)


def shortest_gap(trigger: Trigger, start: datetime, *, samples: int = 60) -> timedelta | None:
    """The shortest time between the first `samples` occurrences from `start` (None for a
    trigger with fewer than two): checked against the configured floor on create."""
    if trigger.interval_s is not None:
        return timedelta(seconds=trigger.interval_s)
    if trigger.cron is None:
        return None
    times: list[datetime] = []
    moment = start
    for _ in range(samples):
        nxt = trigger.next_after(moment, anchor=start)
        if nxt is None:
            break
        times.append(nxt)
        moment = nxt
    gaps = [b - a for a, b in pairwise(times)]
    return min(gaps) if gaps else None
