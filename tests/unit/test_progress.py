"""The bench's progress on stderr in its three modes: the live display on a terminal (rich,
forced onto a terminal here), plain lines when stderr is not one, and nothing with -q."""
from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from builder.bench import progress as progress_mod
from builder.bench.progress import Progress, duration, mode_for

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_through(p: Progress, clock: Clock, after_run=lambda: None) -> None:
    """What a bench says: its run id, a preparation, four runs (one failed), a warning."""
    with p:
        p("run id abc123: 1 configuration(s)")
        with p.step("preparing img: workload, module cache, probes"):
            clock.now += 12.0
        p.start_runs(4)
        for i, outcome in enumerate(["1.0 s", "1.0 s", "failed", "1.0 s"], 1):
            p.run_started(f"round {i}/4 GoTooling/cmd=go-mod-graph-1 img")
            clock.now += 10.0
            p.run_done(f"round {i}/4 GoTooling/cmd=go-mod-graph-1 img", outcome)
            after_run()
        p.warn("the host did not become quiet")


def test_the_mode_follows_the_stream_and_quiet():
    assert mode_for(Tty(), quiet=False) == "rich"
    assert mode_for(io.StringIO(), quiet=False) == "plain"
    assert mode_for(Tty(), quiet=True) == "quiet"
    assert mode_for(object(), quiet=False) == "plain"  # no isatty at all


def test_plain_lines_say_what_runs_how_many_are_done_and_the_time_left():
    out, clock = io.StringIO(), Clock()
    run_through(Progress("plain", file=out, clock=clock), clock)
    lines = out.getvalue().splitlines()
    assert lines[0] == "bench: run id abc123: 1 configuration(s)"
    assert lines[1] == "bench: preparing img: workload, module cache, probes ..."
    assert lines[2] == "bench: preparing img: workload, module cache, probes: done in 12.0 s"
    # each run: which one, its outcome, runs done of total, elapsed, time left
    assert lines[3] == ("bench: round 1/4 GoTooling/cmd=go-mod-graph-1 img: 1.0 s "
                        "[1/4 runs, 0:10 elapsed, about 0:30 left]")
    assert lines[5].endswith(": failed [3/4 runs, 0:30 elapsed, about 0:10 left]")
    assert lines[6].endswith("[4/4 runs, 0:40 elapsed, about 0:00 left]")
    assert lines[7] == "bench: warning: the host did not become quiet"
    assert not ANSI.search(out.getvalue())  # no escape codes in a log file
    assert len(lines) == 8


def test_a_plain_step_that_says_how_it_goes_writes_at_most_every_30_seconds():
    out, clock = io.StringIO(), Clock()
    p = Progress("plain", file=out, clock=clock)
    with p.step("waiting for a quiet host") as update:
        for load in range(12):  # a poll every 5 s for a minute
            clock.now += 5
            update(f"load {load}")
    said = [ln for ln in out.getvalue().splitlines() if "load " in ln]
    assert said == ["bench: load 5", "bench: load 11"]


def test_the_live_display_on_a_terminal_shows_the_bar_counts_and_time_left():
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, force_terminal=True, width=150, color_system="standard")
    p = Progress("rich", console=console, clock=clock)
    p._rich.live.auto_refresh = False  # deterministic: draw when told, not on a timer
    run_through(p, clock, after_run=p._rich.refresh)
    raw = out.getvalue()
    text = ANSI.sub("", raw)
    assert ANSI.search(raw)  # drawn for a terminal (cursor movement, colours)
    assert "bench: run id abc123" in text
    assert "bench: preparing img: workload, module cache, probes: 12.0 s" in text
    assert "4/4 runs" in text  # the bar's count as it ends
    assert "round 4/4 GoTooling/cmd=go-mod-graph-1 img" in text
    assert "1/4 runs, about 0:30 left" in text  # 10 s a run so far, three to go
    assert "about 0:00 left" in text
    assert "bench: round 3/4 GoTooling/cmd=go-mod-graph-1 img: failed" in text  # kept visible
    assert "bench: warning: the host did not become quiet" in text


def test_quiet_says_nothing_but_warnings(capsys):
    clock = Clock()
    out = io.StringIO()
    run_through(Progress("quiet", file=out, clock=clock), clock)
    assert out.getvalue() == "bench: warning: the host did not become quiet\n"
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("mode", ["rich", "plain"])
def test_progress_never_writes_to_stdout(capsys, mode):
    clock = Clock()
    run_through(Progress(mode, clock=clock), clock)  # to the real stderr, whatever it is
    captured = capsys.readouterr()
    assert captured.out == "" and "4/4 runs" in captured.err


def test_lines_for_a_function_and_durations():
    said: list[str] = []
    p = Progress.lines(said.append)
    p("hello")
    p.warn("careful")
    assert said == ["hello", "warning: careful"]
    assert (duration(12), duration(754), duration(4000), duration(None)) == ("0:12", "12:34", "1:06:40", "?")
    assert progress_mod.PLAIN_UPDATE_EVERY == 30.0
