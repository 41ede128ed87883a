"""Settings of the rdp cluster: the port range, instance directories, lifecycle
timings, session timeouts and the recorder's frame rate, resolution and segment length."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lucid.runtime.config import Settings


@dataclass(frozen=True)
class RdpConfig:
    """What the rdp cluster needs to know beyond the mesh settings."""

    instances_dir: Path
    """Per-server config, log and session directories (``<var>/rdp/servers/<id>``)."""
    host: str = "127.0.0.1"
    """Where RDP listeners bind (loopback on one machine)."""
    port_first: int = 33890
    """First port of the instance range (spec 04 §4.2)."""
    port_last: int = 33999
    """Last port of the instance range."""
    max_servers: int = 50
    """Global limit of servers (spec 04 §4.4) until an admin stores other limits."""
    max_sessions: int = 100
    """Global limit of open RDP sessions until an admin stores other limits."""
    resource_interval_s: float = 30.0
    """How often the host and each running server are sampled (spec 04 §4.4)."""
    start_wait_s: float = 3.0
    """How long a spawned listener has to accept TCP before it counts as failed."""
    stop_grace_s: float = 10.0
    """SIGTERM, then SIGKILL after this long."""
    monitor_interval_s: float = 30.0
    """How often running servers are checked; a dead process → error (spec 04 §4.1)."""
    sweep_interval_s: float = 30.0
    """How often sessions are checked for idle and session timeouts."""
    idle_timeout_s: float = 1800.0
    """An active session without client activity this long → disconnected."""
    session_timeout_s: float = 3600.0
    """A session older than this → terminated."""
    token_ttl_s: float = 3600.0
    """Lifetime of a connection token (spec 04 §4.3)."""
    frame_rate: int = 10
    """Frames per second the recorder captures."""
    resolution: str = "1024x768"
    """``WIDTHxHEIGHT`` the recorder scales frames to (the recording config's resolution,
    320x240 to 7680x4320)."""
    segment_s: float = 2.0
    """Length of one recorded segment (one chunk, starting with a key frame)."""
    account_prefix: str = "lucidrdp"
    """Prefix of the dedicated local desktop accounts."""

    @classmethod
    def of(cls, settings: Settings, **changes: Any) -> RdpConfig:
        """The defaults for a mesh's settings, with ``changes`` applied."""
        base = cls(instances_dir=settings.var_dir / "rdp")
        return dataclasses.replace(base, **changes)
