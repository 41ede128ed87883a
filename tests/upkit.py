"""A running ``lucid up`` for tests: the whole mesh as real processes on free ports,
with its own stores, validators, node agents and TRON devnet under a private var dir."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lucid.runtime.config import CLUSTERS, Settings, load_settings
from lucid.supervisor.localservers import free_port
from tests.chain_cluster import consecutive_free_ports

UP_TIMEOUT_S = 180.0
"""How long `lucid up` may take to print its banner (about 90 s on a loaded 2-core machine)."""


@dataclass
class Up:
    """A running ``lucid up``."""

    process: subprocess.Popen[str]
    env: dict[str, str]
    var_dir: Path
    output: list[str]

    @property
    def settings(self) -> Settings:
        """The settings the mesh runs with."""
        return load_settings(self.env)

    def pids(self) -> dict[str, int | None]:
        """The supervisor's children by name."""
        state = json.loads((self.var_dir / "supervisor.json").read_text())
        return {name: entry["pid"] for name, entry in state.items()}


@contextlib.contextmanager
def lucid_up(var_dir: Path) -> Iterator[Up]:
    """``lucid up`` until its banner is printed; stopped with Ctrl-C (SIGINT) at the end."""
    env = {
        # none of the test session's own settings leak in, but where its tools and stores live
        **{k: v for k, v in os.environ.items() if not k.startswith("LUCID_")},
        **{k: os.environ[k] for k in ("LUCID_FERRETDB_BACKEND", "LUCID_CACHE") if k in os.environ},
        "LUCID_VAR_DIR": str(var_dir),
        "LUCID_MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/",
        "LUCID_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "LUCID_EDGE_PORT": str(free_port()),
        "LUCID_HEALTH_INTERVAL_S": "0.5",
        "LUCID_EXTRA_VALIDATOR_PORT": str(consecutive_free_ports(2)),
        "LUCID_BLOCK_INTERVAL_S": "0.5",
        "LUCID_LEADER_TIMEOUT_S": "1.0",
        "LUCID_DEVNET_TRON_PORT": str(free_port()),
        **{f"LUCID_PORT_{c.upper()}": str(free_port()) for c in CLUSTERS},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "lucid", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + UP_TIMEOUT_S
    assert process.stdout is not None
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line.rstrip("\n"))
            if "Ctrl-C stops everything" in line:
                break
        assert any("Lucid is up" in line for line in output), "\n".join(output)
        yield Up(process, env, var_dir, output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=90)
