"""Proto ↔ record mapping of the rdp contract."""

from __future__ import annotations

from lucid.rdp.records import ClientDetails, DesktopConfig, Resources, ServerRecord, SessionRecord
from lucid.rdp.v1 import rdp_pb2, session_pb2
from lucid.runtime import wire

DEFAULT_RESOLUTION = "1024x768"
DEFAULT_COLOR_DEPTH = 24


def server_state(name: str) -> rdp_pb2.ServerState.ValueType:
    """``running`` → ``SERVER_STATE_RUNNING``."""
    return rdp_pb2.ServerState.Value(f"SERVER_STATE_{name.upper()}")


def server_state_name(value: int) -> str:
    """``SERVER_STATE_RUNNING`` → ``running`` ("" for unspecified)."""
    if not value:
        return ""
    return rdp_pb2.ServerState.Name(value).removeprefix("SERVER_STATE_").lower()  # type: ignore[arg-type]


def session_state(name: str) -> session_pb2.RdpSessionState.ValueType:
    """``active`` → ``RDP_SESSION_STATE_ACTIVE``."""
    return session_pb2.RdpSessionState.Value(f"RDP_SESSION_STATE_{name.upper()}")


def session_state_name(value: int) -> str:
    """``RDP_SESSION_STATE_ACTIVE`` → ``active`` ("" for unspecified)."""
    if not value:
        return ""
    name = session_pb2.RdpSessionState.Name(value)  # type: ignore[arg-type]
    return name.removeprefix("RDP_SESSION_STATE_").lower()


def desktop_config(message: rdp_pb2.ServerConfiguration) -> DesktopConfig:
    """A configuration message with defaults applied."""
    desktop = message.desktop_environment or rdp_pb2.DESKTOP_ENVIRONMENT_XFCE
    return DesktopConfig(
        desktop=rdp_pb2.DesktopEnvironment.Name(desktop)
        .removeprefix("DESKTOP_ENVIRONMENT_")
        .lower(),
        resolution=message.resolution or DEFAULT_RESOLUTION,
        color_depth=message.color_depth or DEFAULT_COLOR_DEPTH,
        audio=message.audio_enabled if message.HasField("audio_enabled") else True,
        clipboard=message.clipboard_enabled if message.HasField("clipboard_enabled") else True,
        drive_redirection=message.drive_redirection_enabled,
        printer_redirection=message.printer_redirection_enabled,
    )


def resources(message: rdp_pb2.ServerResources) -> Resources:
    """A resources message."""
    return Resources(
        cpu_cores=message.cpu_cores,
        memory_mb=message.memory_mb,
        disk_mb=message.disk_mb,
        bandwidth_mbps=message.bandwidth_mbps,
    )


def server(record: ServerRecord) -> rdp_pb2.Server:
    """A server message (never the account's password)."""
    config = record.config
    return rdp_pb2.Server(
        server_id=record.server_id,
        user_id=record.user_id,
        name=record.name,
        description=record.description,
        state=server_state(record.state),
        port=record.port,
        host=record.host,
        configuration=rdp_pb2.ServerConfiguration(
            desktop_environment=rdp_pb2.DesktopEnvironment.Value(
                f"DESKTOP_ENVIRONMENT_{config.desktop.upper()}"
            ),
            resolution=config.resolution,
            color_depth=config.color_depth,
            audio_enabled=config.audio,
            clipboard_enabled=config.clipboard,
            drive_redirection_enabled=config.drive_redirection,
            printer_redirection_enabled=config.printer_redirection,
        ),
        resources=rdp_pb2.ServerResources(**vars(record.resources)),
        pid=record.pid,
        error_message=record.error_message,
        create_time=wire.optional_timestamp(record.created_at),
        update_time=wire.optional_timestamp(record.updated_at),
        start_time=wire.optional_timestamp(record.started_at),
        stop_time=wire.optional_timestamp(record.stopped_at),
    )


def client_details(message: session_pb2.ClientInfo) -> ClientDetails:
    """A client info message."""
    return ClientDetails(
        name=message.client_name,
        version=message.client_version,
        ip_address=message.ip_address,
        resolution=message.resolution,
        color_depth=message.color_depth,
    )


def connection_info(record: SessionRecord, host: str, port: int) -> session_pb2.ConnectionInfo:
    """Where the client connects."""
    return session_pb2.ConnectionInfo(
        client_ip=record.client.ip_address,
        server_ip=host,
        server_port=port,
        protocol_version="RDP 5+ (TLS)",
        encryption_level="high",
    )


def session(record: SessionRecord) -> session_pb2.RdpSession:
    """An RDP session message (never the token)."""
    client = record.client
    return session_pb2.RdpSession(
        session_id=record.session_id,
        server_id=record.server_id,
        user_id=record.user_id,
        state=session_state(record.state),
        create_time=wire.optional_timestamp(record.created_at),
        connect_time=wire.optional_timestamp(record.connected_at),
        last_activity_time=wire.optional_timestamp(record.last_activity),
        disconnect_time=wire.optional_timestamp(record.disconnected_at),
        terminate_time=wire.optional_timestamp(record.terminated_at),
        client_info=session_pb2.ClientInfo(
            client_name=client.name,
            client_version=client.version,
            ip_address=client.ip_address,
            resolution=client.resolution,
            color_depth=client.color_depth,
        ),
        termination_reason=record.termination_reason,
    )
