"""The lockdown gate's cache: only the first call waits for admin's answer; a stale
answer is refreshed in the background, so a slow or absent admin never holds a call.

Admin here is a scripted ``GetSystemMode`` whose answers the test releases one by one:
the gate's timing against admin is what is under test (the real admin and a real
lockdown are in ``test_admin_emergency.py`` and ``test_payments_lockdown.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from lucid.admin.v1 import emergency_pb2
from lucid.runtime.lockdown import LockdownGate
from tests.waiting import eventually

GUARD_S = 10.0
"""Bound on a wait that must not block at all (a hang fails the test, not the run)."""


class ScriptedAdmin:
    """GetSystemMode answers that the test hands out one at a time."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[bool | None] = asyncio.Queue()
        """``True``/``False``: admin_only; ``None``: admin is unreachable."""
        self.asked = 0

    async def stub(self, cluster: str, stub_class: type) -> ScriptedAdmin:
        assert cluster == "admin"
        return self

    async def GetSystemMode(
        self, request: emergency_pb2.GetSystemModeRequest, **options: object
    ) -> emergency_pb2.GetSystemModeResponse:
        self.asked += 1
        answer = await self.answers.get()
        if answer is None:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()
            )
        reply = emergency_pb2.GetSystemModeResponse()
        reply.status.admin_only = answer
        return reply


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gate(admin: ScriptedAdmin, clock: Monotonic) -> LockdownGate:
    channels: Any = admin
    return LockdownGate(channels, ttl_s=1.0, monotonic=clock)


async def test_the_first_call_waits_for_admins_answer() -> None:
    admin, clock = ScriptedAdmin(), Monotonic()
    lockdown = gate(admin, clock)
    first = asyncio.create_task(lockdown.admin_only())
    await eventually(lambda: admin.asked == 1, what="admin asked")
    assert not first.done()
    admin.answers.put_nowait(True)
    assert await asyncio.wait_for(first, GUARD_S) is True


async def test_a_stale_answer_is_refreshed_without_holding_the_call() -> None:
    admin, clock = ScriptedAdmin(), Monotonic()
    lockdown = gate(admin, clock)
    admin.answers.put_nowait(False)
    assert await lockdown.admin_only() is False
    clock.now += 0.5
    assert await lockdown.admin_only() is False
    assert admin.asked == 1, "a fresh answer is not asked again"

    clock.now += 1.0  # stale: the call goes on with the last answer while admin is asked
    assert await asyncio.wait_for(lockdown.admin_only(), GUARD_S) is False
    await eventually(lambda: admin.asked == 2, what="a background refresh")
    assert await asyncio.wait_for(lockdown.admin_only(), GUARD_S) is False
    assert admin.asked == 2, "one refresh at a time"

    admin.answers.put_nowait(True)  # admin declares a lockdown: the next calls see it
    await eventually(lockdown.admin_only, what="the lockdown seen")
    await lockdown.close()


async def test_an_unreachable_admin_keeps_the_last_answer() -> None:
    admin, clock = ScriptedAdmin(), Monotonic()
    lockdown = gate(admin, clock)
    admin.answers.put_nowait(True)
    assert await lockdown.admin_only() is True
    clock.now += 2.0
    admin.answers.put_nowait(None)
    assert await lockdown.admin_only() is True
    await eventually(lambda: admin.asked == 2 and admin.answers.empty(), what="refresh tried")
    await lockdown.close()
    assert await lockdown.admin_only() is True, "an outage does not lift a lockdown"


async def test_an_unreachable_admin_at_first_means_not_locked() -> None:
    admin, clock = ScriptedAdmin(), Monotonic()
    lockdown = gate(admin, clock)
    admin.answers.put_nowait(None)
    assert await lockdown.admin_only() is False


async def test_a_payout_check_waits_for_a_fresh_answer() -> None:
    """``admin_only_now`` (payments' freeze) never answers from a stale cache."""
    admin, clock = ScriptedAdmin(), Monotonic()
    lockdown = gate(admin, clock)
    admin.answers.put_nowait(False)
    assert await lockdown.admin_only_now() is False
    assert await lockdown.admin_only_now() is False
    assert admin.asked == 1
    clock.now += 1.5
    fresh = asyncio.create_task(lockdown.admin_only_now())
    await eventually(lambda: admin.asked == 2, what="admin asked again")
    assert not fresh.done()
    admin.answers.put_nowait(True)
    assert await asyncio.wait_for(fresh, GUARD_S) is True


async def test_the_pipelines_cached_answer_never_waits() -> None:
    """``cached`` (the pipeline's fast path): nothing before the first answer, then the
    last answer at once, a stale one refreshed in the background."""
    admin, clock = ScriptedAdmin(), Monotonic()
    lockdown = gate(admin, clock)
    assert lockdown.cached() is None
    admin.answers.put_nowait(False)
    assert await lockdown.admin_only() is False
    assert lockdown.cached() is False
    clock.now += 2.0
    assert lockdown.cached() is False
    await eventually(lambda: admin.asked == 2, what="a background refresh")
    admin.answers.put_nowait(True)
    await eventually(lockdown.cached, what="the lockdown seen")
    await lockdown.close()
