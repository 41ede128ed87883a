"""The loop of the payments cluster's workers (payouts, transfers): one step at every
wake-up or poll interval; a failed step is logged and the next one runs, cancellation
ends the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("lucid.payments")


async def keep_stepping(
    step: Callable[[], Awaitable[None]], wake: asyncio.Event, poll_s: float, what: str
) -> None:
    """Runs ``step`` until cancelled: again when ``wake`` is set, or after ``poll_s``."""
    while True:
        try:
            await step()
        except Exception:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from None
            log.exception("%s failed", what)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), poll_s)
        wake.clear()
