"""The figures the project tracks against a target, and the one table ``make bench`` ends with.

Each benchmark module reports its figures (``bench.common.Figure``); a few carry their own
target. ``TRACKED`` names, per area, the figures the issues and specs set a target for
(where it comes from is in ``source``), so the summary shows every tracked ratio with its
target whichever module measured it, and says "not measured" for a module that did not run.
``summary_rows`` builds that table from ``var/bench/results.json``'s shape;
``render_markdown`` writes it as ``docs/benchmarks.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Results = Mapping[str, Sequence[Mapping[str, Any]]]
"""``{"bench_merkle": [{"name": …, "value": …, "unit": …}, …], …}`` (results.json)."""


@dataclass(frozen=True)
class Tracked:
    """One tracked figure: which module measures it and its target."""

    area: str
    module: str
    """The benchmark module (``bench_<module>``), as ``python -m bench <module>`` names it."""
    pattern: str
    """A regular expression the figure's name matches (several figures may match)."""
    source: str
    """Where the target is set."""
    at_most: float | None = None
    at_least: float | None = None

    @property
    def target(self) -> str:
        """``≤ 1.2`` or ``≥ 0.85``."""
        if self.at_most is not None:
            return f"≤ {self.at_most:.4g}"
        return f"≥ {self.at_least:.4g}"

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the target (NaN never does)."""
        if self.at_most is not None:
            return value <= self.at_most
        assert self.at_least is not None
        return value >= self.at_least


TRACKED: tuple[Tracked, ...] = (
    Tracked(
        "pipeline",
        "pipeline",
        r"^pipeline with token / bare throughput$",
        "issue 15",
        at_least=0.85,
    ),
    Tracked(
        "pipeline",
        "front",
        r"^ghz full chain / bare throughput, median",
        "issue 15",
        at_least=0.85,
    ),
    Tracked(
        "edge", "edge", r"^REST via Envoy edge / direct: throughput$", "bench_edge", at_least=0.70
    ),
    Tracked("edge", "edge", r"^REST via Envoy edge / direct: p99$", "bench_edge", at_most=2.0),
    Tracked("chunks", "chunks", r"^UploadChunks / raw$", "issue 15", at_least=0.80),
    Tracked("Merkle", "merkle", r"^root / bare SHA-256$", "issue 15", at_most=1.2),
    Tracked("Merkle", "merkle", r"^verification / bare SHA-256$", "issue 15", at_most=1.2),
    Tracked(
        "chain verify", "chain", r"^verify from MongoDB / bare crypto$", "issue 15", at_least=0.50
    ),
    Tracked(
        "anchoring",
        "anchoring",
        r"^stop → completed, worst, in measured block spacings$",
        "issue 8",
        at_most=3.0,
    ),
    Tracked("load", "load", r": stop → completed p99$", "issue 8 item 5", at_most=3.0),
    Tracked("load", "load", r": sessions failed$", "issue 8 item 5", at_most=0.0),
    Tracked("login", "auth", r"32 concurrent.*: throughput$", "issue 15", at_least=200.0),
    Tracked("login", "auth", r"32 concurrent.*: p99$", "issue 15", at_most=500.0),
    Tracked("payouts", "payments", r"^created→confirmed p95$", "spec 07 §6", at_most=60.0),
    Tracked(
        "payouts",
        "payments",
        r"payouts created→confirmed: throughput$",
        "spec 07 §6 (100+/hour)",
        at_least=100 / 3600,
    ),
    Tracked(
        "recorder",
        "rdp",
        r"^frames captured, .* busy$",
        "issue 10 (10 fps, 95 % kept)",
        at_least=9.5,
    ),
    Tracked(
        "recorder",
        "rdp",
        r"desktops recorded at \d+ fps at once without dropping$",
        "issue 10",
        at_least=1.0,
    ),
    Tracked("nodes", "nodes", r"^registrations/s", "spec 05 (> 100/s)", at_least=100.0),
    Tracked("nodes", "nodes", r"^PoOT validation p50", "spec 05 (< 500 ms)", at_most=500.0),
)


@dataclass(frozen=True)
class Row:
    """One line of the summary."""

    area: str
    figure: str
    value: float | None
    unit: str
    target: str
    source: str

    met: bool | None
    """Whether the target is met (None when not measured)."""

    @property
    def verdict(self) -> str:
        """``met``, ``NOT met`` or ``not measured``."""
        if self.met is None:
            return "not measured"
        return "met" if self.met else "NOT met"

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "area": self.area,
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "source": self.source,
            "met": self.met,
        }


def readable(pattern: str) -> str:
    """A tracked figure's pattern as a name, for a row that was not measured."""
    text = pattern.strip("^$").replace(".*", "…").replace(r"\d+", "N")
    return text.removeprefix(": ").replace("\\", "")


def summary_rows(results: Results) -> list[Row]:
    """Every tracked figure found in ``results`` (one row per matching figure), then a
    "not measured" row for each tracked figure whose module did not report it."""
    rows: list[Row] = []
    for tracked in TRACKED:
        figures = results.get(f"bench_{tracked.module}", ())
        found = [f for f in figures if re.search(tracked.pattern, str(f.get("name", "")))]
        if not found:
            rows.append(
                Row(
                    tracked.area,
                    readable(tracked.pattern),
                    None,
                    "",
                    tracked.target,
                    tracked.source,
                    None,
                )
            )
            continue
        for figure in found:
            value = float(figure["value"])
            rows.append(
                Row(
                    tracked.area,
                    str(figure["name"]),
                    value,
                    str(figure.get("unit", "")),
                    tracked.target,
                    tracked.source,
                    tracked.met(value),
                )
            )
    return rows


def _value(row: Row) -> str:
    return "—" if row.value is None else f"{row.value:,.3f}"


def render_table(rows: Sequence[Row]) -> str:
    """The summary as plain text for the terminal."""
    lines = [f"{'area':<13} {'figure':<62} {'value':>12} {'target':>10}  verdict"]
    for row in rows:
        lines.append(
            f"{row.area:<13} {row.figure[:62]:<62} {_value(row):>12} {row.target:>10}  "
            f"{row.verdict}"
        )
    return "\n".join(lines)


def render_markdown(rows: Sequence[Row], *, measured_at: str, machine: str) -> str:
    """``docs/benchmarks.md``: the table with its date and the machine it ran on."""
    met = sum(1 for r in rows if r.met)
    measured = sum(1 for r in rows if r.value is not None)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m bench`; one module: `python -m bench merkle`)",
        "from `var/bench/results.json`. Every ratio and figure the project tracks, with its",
        "target and where the target is set. Ratios are measured side by side in one run;",
        "absolute figures depend on the machine and its load at the time.",
        "",
        f"Measured {measured_at} on {machine}: {met} of {measured} measured targets met.",
        "",
        "| area | figure | value | unit | target | source | verdict |",
        "|---|---|---:|---|---|---|---|",
    ]
    for row in rows:
        figure = row.figure.replace("|", "\\|")
        lines.append(
            f"| {row.area} | {figure} | {_value(row)} | {row.unit} | {row.target} | "
            f"{row.source} | {row.verdict} |"
        )
    return "\n".join(lines) + "\n"
