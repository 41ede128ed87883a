"""Finalization under load (issue 8, item 5): many sessions stopped at once.

Sessions waiting for their anchor's block do not each poll the chain: they wait for
a new final block (one height watcher for all of them) and then ask once. Against
three real validator processes, anchors submitted together share blocks (a block
holds every pending anchor) and every session completes.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lucid.blockchain.v1 import anchoring_pb2
from lucid.runtime.config import Settings
from lucid.sessions.v1 import sessions_pb2
from tests.chain_cluster import ValidatorCluster
from tests.chain_support import wait_for
from tests.sessionkit import SessionsEnv, start_env
from tests.support import Mesh
from tests.waiting import eventually

S = sessions_pb2
SESSIONS = 12
BLOCK_INTERVAL_S = 1.0


async def _stop_many(env: SessionsEnv, count: int) -> list[tuple[Any, str]]:
    """``count`` sessions of distinct users, one chunk each, stopped at once."""
    owned: list[tuple[Any, str]] = []
    for index in range(count):
        md = await env.token()
        session_id = await env.recording(md)
        await env.upload(md, session_id, 1, f"load {index}".encode() * 100)
        owned.append((md, session_id))
    await asyncio.gather(
        *(
            env.sessions.StopRecording(S.StopRecordingRequest(session_id=s), metadata=md)
            for md, s in owned
        )
    )
    return owned


@pytest.fixture
async def scripted(mesh: Mesh, settings: Settings) -> AsyncIterator[SessionsEnv]:
    """Sessions on the scripted chain; a session rechecks without a block only after 30 s."""
    settings = settings.replace(mongodb_db=f"{settings.mongodb_db}_{uuid.uuid4().hex[:6]}")
    environment = await start_env(mesh, settings, anchor_recheck_s=30.0)
    try:
        yield environment
    finally:
        await environment.channel.close()
        await environment.mesh.stop_all()


async def test_sessions_waiting_for_a_block_ask_about_their_anchor_once_per_block(
    scripted: SessionsEnv,
) -> None:
    """While anchors wait in the pool, the sessions do not poll their anchorings (the
    finalizer watches the chain's height for all of them); one block holding every
    anchor wakes them all, and each completes after a look or two."""
    env = scripted
    assert env.fake is not None
    env.fake.mode = "stall"
    owned = await _stop_many(env, SESSIONS)
    await eventually(
        lambda: len(env.fake.records) == SESSIONS if env.fake else False,
        timeout_s=30,
        what="every anchor submitted",
    )
    reads = env.fake.height_calls
    await eventually(
        lambda: env.fake is not None and env.fake.height_calls >= reads + 10,
        timeout_s=30,
        what="the height watched while the anchors wait",
    )
    looks = dict(env.fake.status_calls)
    # 10 height reads at anchor_poll_s took ≥ 0.5 s: a session polling its anchoring every
    # anchor_poll_s would have looked 10 times; waiting for a block, it looked once at most.
    assert all(looks.get(s, 0) <= 1 for _, s in owned), looks
    for md, session_id in owned:
        waiting = await env.get(md, session_id)
        assert waiting.state == S.SESSION_STATE_PROCESSING, waiting
    env.fake.mode = "ok"
    assert env.fake.confirm_stalled() == SESSIONS
    for md, session_id in owned:
        done = await env.wait_state(md, session_id, {S.SESSION_STATE_COMPLETED})
        assert done.anchoring.final
        assert done.anchoring.block_height == env.fake.height
    assert all(env.fake.status_calls[s] <= 3 for _, s in owned), env.fake.status_calls


@pytest.fixture
async def validators(
    mesh: Mesh, settings: Settings, tmp_path_factory: Any
) -> AsyncIterator[SessionsEnv]:
    """Sessions on three real validator processes making a block a second."""
    settings = settings.replace(mongodb_db=f"{settings.mongodb_db}_{uuid.uuid4().hex[:6]}")
    cluster = ValidatorCluster(
        settings,
        tmp_path_factory.mktemp("chain"),
        count=3,
        block_interval_s=BLOCK_INTERVAL_S,
        leader_timeout_s=2.0,
    )
    environment: SessionsEnv | None = None
    try:
        cluster.start_all()
        for index in range(3):
            async with cluster.stubs(index) as stubs:
                await wait_for(stubs.ready, timeout_s=90)
        environment = await start_env(mesh, settings, chain_port=cluster.ports[0])
        yield environment
    finally:
        if environment is not None:
            await environment.channel.close()
            await environment.mesh.stop_all()
        cluster.stop_all()


async def test_anchors_submitted_together_share_blocks_and_every_session_completes(
    validators: SessionsEnv,
) -> None:
    """Sessions stopped at once all complete, and their anchors fill a few blocks: a
    block takes every anchor pending when it is proposed and blocks come at most one
    per block interval, so the anchors need at most one block per interval their
    submissions spanned, plus the first block, the one after the last submission and
    one for an anchor still being relayed to the leader."""
    env = validators
    owned = await _stop_many(env, SESSIONS)
    done = [
        await env.wait_state(md, s, {S.SESSION_STATE_COMPLETED}, timeout_s=120) for md, s in owned
    ]
    assert all(d.anchoring.final and d.anchoring.block_height > 0 for d in done)
    records = [await env.chain_anchoring(s) for _, s in owned]
    assert all(r.status == anchoring_pb2.ANCHORING_STATUS_CONFIRMED and r.final for r in records)
    assert [r.block_height for r in records] == [d.anchoring.block_height for d in done]
    submitted = sorted(r.submit_time.ToNanoseconds() / 1e9 for r in records)
    span_s = submitted[-1] - submitted[0]
    blocks = {r.block_height for r in records}
    assert len(blocks) <= math.floor(span_s / BLOCK_INTERVAL_S) + 3, (len(blocks), span_s)
    assert len(blocks) < SESSIONS
