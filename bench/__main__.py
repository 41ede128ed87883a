"""Runs every ``bench/bench_*.py`` module (or those named) and prints their figures.

Each module has ``async def run(ctx: BenchContext) -> list[Figure]``. The figures go
to stdout and to ``var/bench/results.json`` (a run of some modules replaces only theirs
there), so a run can be quoted and compared. The run ends with one table of every figure
the project tracks against a target (``bench.targets``), also written to
``docs/benchmarks.md``. A module that fails is reported and the others still run; the
exit status is then 1. Usage: ``python -m bench [name ...]``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.common import BenchContext, Figure
from bench.targets import render_markdown, render_table, summary_rows

RESULTS = Path("var/bench/results.json")
DOCUMENT = Path("docs/benchmarks.md")


def _modules(names: list[str]) -> list[str]:
    found = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    if names:
        found = [m for m in found if m.removeprefix("bench_") in names or m in names]
    return found


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load:.1f} at the end"
    )


async def _main(names: list[str]) -> int:
    results: dict[str, list[dict[str, object]]] = {}
    if RESULTS.is_file() and names:  # keep the figures of the modules not run now
        results = json.loads(RESULTS.read_text())
    failed: list[str] = []
    async with BenchContext.create() as ctx:
        for name in _modules(names):
            started = time.perf_counter()
            try:
                module = importlib.import_module(f"bench.{name}")
                figures: list[Figure] = await module.run(ctx)
            except Exception:
                traceback.print_exc()
                print(f"\n## {name} FAILED ({time.perf_counter() - started:.1f}s)")
                failed.append(name)
                results.pop(name, None)
                continue
            print(f"\n## {name} ({time.perf_counter() - started:.1f}s)")
            for figure in figures:
                line = f"  {figure.name:<58} {figure.value:>14,.3f} {figure.unit}"
                if figure.target:
                    line += f"   target {figure.target}: {'met' if figure.met else 'NOT met'}"
                print(line)
            results[name] = [f.as_dict() for f in figures]
    rows = summary_rows(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({**results, "summary": [r.as_dict() for r in rows]}, indent=2) + "\n"
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    DOCUMENT.write_text(render_markdown(rows, measured_at=stamp, machine=_machine()))
    print("\n## tracked figures and their targets\n")
    print(render_table(rows))
    print(f"\nresults written to {RESULTS} and {DOCUMENT}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
