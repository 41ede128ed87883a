"""The tamper-evident audit log over gRPC (spec 06 §7 checks 8, 9 and 10): query
filters and paging, export equal to the query, stats, range limits, and a chain that
names the entry edited, deleted or moved; retention keeps the rest verifiable."""

from __future__ import annotations

import csv
import io
import itertools
import json
import uuid
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pymongo import AsyncMongoClient

from lucid.admin import retention
from lucid.admin.auditlog import GENESIS, AuditLog, NewEntry
from lucid.admin.configs import Configs
from lucid.admin.schema import AUDIT_CHAIN
from lucid.admin.store.auditchain import AuditChainStore
from lucid.admin.store.config import ConfigStore
from lucid.admin.store.state import StateStore
from lucid.admin.v1 import audit_pb2, emergency_pb2
from lucid.common.v1 import access_pb2
from lucid.lib.clock import FakeClock
from lucid.runtime.audit import Client
from lucid.runtime.config import Settings
from lucid.runtime.context import Principal
from lucid.runtime.identity import ServiceIdentity
from tests.admin_support import AdminEnv, admin_fixture, refused
from tests.support import details

A = audit_pb2


admin = admin_fixture()


@pytest.fixture
async def chain(admin: AdminEnv) -> Any:
    """The admin's audit chain collection, read and written directly (the attacker)."""
    return admin.sessions.mesh.servers["admin"].runtime.datastores.db[AUDIT_CHAIN]


async def md(admin: AdminEnv) -> Any:
    return await admin.admin_md()


async def make_entries(admin: AdminEnv, count: int) -> None:
    """``count`` disable/enable pairs: two emergency audit entries each."""
    for n in range(count):
        await admin.emergency.DisableNewSessions(
            emergency_pb2.DisableNewSessionsRequest(reason=f"drill {n}"), metadata=await md(admin)
        )
        await admin.emergency.EnableNewSessions(
            emergency_pb2.EnableNewSessionsRequest(reason=f"drill {n} over"),
            metadata=await md(admin),
        )


async def verify(admin: AdminEnv) -> A.VerifyAuditChainResponse:
    return await admin.audit.VerifyAuditChain(A.VerifyAuditChainRequest(), metadata=await md(admin))


async def test_each_action_is_one_chained_entry_and_the_chain_verifies(admin: AdminEnv) -> None:
    # Counted by action: the other clusters' events may enter the chain meanwhile.
    emergencies = A.QueryAuditLogsRequest(action=A.AUDIT_ACTION_EMERGENCY)
    before = await admin.audit.QueryAuditLogs(emergencies, metadata=await md(admin))
    await make_entries(admin, 3)
    after = await admin.audit.QueryAuditLogs(emergencies, metadata=await md(admin))
    assert after.total_size == before.total_size + 6
    reply = await admin.audit.QueryAuditLogs(
        A.QueryAuditLogsRequest(page_size=1000), metadata=await md(admin)
    )
    newest_first = list(reply.entries)
    for later, earlier in itertools.pairwise(newest_first):
        assert later.prev_hash == earlier.entry_hash
    assert newest_first[-1].prev_hash == GENESIS
    checked = await verify(admin)
    assert checked.valid and checked.checked_count >= reply.total_size


async def test_filters_and_paging(admin: AdminEnv) -> None:
    await make_entries(admin, 3)
    request = A.QueryAuditLogsRequest(
        action=A.AUDIT_ACTION_EMERGENCY, resource_id="disable_new_sessions", page_size=2
    )
    first = await admin.audit.QueryAuditLogs(request, metadata=await md(admin))
    assert len(first.entries) == 2 and first.next_page_token
    seen = [e.entry_id for e in first.entries]
    token = first.next_page_token
    while token:
        request.page_token = token
        page = await admin.audit.QueryAuditLogs(request, metadata=await md(admin))
        seen += [e.entry_id for e in page.entries]
        token = page.next_page_token
    assert len(seen) == len(set(seen)) == first.total_size
    assert all(e.resource_id == "disable_new_sessions" for e in first.entries)
    # (payouts are entered in the session's chain by other modules' published events)
    nobody = str(uuid.uuid4())
    none = await admin.audit.QueryAuditLogs(
        A.QueryAuditLogsRequest(resource=A.AUDIT_RESOURCE_PAYOUT, resource_id=nobody),
        metadata=await md(admin),
    )
    assert none.total_size == 0 and not none.entries


async def test_limits_and_ranges_are_refused(admin: AdminEnv) -> None:
    error = await refused(
        admin.audit.QueryAuditLogs(
            A.QueryAuditLogsRequest(page_size=1001), metadata=await md(admin)
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    start, end = Timestamp(seconds=1_700_000_000), Timestamp(seconds=1_700_000_000 + 366 * 86400)
    for call in (
        admin.audit.QueryAuditLogs(
            A.QueryAuditLogsRequest(start_time=start, end_time=end), metadata=await md(admin)
        ),
        admin.audit.ExportAuditLogs(
            A.ExportAuditLogsRequest(format=A.EXPORT_FORMAT_JSON, start_time=start, end_time=end),
            metadata=await md(admin),
        ),
        admin.audit.QueryAuditLogs(
            A.QueryAuditLogsRequest(start_time=end, end_time=start), metadata=await md(admin)
        ),
    ):
        error = await refused(call)
        assert error.code() in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE}
        assert details(error).field_violations


@pytest.mark.parametrize("role", [access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR])
async def test_users_and_operators_are_refused(admin: AdminEnv, role: int) -> None:
    user = await admin.md(role)
    for call in (
        admin.audit.QueryAuditLogs(A.QueryAuditLogsRequest(), metadata=user),
        admin.audit.ExportAuditLogs(
            A.ExportAuditLogsRequest(format=A.EXPORT_FORMAT_CSV), metadata=user
        ),
        admin.audit.GetAuditStats(A.GetAuditStatsRequest(), metadata=user),
        admin.audit.VerifyAuditChain(A.VerifyAuditChainRequest(), metadata=user),
    ):
        assert (await refused(call)).code() == grpc.StatusCode.PERMISSION_DENIED


async def test_export_equals_the_query_in_json_and_csv(admin: AdminEnv) -> None:
    await make_entries(admin, 2)
    request = dict(action=A.AUDIT_ACTION_EMERGENCY, resource_id="enable_new_sessions")
    query = await admin.audit.QueryAuditLogs(
        A.QueryAuditLogsRequest(page_size=1000, **request), metadata=await md(admin)
    )
    ids = sorted(e.entry_id for e in query.entries)
    as_json = await admin.audit.ExportAuditLogs(
        A.ExportAuditLogsRequest(format=A.EXPORT_FORMAT_JSON, **request), metadata=await md(admin)
    )
    rows = [json.loads(line) for line in as_json.content.decode().splitlines()]
    assert sorted(r["entry_id"] for r in rows) == ids and as_json.entry_count == len(ids)
    hashes = {e.entry_id: e.entry_hash for e in query.entries}
    assert all(hashes[r["entry_id"]] == r["entry_hash"] for r in rows)
    as_csv = await admin.audit.ExportAuditLogs(
        A.ExportAuditLogsRequest(format=A.EXPORT_FORMAT_CSV, **request), metadata=await md(admin)
    )
    assert as_csv.content_type == "text/csv"
    table = list(csv.DictReader(io.StringIO(as_csv.content.decode())))
    assert sorted(r["entry_id"] for r in table) == ids
    # Each export is itself audited.
    exports = await admin.audit.QueryAuditLogs(
        A.QueryAuditLogsRequest(action=A.AUDIT_ACTION_EXPORT), metadata=await md(admin)
    )
    assert exports.total_size >= 2


async def test_stats_count_what_the_query_finds(admin: AdminEnv) -> None:
    await make_entries(admin, 1)
    stats = await admin.audit.GetAuditStats(A.GetAuditStatsRequest(), metadata=await md(admin))
    total = await admin.audit.QueryAuditLogs(A.QueryAuditLogsRequest(), metadata=await md(admin))
    assert stats.total == total.total_size
    assert sum(stats.by_action.values()) == stats.total
    assert stats.by_severity["critical"] >= 2


async def test_an_edited_entry_is_named(admin: AdminEnv, chain: Any) -> None:
    await make_entries(admin, 2)
    victim = await chain.find_one({}, sort=[("seq", -1)], skip=2)
    await chain.update_one({"_id": victim["_id"]}, {"$set": {"details.reason": "nothing happened"}})
    try:
        result = await verify(admin)
        assert not result.valid
        assert result.first_invalid_entry_id == victim["_id"]
        assert "edited" in result.message
    finally:
        await chain.replace_one({"_id": victim["_id"]}, victim)
    assert (await verify(admin)).valid


async def test_a_deleted_entry_is_found(admin: AdminEnv, chain: Any) -> None:
    await make_entries(admin, 2)
    victim = await chain.find_one({}, sort=[("seq", -1)], skip=2)
    follower = await chain.find_one({"seq": victim["seq"] + 1})
    await chain.delete_one({"_id": victim["_id"]})
    try:
        result = await verify(admin)
        assert not result.valid
        assert result.first_invalid_entry_id == follower["_id"]
        assert "deleted" in result.message and str(victim["seq"]) in result.message
    finally:
        await chain.insert_one(victim)
    assert (await verify(admin)).valid


async def test_reordered_entries_are_found(admin: AdminEnv, chain: Any) -> None:
    await make_entries(admin, 2)
    later = await chain.find_one({}, sort=[("seq", -1)], skip=1)
    earlier = await chain.find_one({"seq": later["seq"] - 1})
    # Swap their positions (seq is unique: go through a free value).
    await chain.update_one({"_id": later["_id"]}, {"$set": {"seq": -1}})
    await chain.update_one({"_id": earlier["_id"]}, {"$set": {"seq": later["seq"]}})
    await chain.update_one({"_id": later["_id"]}, {"$set": {"seq": earlier["seq"]}})
    try:
        result = await verify(admin)
        assert not result.valid
        assert result.first_invalid_entry_id == later["_id"]
    finally:
        await chain.update_one({"_id": later["_id"]}, {"$set": {"seq": -1}})
        await chain.update_one({"_id": earlier["_id"]}, {"$set": {"seq": earlier["seq"]}})
        await chain.update_one({"_id": later["_id"]}, {"$set": {"seq": later["seq"]}})
    assert (await verify(admin)).valid


async def test_retention_purges_old_entries_and_the_rest_still_verifies(settings: Settings) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    db = client[f"{settings.mongodb_db}_retention"]
    clock = FakeClock()
    log = AuditLog(AuditChainStore(db), StateStore(db), clock)
    try:
        for n in range(3):
            await log.record(NewEntry(action="update", resource="config", resource_id=f"old {n}"))
        clock.advance(timedelta(days=91))
        kept = [await log.record(NewEntry(action="update", resource="config")) for _ in range(2)]
        assert await log.purge(timedelta(days=90)) == 3
        result = await log.verify()
        assert result.valid and result.checked == 2
        later = await log.record(NewEntry(action="read", resource="audit"))
        assert later.prev_hash == kept[-1].entry_hash
        # Deleting the oldest kept entry is still caught against the checkpoint.
        await db[AUDIT_CHAIN].delete_one({"_id": kept[0].entry_id})
        broken = await log.verify()
        assert not broken.valid and broken.first_invalid_entry_id == kept[1].entry_id
        # The hourly task purges by the configured retention (90 days by default, 30 here).
        configs = Configs(ConfigStore(db), log, clock)
        assert await retention.purge_once(log, configs) == 0
        clock.advance(timedelta(days=31))
        assert await retention.purge_once(log, configs) == 0
        await configs.update({"audit_log_retention_days": 30}, [], _operator())
        assert await retention.purge_once(log, configs) == 2  # kept[1] and `later`
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_details_are_hashed_as_the_store_gives_them_back(settings: Settings) -> None:
    # What an event's JSON brings (whole numbers as floats, a negative zero, a NaN, keys
    # the store refuses) is entered, read back as it was hashed, and the chain verifies.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    db = client[f"{settings.mongodb_db}_stored_details"]
    log = AuditLog(AuditChainStore(db), StateStore(db), FakeClock())
    details = {
        "amount_micros": 5_000_000.0,
        "delta": -0.0,
        "ratio": 0.25,
        "score": float("nan"),
        "limit": float("-inf"),
        "huge": 2**70,
        "cpu.share": 1.0,
        "$where": "x",
        "nested": {"b": [-0.0, 2.5, {"a.b": 3.0}], "a": None, "flag": True},
    }
    try:
        entry = await log.record(NewEntry(action="create", resource="payout", details=details))
        await log.record(NewEntry(action="update", resource="config", details={"n": -0.0}))
        stored = await AuditChainStore(db).at(entry.seq)
        assert stored is not None and stored.details == entry.details
        assert entry.details == {
            "amount_micros": 5_000_000,
            "delta": 0,
            "ratio": 0.25,
            "score": "nan",
            "limit": "-inf",
            "huge": str(2**70),
            "cpu_share": 1,
            "_where": "x",
            "nested": {"b": [0, 2.5, {"a_b": 3}], "a": None, "flag": True},
        }
        result = await log.verify()
        assert result.valid and result.checked == 2, result.message
    finally:
        await client.drop_database(db.name)
        await client.close()


def _operator() -> Client:
    identity = ServiceIdentity(plane="edge", name="operator")
    return Client(principal=Principal(peer=identity), ip="127.0.0.1", user_agent="", request_id="")
