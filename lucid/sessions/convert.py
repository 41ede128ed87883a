"""Stored documents ↔ messages of the sessions contract."""

from __future__ import annotations

from typing import Any

import grpc

from lucid.runtime.audit import client_of
from lucid.runtime.wire import duration, optional_timestamp
from lucid.sessions.service import Caller, SessionFilter
from lucid.sessions.store.repository import Doc
from lucid.sessions.v1 import chunks_pb2, manifests_pb2, sessions_pb2, trust_pb2

DEFAULT_FRAME_RATE = 30
DEFAULT_RESOLUTION = "1920x1080"
DEFAULT_RETENTION_DAYS = 30
DEFAULT_RDP_PORT = 3389

_QUALITY = {
    sessions_pb2.RECORDING_QUALITY_LOW: "low",
    sessions_pb2.RECORDING_QUALITY_MEDIUM: "medium",
    sessions_pb2.RECORDING_QUALITY_HIGH: "high",
    sessions_pb2.RECORDING_QUALITY_ULTRA: "ultra",
}
_QUALITY_BACK = {v: k for k, v in _QUALITY.items()}
_ANCHORING = {
    "pending": sessions_pb2.ANCHORING_STATUS_PENDING,
    "processing": sessions_pb2.ANCHORING_STATUS_PROCESSING,
    "confirmed": sessions_pb2.ANCHORING_STATUS_CONFIRMED,
    "failed": sessions_pb2.ANCHORING_STATUS_FAILED,
    "expired": sessions_pb2.ANCHORING_STATUS_EXPIRED,
}
_PIPELINE = {
    "inactive": sessions_pb2.PIPELINE_STATE_INACTIVE,
    "active": sessions_pb2.PIPELINE_STATE_ACTIVE,
    "paused": sessions_pb2.PIPELINE_STATE_PAUSED,
    "error": sessions_pb2.PIPELINE_STATE_ERROR,
    "stopped": sessions_pb2.PIPELINE_STATE_STOPPED,
}
_STAGES = {
    "recording": sessions_pb2.PIPELINE_STAGE_RECORDING,
    "chunk_generation": sessions_pb2.PIPELINE_STAGE_CHUNK_GENERATION,
    "compression": sessions_pb2.PIPELINE_STAGE_COMPRESSION,
    "encryption": sessions_pb2.PIPELINE_STAGE_ENCRYPTION,
    "storage": sessions_pb2.PIPELINE_STAGE_STORAGE,
    "merkle_building": sessions_pb2.PIPELINE_STAGE_MERKLE_BUILDING,
}


def state_value(name: str) -> sessions_pb2.SessionState.ValueType:
    """``"recording"`` → ``SESSION_STATE_RECORDING``."""
    return sessions_pb2.SessionState.Value(f"SESSION_STATE_{name.upper()}")


def state_name(value: int) -> str:
    """``SESSION_STATE_RECORDING`` → ``"recording"``."""
    return sessions_pb2.SessionState.Name(value).removeprefix("SESSION_STATE_").lower()  # type: ignore[arg-type]


# -- input ---------------------------------------------------------------------------


def rdp_fields(config: sessions_pb2.RdpConfig) -> Doc:
    """What is stored of an RDP target (never the password)."""
    return {
        "host": config.host,
        "port": config.port or DEFAULT_RDP_PORT,
        "username": config.username,
    }


def recording_fields(config: sessions_pb2.RecordingConfig) -> Doc:
    """A recording configuration with its defaults."""
    return {
        "frame_rate": config.frame_rate or DEFAULT_FRAME_RATE,
        "resolution": config.resolution or DEFAULT_RESOLUTION,
        "quality": _QUALITY.get(config.quality, "medium"),
        "compression_level": config.compression_level or 3,
    }


def storage_fields(config: sessions_pb2.StorageConfig) -> Doc:
    """A storage configuration with its defaults."""
    return {
        "retention_days": config.retention_days or DEFAULT_RETENTION_DAYS,
        "max_size_bytes": config.max_size_bytes or 10 * 1024**3,
    }


def metadata_fields(metadata: sessions_pb2.SessionMetadata) -> Doc:
    """Labels as stored."""
    return {
        "project": metadata.project,
        "environment": metadata.environment,
        "tags": list(metadata.tags),
    }


# -- output --------------------------------------------------------------------------


def statistics(stats: Doc) -> sessions_pb2.SessionStatistics:
    """A session's counters."""
    original = int(stats.get("original_bytes", 0))
    stored = int(stats.get("stored_bytes", 0))
    return sessions_pb2.SessionStatistics(
        chunk_count=int(stats.get("chunk_count", 0)),
        last_sequence_number=int(stats.get("last_sequence", 0)),
        original_size_bytes=original,
        stored_size_bytes=stored,
        compression_ratio=stored / original if original else 0.0,
        duration=duration(float(stats.get("duration_s", 0.0))),
        frame_count=int(stats.get("frames", 0)),
        failed_chunk_count=int(stats.get("failed_chunks", 0)),
    )


def anchoring(doc: Doc) -> sessions_pb2.AnchoringInfo:
    """The sessions cluster's record of an anchor."""
    return sessions_pb2.AnchoringInfo(
        anchoring_id=doc.get("anchoring_id", ""),
        status=_ANCHORING.get(doc.get("status", ""), sessions_pb2.ANCHORING_STATUS_UNSPECIFIED),
        tx_hash=doc.get("tx_hash", ""),
        block_height=int(doc.get("block_height", 0)),
        block_hash=doc.get("block_hash", ""),
        final=bool(doc.get("final", False)),
        submit_time=optional_timestamp(doc.get("submit_time")),
        confirm_time=optional_timestamp(doc.get("confirm_time")),
        attempts=int(doc.get("attempts", 0)),
        error_message=doc.get("error_message", ""),
    )


def session(doc: Doc, recording_url: str = "") -> sessions_pb2.Session:
    """A session message (the RDP password is never stored, so never returned)."""
    rdp = doc.get("rdp")
    recording = doc.get("recording") or {}
    storage = doc.get("storage") or {}
    metadata = doc.get("metadata") or {}
    return sessions_pb2.Session(
        session_id=doc["_id"],
        owner_user_id=doc["owner_user_id"],
        name=doc["name"],
        description=doc.get("description", ""),
        state=state_value(doc["state"]),
        rdp_config=(
            sessions_pb2.RdpConfig(host=rdp["host"], port=rdp["port"], username=rdp["username"])
            if rdp
            else None
        ),
        recording_config=sessions_pb2.RecordingConfig(
            frame_rate=int(recording.get("frame_rate", DEFAULT_FRAME_RATE)),
            resolution=recording.get("resolution", DEFAULT_RESOLUTION),
            quality=_QUALITY_BACK.get(recording.get("quality", "medium"), 2),  # type: ignore[arg-type]
            compression_level=int(recording.get("compression_level", 3)),
        ),
        storage_config=sessions_pb2.StorageConfig(
            retention_days=int(storage.get("retention_days", DEFAULT_RETENTION_DAYS)),
            max_size_bytes=int(storage.get("max_size_bytes", 0)),
        ),
        metadata=sessions_pb2.SessionMetadata(
            project=metadata.get("project", ""),
            environment=metadata.get("environment", ""),
            tags=list(metadata.get("tags", [])),
        ),
        trust_policy_id=doc.get("trust_policy_id", ""),
        rdp_server_id=doc.get("rdp_server_id", ""),
        statistics=statistics(doc.get("stats") or {}),
        merkle_root=doc.get("merkle_root", ""),
        manifest_id=doc.get("manifest_id", ""),
        anchoring=anchoring(doc.get("anchoring") or {}),
        recording_url=recording_url,
        create_time=optional_timestamp(doc.get("created_at")),
        update_time=optional_timestamp(doc.get("updated_at")),
        start_time=optional_timestamp(doc.get("started_at")),
        stop_time=optional_timestamp(doc.get("stopped_at")),
        complete_time=optional_timestamp(doc.get("completed_at")),
        error_message=doc.get("error_message", ""),
    )


def chunk(doc: Doc) -> chunks_pb2.Chunk:
    """A chunk message."""
    size = int(doc["size_bytes"])
    return chunks_pb2.Chunk(
        chunk_id=doc["_id"],
        session_id=doc["session_id"],
        sequence_number=int(doc["sequence_number"]),
        capture_time=optional_timestamp(doc.get("capture_time")),
        size_bytes=size,
        stored_size_bytes=int(doc["stored_bytes"]),
        duration=duration(float(doc.get("duration_s", 0.0))),
        frame_count=int(doc.get("frame_count", 0)),
        merkle_hash=doc["merkle_hash"],
        checksum=doc["checksum"],
        compression_ratio=int(doc["compressed_bytes"]) / size if size else 0.0,
        key_id=doc["key_id"],
        state=chunks_pb2.CHUNK_STATE_STORED,
        create_time=optional_timestamp(doc.get("created_at")),
    )


def pipeline(doc: Doc) -> sessions_pb2.Pipeline:
    """A pipeline message."""
    stages = doc.get("stages") or {}
    out = sessions_pb2.Pipeline(
        session_id=doc["_id"],
        state=_PIPELINE.get(doc.get("state", ""), sessions_pb2.PIPELINE_STATE_UNSPECIFIED),
        create_time=optional_timestamp(doc.get("created_at")),
        update_time=optional_timestamp(doc.get("updated_at")),
        error_message=doc.get("error_message", ""),
    )
    for name, stage in _STAGES.items():
        metrics: dict[str, Any] = stages.get(name) or {}
        processed = int(metrics.get("processed_count", 0))
        latency = float(metrics.get("latency_total_s", 0.0))
        out.stages.add(
            stage=stage,
            processed_count=processed,
            failed_count=int(metrics.get("failed_count", 0)),
            retry_count=int(metrics.get("retry_count", 0)),
            bytes_in=int(metrics.get("bytes_in", 0)),
            bytes_out=int(metrics.get("bytes_out", 0)),
            average_latency=duration(latency / processed if processed else 0.0),
            last_error=metrics.get("last_error", ""),
        )
    return out


def event(doc: Doc) -> sessions_pb2.SessionEvent:
    """An audit event message."""
    return sessions_pb2.SessionEvent(
        event_id=doc["_id"],
        event_time=optional_timestamp(doc["event_time"]),
        event_type=doc["event_type"],
        user_id=doc.get("user_id", ""),
        session_id=doc["session_id"],
        resource_id=doc.get("resource_id", ""),
        ip_address=doc.get("ip_address", ""),
        success=bool(doc.get("success", True)),
    )


def manifest(doc: Doc, chunks: list[Doc] | None) -> manifests_pb2.Manifest:
    """A manifest message (with its chunk list unless ``chunks`` is None)."""
    compression = doc.get("compression") or {}
    encryption = doc.get("encryption") or {}
    out = manifests_pb2.Manifest(
        manifest_id=doc["_id"],
        manifest_version=doc["manifest_version"],
        session_id=doc["session_id"],
        owner_user_id=doc["owner_user_id"],
        merkle_root=doc["merkle_root"],
        hash_algorithm=sessions_pb2.HASH_ALGORITHM_SHA256,
        chunk_count=int(doc["chunk_count"]),
        total_size_bytes=int(doc["total_size_bytes"]),
        compression=manifests_pb2.CompressionParameters(
            algorithm=compression.get("algorithm", ""), level=int(compression.get("level", 0))
        ),
        encryption=manifests_pb2.EncryptionParameters(
            algorithm=encryption.get("algorithm", ""),
            key_derivation=encryption.get("key_derivation", ""),
            key_id=encryption.get("key_id", ""),
            blob_format_version=int(encryption.get("blob_format_version", 0)),
        ),
        total_checksum=doc["total_checksum"],
        signature=doc["signature"],
        signer_public_key=doc["signer_public_key"],
        generate_time=optional_timestamp(doc["generate_time"]),
        blockchain_anchored=bool(doc.get("blockchain_anchored", False)),
        anchoring=anchoring(doc.get("anchoring") or {}),
        validation_status=manifests_pb2.MANIFEST_VALIDATION_STATUS_VALID
        if doc.get("validation_status") == "valid"
        else manifests_pb2.MANIFEST_VALIDATION_STATUS_PENDING,
    )
    for c in chunks or ():
        out.chunks.add(
            chunk_id=c["_id"],
            index=int(c["sequence_number"]) - 1,
            size_bytes=int(c["size_bytes"]),
            merkle_hash=c["merkle_hash"],
            checksum=c["checksum"],
            key_id=c["key_id"],
            storage_path=c["storage_path"],
        )
    return out


def rule_fields(rule: trust_pb2.TrustRule) -> Doc:
    """A trust rule as stored."""
    return {
        "rule_id": rule.rule_id,
        "effect": trust_pb2.RuleEffect.Name(rule.effect),
        "condition": rule.condition,
        "action": rule.action,
        "priority": rule.priority,
        "enabled": rule.enabled,
    }


def policy(doc: Doc) -> trust_pb2.TrustPolicy:
    """A trust policy message."""
    return trust_pb2.TrustPolicy(
        policy_id=doc["_id"],
        owner_user_id=doc["owner_user_id"],
        name=doc["name"],
        description=doc.get("description", ""),
        rules=[
            trust_pb2.TrustRule(
                rule_id=r["rule_id"],
                effect=trust_pb2.RuleEffect.Value(r["effect"]),
                condition=r["condition"],
                action=r["action"],
                priority=int(r["priority"]),
                enabled=bool(r["enabled"]),
            )
            for r in doc.get("rules", [])
        ],
        enabled=bool(doc.get("enabled", False)),
        create_time=optional_timestamp(doc.get("created_at")),
        update_time=optional_timestamp(doc.get("updated_at")),
    )


SESSION_ORDERS = {
    sessions_pb2.SESSION_ORDER_UNSPECIFIED: [("created_at", -1)],
    sessions_pb2.SESSION_ORDER_CREATE_TIME_DESC: [("created_at", -1)],
    sessions_pb2.SESSION_ORDER_CREATE_TIME_ASC: [("created_at", 1)],
    sessions_pb2.SESSION_ORDER_UPDATE_TIME_DESC: [("updated_at", -1)],
    sessions_pb2.SESSION_ORDER_NAME_ASC: [("name", 1)],
}
"""A list order as the stored fields it sorts by."""


def caller(context: grpc.aio.ServicerContext) -> Caller:
    """The caller of the current rpc, with the client address as the edge reports it."""
    client = client_of(context)
    return Caller.of(client.principal, client.ip)


def session_filter(request: sessions_pb2.ListSessionsRequest) -> SessionFilter:
    """The filter of a ListSessions request."""
    return SessionFilter(
        state=state_name(request.state) if request.state else "",
        project=request.project,
        environment=request.environment,
        tag=request.tag,
    )
