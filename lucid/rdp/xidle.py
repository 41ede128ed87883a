"""How long an X display has had no user input: the MIT-SCREEN-SAVER extension's
idle time, read with ``xprintidle`` (Debian package ``xprintidle``). The X server
resets it on every key and pointer event it receives, whichever way they come
(an RDP client's input through xrdp included), so it is the desktop's real input
activity, not merely a connected client."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

log = logging.getLogger("lucid.rdp.xidle")

TIMEOUT_S = 5.0


def idle_s(display: str, xauthority: Path) -> float | None:
    """Seconds since the display's last input; None when it cannot be read (the
    display is gone, the tool missing)."""
    try:
        result = subprocess.run(
            ["xprintidle"],
            env={**os.environ, "DISPLAY": display, "XAUTHORITY": str(xauthority)},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=True,
        )
        return int(result.stdout.strip()) / 1000.0
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.debug("no idle time of display %s: %s", display, exc)
        return None
