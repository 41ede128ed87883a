"""Runs every ``bench/bench_*.py`` module (or those named) and prints their figures.

Each module has ``async def run(ctx: BenchContext) -> list[Figure]``. The figures go
to stdout as a table and to ``var/bench/results.json``, so a run can be quoted and
compared. Usage: ``python -m bench [name ...]``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

from bench.common import BenchContext, Figure


def _modules(names: list[str]) -> list[str]:
    found = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    if names:
        found = [m for m in found if m.removeprefix("bench_") in names or m in names]
    return found


async def _main(names: list[str]) -> None:
    results: dict[str, list[dict[str, object]]] = {}
    async with BenchContext.create() as ctx:
        for name in _modules(names):
            module = importlib.import_module(f"bench.{name}")
            started = time.perf_counter()
            figures: list[Figure] = await module.run(ctx)
            print(f"\n## {name} ({time.perf_counter() - started:.1f}s)")
            for figure in figures:
                line = f"  {figure.name:<58} {figure.value:>14,.3f} {figure.unit}"
                if figure.target:
                    line += f"   target {figure.target}: {'met' if figure.met else 'NOT met'}"
                print(line)
            results[name] = [f.as_dict() for f in figures]
    out = Path("var/bench/results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
