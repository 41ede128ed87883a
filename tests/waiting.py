"""The one way tests wait: ``eventually`` polls a condition until it holds or a deadline
passes, and fails naming what never happened. No test sleeps a fixed time as a wait."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Condition = Callable[[], T | Awaitable[T]]


async def eventually(
    condition: Condition[T],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    what: str = "the condition",
) -> T:
    """Polls ``condition`` (sync or async) until it returns a truthy value, and returns it;
    raises ``AssertionError`` after ``timeout_s``. Exceptions from the condition propagate."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s (last: {value!r})")
        await asyncio.sleep(interval_s)


def eventually_sync(
    condition: Callable[[], T],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    what: str = "the condition",
) -> T:
    """``eventually`` for synchronous tests."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s (last: {value!r})")
        time.sleep(interval_s)
