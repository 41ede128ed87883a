"""Circuit breakers: one per upstream cluster, in every process's channel layer.

A breaker counts consecutive failures of calls to one cluster (UNAVAILABLE,
DEADLINE_EXCEEDED, INTERNAL, UNKNOWN: the upstream is sick, not the request).
After ``failure_threshold`` of them it opens: calls fail at once with UNAVAILABLE
``LUCID_ERR_5007`` and never leave the process. After ``open_s`` it is half-open:
at most ``half_open_calls`` trial calls go through at a time; a failure opens it
again, ``success_threshold`` successes close it. The thresholds are those of spec
10 §4 (5 failures, 2 successes; blockchain 3, payments 10); the open time is 1 s
for every cluster (issue 8: spec 10's 30-60 s turned a 1.5 s restart into 45 s of
refusals), so trial calls find an upstream that serves again within about a second.

Only failures of calls that started after the last success (or state change) count:
a call sent before the upstream recovered and failing after it did is stale, so a
breaker never opens on the strength of failures older than a success. Health checks
never pass through a breaker (``channels``). Time comes from an injectable ``Clock``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from lucid.lib.clock import Clock, SystemClock
from lucid.runtime.errors import (
    STATUS_DETAILS_KEY,
    ErrorCode,
    ErrorDetails,
    LucidError,
    reason_of,
)

log = logging.getLogger("lucid.breaker")

FAILURE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
"""Outcomes that count against the upstream; every other status is the request's fault."""


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens and how it recovers."""

    failure_threshold: int = 5
    open_s: float = 1.0
    success_threshold: int = 2
    half_open_calls: int = 2


DEFAULT_POLICY = BreakerPolicy()
CLUSTER_POLICIES: Mapping[str, BreakerPolicy] = {
    "blockchain": BreakerPolicy(failure_threshold=3),
    "payments": BreakerPolicy(failure_threshold=10),
}
"""Per-cluster thresholds of spec 10 §4 (blockchain-core, tron-payment)."""


class State(enum.Enum):
    """The three states of a breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(Exception):
    """The breaker refused the call (not sent)."""


@dataclass(frozen=True)
class Ticket:
    """An admitted call: whether it is a trial, and the epoch it was admitted in."""

    trial: bool
    epoch: int


class CircuitBreaker:
    """The breaker of one upstream cluster."""

    def __init__(
        self, cluster: str, policy: BreakerPolicy = DEFAULT_POLICY, clock: Clock | None = None
    ) -> None:
        self.cluster = cluster
        self.policy = policy
        self.clock = clock or SystemClock()
        self._state = State.CLOSED
        self.failures = 0
        self.successes = 0
        self.in_flight_trials = 0
        self.opened_at = 0.0
        self.rejected = 0
        self.epoch = 0
        """Bumped by every success and state change; a failure counts only in its epoch."""

    @property
    def state(self) -> State:
        """The state now (an open breaker whose time is up reads as half-open)."""
        if (
            self._state is State.OPEN
            and self.clock.timestamp() - self.opened_at >= self.policy.open_s
        ):
            self._transition(State.HALF_OPEN)
        return self._state

    @property
    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets a trial call through."""
        if self._state is not State.OPEN:
            return 0.0
        return max(0.0, self.policy.open_s - (self.clock.timestamp() - self.opened_at))

    def _transition(self, state: State) -> None:
        if state is self._state:
            return
        log.warning(
            "circuit breaker %s",
            state.value,
            extra={"upstream": self.cluster, "from": self._state.value, "to": state.value},
        )
        self._state = state
        self.epoch += 1
        self.successes = 0
        self.in_flight_trials = 0
        if state is State.OPEN:
            self.opened_at = self.clock.timestamp()
        if state is State.CLOSED:
            self.failures = 0

    def reset(self) -> None:
        """Closes the breaker by hand (an operator's override) and clears its counts."""
        self._transition(State.CLOSED)
        self.failures = 0

    def acquire(self) -> Ticket:
        """Admits a call (its ``Ticket``) or raises ``CircuitOpenError``."""
        state = self.state
        if state is State.CLOSED:
            return Ticket(trial=False, epoch=self.epoch)
        if state is State.HALF_OPEN and self.in_flight_trials < self.policy.half_open_calls:
            self.in_flight_trials += 1
            return Ticket(trial=True, epoch=self.epoch)
        self.rejected += 1
        raise CircuitOpenError(self.cluster)

    def record(self, code: grpc.StatusCode, ticket: Ticket) -> None:
        """Counts the outcome of an admitted call."""
        failed = code in FAILURE_CODES
        stale = ticket.epoch != self.epoch
        if ticket.trial:
            self.in_flight_trials = max(0, self.in_flight_trials - 1)
        if self._state is State.HALF_OPEN:
            if not ticket.trial or (failed and stale):
                return  # admitted before the last change; its outcome says nothing new
            if failed:
                self._transition(State.OPEN)
                return
            self.successes += 1
            if self.successes >= self.policy.success_threshold:
                self._transition(State.CLOSED)
            return
        if self._state is State.OPEN:
            return
        if not failed:
            self.failures = 0
            self.epoch += 1
        elif not stale:
            self.failures += 1
            if self.failures >= self.policy.failure_threshold:
                self._transition(State.OPEN)

    def open_error(self, caller: str) -> grpc.aio.AioRpcError:
        """The UNAVAILABLE 5007 a refused call fails with, as if a server had sent it."""
        error = LucidError(
            ErrorCode.ERROR_CODE_CIRCUIT_OPEN,
            f"circuit to {self.cluster} is open; call not sent",
            metadata={"upstream": self.cluster},
            retry_after_s=round(self.retry_after_s, 3),
        )
        status = error.to_status(domain=f"lucid.{caller}", request_id="", service=caller)
        return grpc.aio.AioRpcError(
            code=error.grpc_status,
            initial_metadata=grpc.aio.Metadata(),
            trailing_metadata=grpc.aio.Metadata((STATUS_DETAILS_KEY, status.SerializeToString())),
            details=error.message,
        )


def not_sent(error: grpc.RpcError) -> bool:
    """Whether a failed call was refused by an open breaker here, never reaching the upstream
    (so a caller counting attempts need not count it)."""
    return ErrorDetails.from_rpc_error(error).reason == reason_of(ErrorCode.ERROR_CODE_CIRCUIT_OPEN)


class Breakers:
    """The breakers of a process, one per upstream cluster (made on first use)."""

    def __init__(
        self,
        clock: Clock | None = None,
        policies: Mapping[str, BreakerPolicy] = CLUSTER_POLICIES,
        default: BreakerPolicy = DEFAULT_POLICY,
    ) -> None:
        self.clock = clock or SystemClock()
        self.policies = policies
        self.default = default
        self._breakers: dict[str, CircuitBreaker] = {}

    def of(self, cluster: str) -> CircuitBreaker:
        """The breaker guarding calls to ``cluster``."""
        breaker = self._breakers.get(cluster)
        if breaker is None:
            policy = self.policies.get(cluster, self.default)
            breaker = self._breakers[cluster] = CircuitBreaker(cluster, policy, self.clock)
        return breaker

    def snapshot(self) -> dict[str, str]:
        """The state of every breaker made so far."""
        return {name: b.state.value for name, b in self._breakers.items()}
