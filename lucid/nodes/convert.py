"""Proto ↔ record mapping of the nodes contract."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from lucid.nodes.credits import CreditReport
from lucid.nodes.fleet import ActionResult
from lucid.nodes.pools import PoolView
from lucid.nodes.store.metrics import AllocationRecord, SampleRecord
from lucid.nodes.store.nodes import NodeRecord
from lucid.nodes.store.payouts import PayoutRecord
from lucid.nodes.store.poot import ValidationRecord
from lucid.nodes.store.registrations import RegistrationRecord
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import payout_pb2 as ypb
from lucid.nodes.v1 import pool_pb2 as ppb
from lucid.nodes.v1 import poot_pb2 as tpb
from lucid.runtime import wire


def as_dict(message: Message) -> dict[str, Any]:
    """A nested proto part as stored."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def parsed(data: dict[str, Any], message: Message) -> Any:
    """A stored part back into ``message``."""
    return json_format.ParseDict(data, message, ignore_unknown_fields=True)


def node(record: NodeRecord) -> npb.Node:
    """A Node."""
    return npb.Node(
        node_id=record.node_id,
        owner_user_id=record.owner_user_id,
        name=record.name,
        node_type=record.node_type,  # type: ignore[arg-type]
        state=record.state,  # type: ignore[arg-type]
        pool_id=record.pool_id,
        node_address=record.node_address,
        onion_address=record.onion_address,
        port=record.port,
        node_public_key=record.node_public_key,
        hardware_info=parsed(record.hardware, npb.HardwareInfo()),
        location=parsed(record.location, npb.Location()),
        configuration=parsed(record.configuration, npb.NodeConfiguration()),
        capabilities=record.capabilities,
        poot_score=record.poot_score,
        stake_amount_micros=record.stake_amount_micros,
        last_heartbeat_time=wire.optional_timestamp(record.last_heartbeat),
        start_time=wire.optional_timestamp(record.start_time),
        stop_time=wire.optional_timestamp(record.stop_time),
        create_time=wire.optional_timestamp(record.created_at),
        update_time=wire.optional_timestamp(record.updated_at),
        error_message=record.error_message,
    )


def registration(record: RegistrationRecord) -> npb.NodeRegistration:
    """A NodeRegistration."""
    return npb.NodeRegistration(
        registration_id=record.registration_id,
        node_id=record.node_id,
        node_address=record.node_address,
        state=record.state,  # type: ignore[arg-type]
        verification_score=record.verification_score,
        signature_verified=record.signature_verified,
        capability_verified=record.capability_verified,
        reachability_verified=record.reachability_verified,
        storage_verified=record.storage_verified,
        stake_verified=record.stake_verified,
        rejection_reason=record.rejection_reason,
        create_time=wire.optional_timestamp(record.created_at),
        expire_time=wire.optional_timestamp(record.expires_at),
    )


def action(result: ActionResult) -> npb.NodeActionResult:
    """A NodeActionResult."""
    return npb.NodeActionResult(
        state=result.node.state,  # type: ignore[arg-type]
        message=result.message,
        unchanged=result.unchanged,
        node=node(result.node),
    )


def sample(record: SampleRecord) -> npb.NodeResourceSample:
    """A NodeResourceSample."""
    return npb.NodeResourceSample(
        sample_time=wire.optional_timestamp(record.sample_time),
        cpu_percent=record.cpu_percent,
        memory_percent=record.memory_percent,
        disk_percent=record.disk_percent,
        gpu_percent=record.gpu_percent,
        network_in_bytes_per_second=record.network_in_bytes_per_second,
        network_out_bytes_per_second=record.network_out_bytes_per_second,
        load_average=record.load_average,
        active_sessions=record.active_sessions,
    )


def sample_record(node_id: str, message: npb.NodeResourceSample, at: datetime) -> SampleRecord:
    """A sample from a heartbeat."""
    return SampleRecord(
        node_id=node_id,
        sample_time=at,
        cpu_percent=message.cpu_percent,
        memory_percent=message.memory_percent,
        disk_percent=message.disk_percent,
        gpu_percent=message.gpu_percent,
        network_in_bytes_per_second=message.network_in_bytes_per_second,
        network_out_bytes_per_second=message.network_out_bytes_per_second,
        load_average=message.load_average,
        active_sessions=message.active_sessions,
    )


def allocation(record: AllocationRecord) -> npb.ResourceAllocation:
    """A ResourceAllocation."""
    return npb.ResourceAllocation(
        allocation_id=record.allocation_id,
        node_id=record.node_id,
        cpu_cores=record.cpu_cores,
        memory_bytes=record.memory_bytes,
        storage_bytes=record.storage_bytes,
        bandwidth_mbps=record.bandwidth_mbps,
        purpose=record.purpose,
        create_time=wire.optional_timestamp(record.created_at),
        expire_time=wire.optional_timestamp(record.expires_at),
    )


def pool(view: PoolView) -> ppb.Pool:
    """A Pool."""
    record = view.pool
    return ppb.Pool(
        pool_id=record.pool_id,
        name=record.name,
        description=record.description,
        state=view.state,  # type: ignore[arg-type]
        max_nodes=record.max_nodes,
        node_count=len(view.members),
        active_node_count=view.active_count,
        resource_limits=parsed(record.resource_limits, npb.ResourceLimits()),
        scaling_policy=parsed(record.scaling_policy, ppb.ScalingPolicy()),
        reward_split=record.reward_split,  # type: ignore[arg-type]
        create_time=wire.optional_timestamp(record.created_at),
        update_time=wire.optional_timestamp(record.updated_at),
    )


def member(record: NodeRecord) -> ppb.PoolMember:
    """A PoolMember."""
    return ppb.PoolMember(
        node_id=record.node_id,
        priority=record.pool_priority,
        state=record.state,  # type: ignore[arg-type]
        join_time=wire.optional_timestamp(record.pool_join_time),
    )


def validation(record: ValidationRecord) -> tpb.PootValidation:
    """A PootValidation."""
    return tpb.PootValidation(
        validation_id=record.validation_id,
        node_id=record.node_id,
        output_hash=record.output_hash,
        output_time=wire.optional_timestamp(record.output_time),
        score=record.score,
        confidence=record.confidence,
        status=record.status,  # type: ignore[arg-type]
        breakdown=tpb.PootScoreBreakdown(
            complexity=record.complexity,
            freshness=record.freshness,
            reliability=record.reliability,
            nonce=record.nonce_score,
        ),
        errors=record.errors,
        nonce=record.nonce,
        batch_id=record.batch_id,
        suspicious=record.suspicious,
        alert=record.alert,
        validation_time_ms=record.validation_time_ms,
        create_time=wire.optional_timestamp(record.created_at),
    )


def credit_report(report: CreditReport) -> tpb.GetWorkCreditsResponse:
    """GetWorkCredits' response."""
    return tpb.GetWorkCreditsResponse(
        entity_id=report.entity_id,
        epoch=report.epoch,
        credits=report.credits.total,
        live_score=report.live_score,
        rank=report.credits.rank,
        by_task=[
            tpb.TaskCredits(task_type=task, value=value, credits=round(credit, 6))  # type: ignore[arg-type]
            for task, (value, credit) in sorted(report.credits.by_task.items())
        ],
        window_start_time=wire.optional_timestamp(report.window_start),
        window_end_time=wire.optional_timestamp(report.window_end),
    )


def payout(record: PayoutRecord) -> ypb.Payout:
    """A Payout."""
    return ypb.Payout(
        payout_id=record.payout_id,
        node_id=record.node_id,
        batch_id=record.batch_id,
        amount_micros=record.amount_micros,
        currency=record.currency,  # type: ignore[arg-type]
        wallet_address=record.wallet_address,
        state=record.state,  # type: ignore[arg-type]
        priority=record.priority,  # type: ignore[arg-type]
        tx_hash=record.tx_hash,
        payment_payout_id=record.payment_payout_id,
        retry_count=record.retry_count,
        error_message=record.error_message,
        work_credits=record.work_credits,
        epoch=record.epoch,
        reason=record.reason,
        create_time=wire.optional_timestamp(record.created_at),
        update_time=wire.optional_timestamp(record.updated_at),
        finish_time=wire.optional_timestamp(record.finish_time),
    )


def schedule(values: dict[str, Any]) -> ypb.PayoutSchedule:
    """A PayoutSchedule."""
    return ypb.PayoutSchedule(
        enabled=bool(values["enabled"]),
        cadence=values["cadence"],
        next_run_time=wire.optional_timestamp(values["next_run_time"]),
        last_run_time=wire.optional_timestamp(values["last_run_time"]),
        epoch_budget_micros=int(values["epoch_budget_micros"]),
        minimum_payout_micros=int(values["minimum_payout_micros"]),
        minimum_interval_seconds=int(values["minimum_interval_seconds"]),
        commission_percent=float(values["commission_percent"]),
        uptime_bonus_percent=float(values["uptime_bonus_percent"]),
    )
