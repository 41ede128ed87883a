"""Typed records of the rdp cluster: servers, their desktop accounts, RDP sessions.

States are the proto enum names without prefix, lower case, as stored
(``stopped``, ``running``, ``active``, …); ``convert`` maps them to the enums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DesktopConfig:
    """A server's desktop configuration (spec 04 §3)."""

    desktop: str = "xfce"
    resolution: str = "1024x768"
    color_depth: int = 24
    audio: bool = True
    clipboard: bool = True
    drive_redirection: bool = False
    printer_redirection: bool = False


@dataclass(frozen=True)
class Resources:
    """A server's granted resources (0 means the per-server default)."""

    cpu_cores: float = 0.0
    memory_mb: int = 0
    disk_mb: int = 0
    bandwidth_mbps: int = 0


@dataclass(frozen=True)
class Account:
    """The dedicated local desktop account of a server."""

    username: str
    password_sealed: bytes
    """The random password, sealed (``lucid.lib.sealing``); never stored in clear."""


@dataclass(frozen=True)
class ServerRecord:
    """A stored RDP server."""

    server_id: str
    user_id: str
    name: str
    state: str
    port: int
    host: str
    account: Account
    created_at: datetime
    updated_at: datetime
    description: str = ""
    config: DesktopConfig = field(default_factory=DesktopConfig)
    resources: Resources = field(default_factory=Resources)
    pid: int = 0
    error_message: str = ""
    started_at: datetime | None = None
    stopped_at: datetime | None = None

    def doc(self) -> dict[str, Any]:
        """The ``rdp_servers`` document."""
        return {
            "_id": self.server_id,
            "user_id": self.user_id,
            "name": self.name,
            "description": self.description,
            "state": self.state,
            "port": self.port,
            "host": self.host,
            "account": {
                "username": self.account.username,
                "password_sealed": self.account.password_sealed,
            },
            "config": vars(self.config),
            "resources": vars(self.resources),
            "pid": self.pid,
            "error_message": self.error_message,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
        }

    @classmethod
    def of(cls, doc: dict[str, Any]) -> ServerRecord:
        """From an ``rdp_servers`` document."""
        account = doc["account"]
        return cls(
            server_id=doc["_id"],
            user_id=doc["user_id"],
            name=doc["name"],
            description=doc.get("description", ""),
            state=doc["state"],
            port=int(doc["port"]),
            host=doc["host"],
            account=Account(account["username"], bytes(account["password_sealed"])),
            config=DesktopConfig(**doc.get("config", {})),
            resources=Resources(**doc.get("resources", {})),
            pid=int(doc.get("pid", 0)),
            error_message=doc.get("error_message", ""),
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
            started_at=doc.get("started_at"),
            stopped_at=doc.get("stopped_at"),
        )


@dataclass(frozen=True)
class ClientDetails:
    """What a client reported about itself."""

    name: str = ""
    version: str = ""
    ip_address: str = ""
    resolution: str = ""
    color_depth: int = 0


@dataclass(frozen=True)
class SessionRecord:
    """A stored RDP session (its id is the cluster 03 recording session's)."""

    session_id: str
    server_id: str
    user_id: str
    state: str
    created_at: datetime
    last_activity: datetime
    connected: bool = False
    connected_at: datetime | None = None
    disconnected_at: datetime | None = None
    terminated_at: datetime | None = None
    token_sha256: str = ""
    token_expires_at: datetime | None = None
    client: ClientDetails = field(default_factory=ClientDetails)
    termination_reason: str = ""

    def doc(self) -> dict[str, Any]:
        """The ``rdp_sessions`` document."""
        return {
            "_id": self.session_id,
            "server_id": self.server_id,
            "user_id": self.user_id,
            "state": self.state,
            "created_at": self.created_at,
            "last_activity": self.last_activity,
            "connected": self.connected,
            "connected_at": self.connected_at,
            "disconnected_at": self.disconnected_at,
            "terminated_at": self.terminated_at,
            "token_sha256": self.token_sha256,
            "token_expires_at": self.token_expires_at,
            "client": vars(self.client),
            "termination_reason": self.termination_reason,
        }

    @classmethod
    def of(cls, doc: dict[str, Any]) -> SessionRecord:
        """From an ``rdp_sessions`` document."""
        return cls(
            session_id=doc["_id"],
            server_id=doc["server_id"],
            user_id=doc["user_id"],
            state=doc["state"],
            created_at=doc["created_at"],
            last_activity=doc["last_activity"],
            connected=bool(doc.get("connected")),
            connected_at=doc.get("connected_at"),
            disconnected_at=doc.get("disconnected_at"),
            terminated_at=doc.get("terminated_at"),
            token_sha256=doc.get("token_sha256", ""),
            token_expires_at=doc.get("token_expires_at"),
            client=ClientDetails(**doc.get("client", {})),
            termination_reason=doc.get("termination_reason", ""),
        )


@dataclass(frozen=True)
class Sample:
    """One resource sample of the host, a server (its processes) or a session."""

    scope: str
    """``host``, ``server`` or ``session``."""
    subject_id: str
    """The server or session id ("" for the host)."""
    time: datetime
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    memory_mb: float = 0.0
    disk_percent: float = 0.0
    disk_mb: float = 0.0
    net_in_kbps: float = 0.0
    net_out_kbps: float = 0.0

    def doc(self) -> dict[str, Any]:
        """The ``rdp_resource_metrics`` document."""
        return dict(vars(self))

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Sample:
        """From an ``rdp_resource_metrics`` document."""
        return cls(**{k: v for k, v in doc.items() if k != "_id"})


@dataclass(frozen=True)
class Limits:
    """The resource limits and alert thresholds (spec 04 §4.4)."""

    max_servers: int = 50
    max_sessions: int = 100
    total_cpu_percent: float = 80.0
    total_memory_percent: float = 80.0
    total_disk_percent: float = 90.0
    server_cpu_percent: float = 80.0
    server_memory_mb: int = 4096
    server_disk_mb: int = 20480
    server_bandwidth_mbps: int = 1000
    session_cpu_percent: float = 50.0
    session_memory_mb: int = 2048
    session_bandwidth_mbps: int = 500
    session_max_duration_s: int = 3600
    cpu_threshold: float = 80.0
    memory_threshold: float = 80.0
    disk_threshold: float = 90.0
    network_threshold_mbps: float = 1000.0
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Alert:
    """A resource alert (``rdp_resource_alerts``)."""

    alert_id: str
    server_id: str
    session_id: str
    severity: str
    """``medium``, ``high`` or ``critical``."""
    resource_type: str
    """``cpu``, ``memory``, ``disk`` or ``network``."""
    threshold: float
    current_value: float
    message: str
    created_at: datetime
    resolved: bool = False
    resolved_at: datetime | None = None
    resolved_by: str = ""
    enforced: bool = False
    """The soft limit was enforced (the server's sessions terminated)."""

    def doc(self) -> dict[str, Any]:
        """The ``rdp_resource_alerts`` document."""
        doc = dict(vars(self))
        doc["_id"] = doc.pop("alert_id")
        return doc

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Alert:
        """From an ``rdp_resource_alerts`` document."""
        fields = dict(doc)
        fields["alert_id"] = fields.pop("_id")
        return cls(**fields)


@dataclass(frozen=True)
class XrdpSettings:
    """The xrdp daemon's settings (spec 04 §3), with their defaults."""

    port: int = 3389
    ssl_enabled: bool = True
    max_connections: int = 100
    session_timeout_s: int = 3600
    idle_timeout_s: int = 1800
    auth_method: str = "password"
    encryption_level: str = "high"
    tls_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    max_login_attempts: int = 3
    login_timeout_s: int = 60
    compression: bool = True
    bitmap_cache: bool = True
    glyph_cache: bool = True
    bitmap_cache_bytes: int = 32_000_000
    updated_at: datetime | None = None
    updated_by: str = ""
