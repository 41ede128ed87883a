"""Manual anchoring over gRPC (AnchorSessions, GetAnchoringOperation): a session whose
anchoring failed is anchored again by the sessions cluster and the operation follows it
to its block; a session the sessions cluster will not anchor again is named in the
operation; users, node operators and admins are refused."""

from __future__ import annotations

import uuid

import grpc

from lucid.admin.v1 import operations_pb2
from lucid.admin.v1 import operations_pb2_grpc as ops_grpc
from lucid.common.v1 import access_pb2
from lucid.sessions.v1 import sessions_pb2
from tests.admin_support import AdminEnv, admin_fixture, refused
from tests.waiting import eventually

OP = operations_pb2
S = sessions_pb2
admin = admin_fixture()


def chain(admin: AdminEnv) -> ops_grpc.AdminBlockchainServiceStub:
    return ops_grpc.AdminBlockchainServiceStub(admin.channel)


async def finished_session(admin: AdminEnv, *, fail: bool) -> str:
    """A stopped session whose anchoring failed (``fail``) or completed."""
    env = admin.sessions
    md = await env.token()
    session_id = await env.recording(md)
    await env.upload(md, session_id, 1, b"anchor me")
    env.fake.mode = "refuse" if fail else "ok"
    try:
        await env.sessions.StopRecording(S.StopRecordingRequest(session_id=session_id), metadata=md)
        wanted = S.SESSION_STATE_FAILED if fail else S.SESSION_STATE_COMPLETED
        await env.wait_state(md, session_id, {wanted})
    finally:
        env.fake.mode = "ok"
    return session_id


async def test_a_failed_anchoring_is_anchored_again(admin: AdminEnv) -> None:
    failed = await finished_session(admin, fail=True)
    done = await finished_session(admin, fail=False)
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    reply = await chain(admin).AnchorSessions(
        OP.AnchorSessionsRequest(session_ids=[failed, done], reason="chain is back"), metadata=md
    )
    op = reply.operation
    assert op.state == OP.ANCHORING_STATE_PROCESSING
    assert list(op.session_ids) == [failed, done]
    assert op.priority == OP.ANCHORING_PRIORITY_NORMAL

    async def finished() -> OP.AnchoringOperation | None:
        found = await chain(admin).GetAnchoringOperation(
            OP.GetAnchoringOperationRequest(operation_id=op.operation_id), metadata=md
        )
        return found.operation if found.operation.state != OP.ANCHORING_STATE_PROCESSING else None

    final = await eventually(finished, timeout_s=30, what="the anchoring operation finished")
    assert final.state == OP.ANCHORING_STATE_COMPLETED
    session = await admin.sessions.get(
        await admin.sessions.token(role=access_pb2.ROLE_SUPER_ADMIN), failed
    )
    assert session.state == S.SESSION_STATE_COMPLETED
    assert final.block_height == session.anchoring.block_height > 0
    assert final.tx_hash == session.anchoring.tx_hash
    assert done in final.error_message, "the session not anchored again is named"
    assert final.HasField("finish_time")


async def test_nothing_to_anchor_fails_the_operation(admin: AdminEnv) -> None:
    done = await finished_session(admin, fail=False)
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    reply = await chain(admin).AnchorSessions(
        OP.AnchorSessionsRequest(session_ids=[done, str(uuid.uuid4())]), metadata=md
    )
    assert reply.operation.state == OP.ANCHORING_STATE_FAILED
    assert "LUCID_ERR_" in reply.operation.error_message
    error = await refused(
        chain(admin).GetAnchoringOperation(
            OP.GetAnchoringOperationRequest(operation_id=str(uuid.uuid4())), metadata=md
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_only_super_admins_anchor(admin: AdminEnv) -> None:
    failed = await finished_session(admin, fail=True)
    for role in (access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR, access_pb2.ROLE_ADMIN):
        md = await admin.md(role)
        error = await refused(
            chain(admin).AnchorSessions(OP.AnchorSessionsRequest(session_ids=[failed]), metadata=md)
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    for role in (access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR):
        error = await refused(
            chain(admin).GetAnchoringOperation(
                OP.GetAnchoringOperationRequest(operation_id=str(uuid.uuid4())),
                metadata=await admin.md(role),
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    owner = await admin.sessions.token(role=access_pb2.ROLE_SUPER_ADMIN)
    assert (await admin.sessions.get(owner, failed)).state == S.SESSION_STATE_FAILED
