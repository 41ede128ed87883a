"""Transient store errors: which MongoDB (FerretDB) failures are worth trying again, and
the backoff between tries.

A write refused because the store is busy (SQLite's ``database is locked``), a dropped
connection, a primary that is stepping down or a timeout says nothing about the data:
the same operation, tried again a little later, succeeds. Callers whose work must not
fail on such a hiccup (a session's finalization, a consensus round) retry it with
``Backoff``; every other error is theirs to report. A call that meets one answers
UNAVAILABLE ``LUCID_ERR_5003`` (the pipeline), which ``store_busy`` recognises.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from lucid.runtime.errors import ErrorCode, ErrorDetails, LucidError, reason_of

TRANSIENT_LABELS = frozenset({"TransientTransactionError", "RetryableWriteError"})
TRANSIENT_CODES = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        189,  # PrimarySteppedDown
        262,  # ExceededTimeLimit
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
    }
)
TRANSIENT_TEXT = ("database is locked", "sqlite_busy", "too many connections", "deadlock")
"""What FerretDB says when its backend is busy (SQLite, PostgreSQL)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a store failure that trying again later may cure (a pymongo
    error, or what a store translated one into: ``DATABASE_UNAVAILABLE``)."""
    if isinstance(exc, LucidError):
        return exc.code == ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE
    if not isinstance(exc, PyMongoError):
        return False
    if isinstance(exc, ConnectionFailure):  # AutoReconnect, NetworkTimeout, selection timeout
        return True
    if any(exc.has_error_label(label) for label in TRANSIENT_LABELS):
        return True
    if isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES:
        return True
    text = str(exc).lower()
    return any(fragment in text for fragment in TRANSIENT_TEXT)


def store_busy(error: grpc.RpcError) -> bool:
    """Whether a failed call says the callee's store was busy or unreachable (UNAVAILABLE
    ``LUCID_ERR_5003``, what the pipeline answers for a transient store error): the
    request was fine and may be sent again later."""
    reason = ErrorDetails.from_rpc_error(error).reason
    return reason == reason_of(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE)


@dataclass
class Backoff:
    """Exponential delays: ``initial_s``, doubling up to ``max_s``; ``reset`` after success."""

    initial_s: float = 0.05
    max_s: float = 2.0
    failures: int = 0

    def next_s(self) -> float:
        """The delay before the next try (and counts the failure)."""
        delay = min(self.max_s, self.initial_s * 2**self.failures)
        self.failures += 1
        return float(delay)

    def reset(self) -> None:
        """After a success: the next failure waits ``initial_s`` again."""
        self.failures = 0
