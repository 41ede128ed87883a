"""The session state machine (spec 03 §3), pure.

created → starting → recording ⇄ paused → stopped → processing → completed;
any non-terminal state → failed; created, stopped, completed and failed →
deleted. A failed session with a stored manifest may go back to processing when
its anchoring is retried by hand (RetryAnchoring). Every other move is illegal
and answers FAILED_PRECONDITION (``LUCID_ERR_4007``).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """A session's state, as stored."""

    CREATED = "created"
    STARTING = "starting"
    RECORDING = "recording"
    PAUSED = "paused"
    STOPPED = "stopped"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"


TERMINAL = frozenset({State.COMPLETED, State.FAILED, State.DELETED})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.STARTING, State.FAILED, State.DELETED}),
    State.STARTING: frozenset({State.RECORDING, State.FAILED}),
    State.RECORDING: frozenset({State.PAUSED, State.STOPPED, State.FAILED}),
    State.PAUSED: frozenset({State.RECORDING, State.STOPPED, State.FAILED}),
    State.STOPPED: frozenset({State.PROCESSING, State.FAILED, State.DELETED}),
    State.PROCESSING: frozenset({State.COMPLETED, State.FAILED}),
    State.COMPLETED: frozenset({State.DELETED}),
    State.FAILED: frozenset({State.DELETED, State.PROCESSING}),
    State.DELETED: frozenset(),
}

UPLOADABLE = frozenset({State.RECORDING, State.PAUSED})
"""States in which chunks are accepted (a pause flushes but keeps the session open)."""


def can_move(current: State, target: State) -> bool:
    """Whether ``current → target`` is a legal move."""
    return target in TRANSITIONS[current]


def sources_of(target: State) -> frozenset[State]:
    """Every state from which ``target`` may be reached."""
    return frozenset(state for state, targets in TRANSITIONS.items() if target in targets)
