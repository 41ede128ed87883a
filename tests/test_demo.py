"""``lucid demo``'s own parts, without a mesh: the progress display (one timed line per
step, a failing step says why), the reason it gives when no real desktop can be
recorded, and a clear failure against a mesh that is not running. The walk itself runs
against ``lucid up`` in ``test_supervisor`` (``test_demo_walks_through_the_whole_mesh``)."""

from __future__ import annotations

import io
import re
import shutil

import pytest
from rich.console import Console

from lucid.runtime.config import CLUSTERS, Settings
from lucid.supervisor import demodesktop, rdpclient
from lucid.supervisor.demo import Progress, StepFailedError, run_demo
from lucid.supervisor.localservers import free_port


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, highlight=False, soft_wrap=True, force_terminal=False), out


async def test_each_step_prints_one_timed_line_and_its_details() -> None:
    console, out = _console()
    progress = Progress(console)
    async with progress.step("doing the first thing") as lines:
        lines.extend(["the first thing is done", "a detail of it"])
    async with progress.step("doing the second thing"):
        pass
    printed = out.getvalue().splitlines()
    assert len(printed) == 3, printed
    assert re.fullmatch(r"  ✓ the first thing is done \(\d+\.\ds\)", printed[0])
    assert printed[1] == "    a detail of it"
    assert re.fullmatch(r"  ✓ doing the second thing \(\d+\.\ds\)", printed[2])


async def test_a_failing_step_says_why_and_stops_the_walk() -> None:
    console, out = _console()
    progress = Progress(console)

    async def anchoring() -> None:
        async with progress.step("anchoring") as lines:
            lines.append("never shown")
            raise StepFailedError("the session did not complete: no validator answered")

    with pytest.raises(StepFailedError):
        await anchoring()
    printed = out.getvalue()
    assert re.fullmatch(
        r"  ✗ the session did not complete: no validator answered \(\d+\.\ds\)\n", printed
    ), printed
    assert "✓" not in printed and "never shown" not in printed


def test_without_the_xrdp_stack_the_reason_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        rdpclient.shutil, "which", lambda name: None if name.startswith("x") else real_which(name)
    )
    reason = demodesktop.unavailable()
    assert reason is not None
    assert reason.startswith("the xrdp stack is not installed: no xrdp, xrdp-sesman, xfreerdp")
    monkeypatch.setattr(rdpclient.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert demodesktop.unavailable() is None


async def test_against_no_running_mesh_the_demo_fails_clearly(settings: Settings) -> None:
    nothing = settings.replace(ports={c: free_port() for c in CLUSTERS})
    console, out = _console()
    assert not await run_demo(nothing, console=console, timeout_s=5.0)
    printed = out.getvalue()
    assert "✗ UNAVAILABLE" in printed, printed
    assert "✓" not in printed and "admin console" not in printed
