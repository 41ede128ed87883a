"""Time, injectable: the system clock in production, a settable one in tests.

Code that enforces the specs' times (token lifetimes, lockouts, challenge expiry)
asks a ``Clock`` instead of calling ``time.time()``, so tests can move time forward
instead of waiting.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time."""

    def now(self) -> datetime:
        """The current UTC time, timezone-aware."""
        ...

    def timestamp(self) -> float:
        """The current time as seconds since the epoch."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def timestamp(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def timestamp(self) -> float:
        return self._now.timestamp()

    def advance(self, delta: timedelta | float) -> None:
        """Moves time forward by ``delta`` (seconds or a timedelta)."""
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
