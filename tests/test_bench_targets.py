"""The summary ``make bench`` ends with: every tracked figure with its target, met or not,
and "not measured" for a module that did not run; docs/benchmarks.md from the same rows."""

from __future__ import annotations

from pathlib import Path

from bench.targets import TRACKED, render_markdown, render_table, summary_rows


def test_every_tracked_figure_names_an_existing_benchmark_module() -> None:
    bench = Path(__file__).resolve().parent.parent / "bench"
    for tracked in TRACKED:
        assert (bench / f"bench_{tracked.module}.py").is_file(), tracked
        assert (tracked.at_most is None) != (tracked.at_least is None), tracked


def test_the_tracked_areas_cover_what_issue_14_lists() -> None:
    areas = {t.area for t in TRACKED}
    wanted = {"pipeline", "edge", "chunks", "Merkle", "chain verify", "anchoring", "load"}
    assert wanted | {"payouts", "recorder"} <= areas


def test_rows_say_met_not_met_and_not_measured() -> None:
    results = {
        "bench_merkle": [
            {"name": "root / bare SHA-256", "value": 1.1, "unit": "ratio"},
            {"name": "verification / bare SHA-256", "value": 1.5, "unit": "ratio"},
            {"name": "leaf hashes of 1,000,000 entries", "value": 0.4, "unit": "s"},
        ],
        "bench_load": [
            {"name": "50 sessions: stop → completed p99", "value": 2.5, "unit": "blocks"},
            {"name": "50 sessions: sessions failed", "value": 1, "unit": "sessions"},
        ],
    }
    rows = summary_rows(results)
    by_figure = {r.figure: r for r in rows}
    assert by_figure["root / bare SHA-256"].verdict == "met"
    assert by_figure["verification / bare SHA-256"].verdict == "NOT met"
    assert by_figure["50 sessions: stop → completed p99"].met is True
    assert by_figure["50 sessions: sessions failed"].met is False
    assert "leaf hashes of 1,000,000 entries" not in by_figure  # untracked figures stay out
    chunks = [r for r in rows if r.area == "chunks"]
    assert chunks and all(r.verdict == "not measured" and r.value is None for r in chunks)
    assert [r.figure for r in chunks] == ["UploadChunks / raw"]  # a name, not the pattern
    recorder = [r.figure for r in rows if r.area == "recorder"]
    assert "frames captured, … busy" in recorder
    # one row per tracked figure that was not measured, and one per figure that was
    assert len(rows) == len(TRACKED)


def test_the_document_and_the_table_show_each_row_with_its_target() -> None:
    results = {"bench_chunks": [{"name": "UploadChunks / raw", "value": 0.31, "unit": "ratio"}]}
    rows = summary_rows(results)
    text = render_markdown(rows, measured_at="2026-01-01 00:00 UTC", machine="x86_64 2 cores")
    assert "| chunks | UploadChunks / raw | 0.310 | ratio | ≥ 0.8 | issue 15 | NOT met |" in text
    assert "0 of 1 measured targets met" in text
    assert text.count("not measured") == len(TRACKED) - 1
    table = render_table(rows)
    assert "UploadChunks / raw" in table and "NOT met" in table
