"""5-field cron expressions (minute hour day-of-month month day-of-week, UTC).

Each field is ``*``, a number, a range ``a-b``, a step ``*/n``, ``a-b/n`` or
``a/n``, or a comma list of those. Day of week is 0-7 (0 and 7 are Sunday).
As in Vixie cron, when both day fields are restricted a day matches either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12))
_DOW = ("day of week", 0, 7)
SEARCH_DAYS = 366 * 8  # covers 29 February (up to eight years apart)


class CronError(ValueError):
    """An expression that is not a valid 5-field cron."""


def _number(text: str, name: str, low: int, high: int) -> int:
    if not text.isdigit():
        raise CronError(f"{name}: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is outside {low}-{high}")
    return value


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{name}: empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            step = _number(step_text, name, 1, high - low + 1 if high > low else 1)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(first, name, low, high), _number(last, name, low, high)
            if start > end:
                raise CronError(f"{name}: range {base} runs backwards")
        else:
            start = _number(base, name, low, high)
            end = high if slash else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed expression."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday … 6 = Saturday."""
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def next_after(self, after: datetime) -> datetime:
        """The first matching minute strictly after ``after`` (same timezone)."""
        start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(SEARCH_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise CronError(f"{self.expression!r} never matches")


def parse(expression: str) -> Cron:
    """Parses a 5-field expression; raises ``CronError`` with the field at fault."""
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(f"expected 5 fields, got {len(parts)}")
    minutes, hours, days, months = (
        _field(text, *spec) for text, spec in zip(parts[:4], _FIELDS, strict=True)
    )
    weekdays = frozenset(d % 7 for d in _field(parts[4], *_DOW))
    cron = Cron(
        expression=" ".join(parts),
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        days_restricted=parts[2] != "*",
        weekdays_restricted=parts[4] != "*",
    )
    if (
        not any(day <= _MONTH_DAYS[month] for month in cron.months for day in cron.days)
        and not cron.weekdays_restricted
    ):
        raise CronError(f"{cron.expression!r} names no existing day")
    return cron


_MONTH_DAYS = {
    1: 31,
    2: 29,
    3: 31,
    4: 30,
    5: 31,
    6: 30,
    7: 31,
    8: 31,
    9: 30,
    10: 31,
    11: 30,
    12: 31,
}
