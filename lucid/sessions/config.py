"""Settings of the sessions cluster beyond the shared ones (defaults fit one machine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lucid.runtime.config import Settings


@dataclass(frozen=True)
class SessionsConfig:
    """Where blobs live and how finalization paces itself."""

    blob_root: Path
    """The chunk volume (content-addressed blobs)."""
    anchor_poll_s: float = 0.2
    """How often the finalizer asks the chain for its height while sessions wait for a
    block (one call for all of them), and the pause between other finalization steps."""
    anchor_recheck_s: float = 2.0
    """How long a session waits for a new final block before it asks about its anchor
    anyway (an expiry comes without a block; a chain may not answer heights)."""
    anchor_attempts: int = 3
    """Failed anchoring attempts before a session fails (spec 03 §4)."""
    anchor_retry_backoff_s: float = 1.0
    """The wait before the next attempt (doubled after each failure)."""
    anchor_timeout_s: float = 120.0
    """How long one attempt may wait for a final block before it counts as failed."""
    rdp_connect_timeout_s: float = 5.0
    """How long the RDP host of a new session has to answer on TCP (spec 03 §2)."""
    create_per_minute: int = 10
    """Session creations per user per minute (spec 03 §5)."""
    lease_s: float = 15.0
    """How long a worker holds a session it finalizes before another may take it."""
    sweep_interval_s: float = 5.0
    """How often the finalizer looks for sessions left unfinished (after a restart)."""

    @classmethod
    def of(cls, settings: Settings, **overrides: object) -> SessionsConfig:
        """The defaults for ``settings``, with ``overrides``."""
        values: dict[str, object] = {"blob_root": settings.var_dir / "blobs" / "sessions"}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
