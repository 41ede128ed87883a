"""Resource samples of the machine the agent runs on (psutil)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from lucid.nodes.v1 import nodes_pb2 as npb

GIB = 1024**3


def hardware(state_dir: Path, bandwidth_mbps: int) -> npb.HardwareInfo:
    """What the machine has (the bandwidth is what the operator declares)."""
    disk = psutil.disk_usage(str(state_dir))
    return npb.HardwareInfo(
        cpu_cores=max(1, min(128, psutil.cpu_count() or 1)),
        memory_bytes=max(GIB, psutil.virtual_memory().total),
        storage_bytes=max(10 * GIB, disk.total),
        network_interfaces=[npb.NetworkInterface(name="uplink", bandwidth_mbps=bandwidth_mbps)],
        cpu_model=os.uname().machine,
    )


class Sampler:
    """Resource samples, with network rates since the previous sample."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        counters = psutil.net_io_counters()
        self._last = (time.monotonic(), counters.bytes_recv, counters.bytes_sent)
        psutil.cpu_percent(None)

    def sample(self) -> npb.NodeResourceSample:
        """The current usage."""
        now = time.monotonic()
        counters = psutil.net_io_counters()
        then, received, sent = self._last
        elapsed = max(now - then, 1e-3)
        self._last = (now, counters.bytes_recv, counters.bytes_sent)
        return npb.NodeResourceSample(
            cpu_percent=min(100.0, psutil.cpu_percent(None)),
            memory_percent=psutil.virtual_memory().percent,
            disk_percent=psutil.disk_usage(str(self._state_dir)).percent,
            network_in_bytes_per_second=max(0, int((counters.bytes_recv - received) / elapsed)),
            network_out_bytes_per_second=max(0, int((counters.bytes_sent - sent) / elapsed)),
            load_average=os.getloadavg()[0],
        )
