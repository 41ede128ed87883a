"""Rate limiting as pure arithmetic: GCRA with a burst allowance, and an in-memory store.

A ``Policy`` allows ``limit`` units per ``window_s`` and, past that, a burst
allowance of ``burst`` units refilled over ``burst_window_s`` (spec 01 §4: the
window, then the burst counter, then rejection). Each allowance is a GCRA bucket
kept as its *theoretical arrival time* (TAT): the instant at which the bucket would
be full again. A request of ``cost`` units fits a bucket when
``max(tat, now) + cost * window / limit - now <= window``. Both are refilled
continuously, so the limit is a true sliding rate, not a fixed minute.

``decide`` is the one definition of the algorithm. The gateway runs the same steps
atomically in Redis (a Lua script) and, when Redis is down, with ``MemoryLimiter``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MICROS = 1_000_000


def micros(seconds: float) -> int:
    """Seconds as whole microseconds (the limiter's time unit)."""
    return round(seconds * MICROS)


def _span(cost: int, limit: int, window_us: int) -> int:
    """Microseconds ``cost`` units take to refill: ceil(cost * window / limit)."""
    return -(-cost * window_us // limit)


@dataclass(frozen=True)
class Policy:
    """The limits of one tier."""

    limit: int
    window_s: float
    burst: int = 0
    burst_window_s: float = 300.0

    @property
    def window_us(self) -> int:
        """The main window in microseconds."""
        return micros(self.window_s)

    @property
    def burst_window_us(self) -> int:
        """The burst window in microseconds (0 without a burst allowance)."""
        return micros(self.burst_window_s) if self.burst else 0


@dataclass(frozen=True)
class Decision:
    """The outcome of one check."""

    allowed: bool
    burst: bool
    limit: int
    remaining: int
    reset_at: float
    """Epoch seconds at which the main allowance is full again."""
    retry_after_s: float
    """When refused: seconds until the request would fit (0 when allowed)."""


@dataclass(frozen=True)
class State:
    """The two TATs of one identifier in one tier (epoch microseconds; 0 = untouched)."""

    tat: int = 0
    burst_tat: int = 0


def decide(policy: Policy, state: State, now_us: int, cost: int) -> tuple[Decision, State]:
    """Checks and counts ``cost`` units at ``now_us``; returns the decision and new state.

    Integer arithmetic in microseconds, so a byte of bandwidth is never lost to
    rounding. ``cost`` 0 only looks (``GetRateLimitStatus``). A refused request
    changes nothing.
    """
    window, burst_window = policy.window_us, policy.burst_window_us
    tat = max(state.tat, now_us)
    burst_tat = max(state.burst_tat, now_us)
    allowed, burst, retry = True, False, 0
    if cost > 0:
        main_next = tat + _span(cost, policy.limit, window)
        burst_next = burst_tat + (_span(cost, policy.burst, burst_window) if policy.burst else 0)
        if main_next - now_us <= window:
            tat = main_next
        elif policy.burst and burst_next - now_us <= burst_window:
            burst_tat, burst = burst_next, True
        else:
            allowed = False
            retry = main_next - now_us - window
            if policy.burst:
                retry = min(retry, burst_next - now_us - burst_window)
    remaining = (window - (tat - now_us)) * policy.limit // window
    if policy.burst:
        remaining += (burst_window - (burst_tat - now_us)) * policy.burst // burst_window
    decision = Decision(
        allowed=allowed,
        burst=burst,
        limit=policy.limit,
        remaining=max(0, remaining),
        reset_at=tat / MICROS,
        retry_after_s=max(0, retry) / MICROS,
    )
    return decision, (State(tat, burst_tat) if allowed else state)


TIERS: dict[str, Policy] = {
    "public": Policy(limit=100, window_s=60.0, burst=200),
    "authenticated": Policy(limit=1000, window_s=60.0, burst=2000),
    "admin": Policy(limit=10_000, window_s=60.0, burst=20_000),
    "blockchain_query": Policy(limit=500, window_s=60.0, burst=1000),
    "chunk_upload_bandwidth": Policy(limit=10_485_760, window_s=1.0),
}
"""The tiers of spec 01 §9 by name: per minute with a burst of twice the limit refilled
over 300 s (spec 01 §4); chunk uploads 10,485,760 B/s per session without a burst."""


class MemoryLimiter:
    """``decide`` over states kept in this process (bounded, oldest dropped first)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._states: OrderedDict[str, State] = OrderedDict()

    def check(self, key: str, policy: Policy, now: float, cost: int) -> Decision:
        """Checks and counts ``cost`` units for ``key`` at epoch seconds ``now``."""
        state = self._states.get(key, State())
        decision, new_state = decide(policy, state, micros(now), cost)
        if new_state is not state:
            self._states[key] = new_state
            self._states.move_to_end(key)
            while len(self._states) > self.max_keys:
                self._states.popitem(last=False)
        return decision
