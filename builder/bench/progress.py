"""Progress of a bench, on stderr only: a live display (rich) on a terminal, plain lines when
stderr is a file or a pipe (CI logs, `2> log`), nothing with -q. stdout carries only the result.

Every long step (preparing an image, starting the module proxy, waiting for a quiet host) shows
what runs and for how long; the measured runs show which run, runs done of total, time elapsed
and an estimate of the time left.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Literal, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

Mode = Literal["rich", "plain", "quiet"]
PREFIX = "bench: "
PLAIN_UPDATE_EVERY = 30.0  # seconds between plain lines of a step that says how it goes


def mode_for(stream: TextIO, quiet: bool) -> Mode:
    """-q: nothing; a terminal: the live display; anything else: plain lines."""
    if quiet:
        return "quiet"
    isatty = getattr(stream, "isatty", None)
    return "rich" if isatty is not None and isatty() else "plain"


def duration(seconds: float | None) -> str:
    """12 -> '0:12', 754 -> '12:34', 4000 -> '1:06:40'."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Left(ProgressColumn):
    """Runs done of total and the time left (empty for a step, which has no count)."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        # the mean time per run so far, as the plain lines estimate it (rich's own estimate
        # needs several updates before it says anything)
        left = (task.elapsed / task.completed * (task.total - task.completed)
                if task.completed and task.elapsed is not None else None)
        return Text(f"{task.completed:g}/{task.total:g} runs, about {duration(left)} left")


class Progress:
    """What the bench says while it runs. Use as a context manager around the run (the live
    display starts and stops with it); call it with a message for a one-off line."""

    def __init__(self, mode: Mode = "plain", *, file: TextIO | None = None,
                 write: Callable[[str], None] | None = None, console: Console | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.mode, self._clock = mode, clock
        self._file = file
        self._write = write
        self._rich: RichProgress | None = None
        if mode == "rich":
            self._rich = RichProgress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _Left(),
                TimeElapsedColumn(), console=console or Console(file=file or sys.stderr),
                speed_estimate_period=3600, transient=False, get_time=clock)
        self._runs_task = None
        self._runs_total = 0
        self._runs_done = 0
        self._runs_started = 0.0

    @classmethod
    def for_stderr(cls, quiet: bool = False) -> Progress:
        return cls(mode_for(sys.stderr, quiet))

    @classmethod
    def lines(cls, write: Callable[[str], None]) -> Progress:
        """Plain lines handed to write (without the 'bench: ' prefix)."""
        return cls("plain", write=write)

    # -- output -----------------------------------------------------------------------------
    def _line(self, message: str) -> None:
        if self._write is not None:
            self._write(message)
            return
        print(PREFIX + message, file=self._file or sys.stderr, flush=True)

    def __call__(self, message: str) -> None:
        """A one-off message (the run id, a warning on the way)."""
        if self.mode == "plain":
            self._line(message)
        elif self._rich is not None:
            self._rich.console.print(PREFIX + message, markup=False, highlight=False)

    def warn(self, message: str) -> None:
        """Something the user must see even with -q (it is in results.json's warnings too)."""
        if self._rich is not None:
            self._rich.console.print(f"{PREFIX}warning: {message}", markup=False, highlight=False)
        elif self._write is not None:
            self._write(f"warning: {message}")
        else:
            print(f"{PREFIX}warning: {message}", file=self._file or sys.stderr, flush=True)

    def __enter__(self) -> Progress:  # noqa: PYI034 - a final class
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._rich is not None:
            self._rich.stop()

    # -- a long step without a count ---------------------------------------------------------
    @contextlib.contextmanager
    def step(self, description: str) -> Iterator[Callable[[str], None]]:
        """A long step: shown while it runs, with its time once done. Yields a function that
        says how it goes (a new description; plain lines at most every 30 s)."""
        start = self._clock()
        last_line = start
        if self.mode == "plain":
            self._line(f"{description} ...")
        task = self._rich.add_task(description, total=None) if self._rich is not None else None

        def update(text: str) -> None:
            nonlocal last_line
            if task is not None:
                self._rich.update(task, description=text)
            elif self.mode == "plain" and self._clock() - last_line >= PLAIN_UPDATE_EVERY:
                last_line = self._clock()
                self._line(text)

        try:
            yield update
        finally:
            took = self._clock() - start
            if task is not None:
                self._rich.remove_task(task)
                self._rich.console.print(f"{PREFIX}{description}: {took:.1f} s",
                                         markup=False, highlight=False)
            elif self.mode == "plain":
                self._line(f"{description}: done in {took:.1f} s")

    # -- the measured runs -------------------------------------------------------------------
    def start_runs(self, total: int, description: str = "runs") -> None:
        self._runs_total, self._runs_done, self._runs_started = total, 0, self._clock()
        if self._rich is not None:
            self._runs_task = self._rich.add_task(description, total=total)

    def run_started(self, description: str) -> None:
        if self._runs_task is not None:
            self._rich.update(self._runs_task, description=description)

    def run_done(self, description: str, outcome: str) -> None:
        self._runs_done += 1
        if self._runs_task is not None:
            self._rich.update(self._runs_task, advance=1)
            if outcome in ("OOM", "failed"):  # kept above the display, where it stays visible
                self._rich.console.print(f"{PREFIX}{description}: {outcome}", markup=False,
                                         highlight=False)
        elif self.mode == "plain":
            elapsed = self._clock() - self._runs_started
            left = elapsed / self._runs_done * (self._runs_total - self._runs_done)
            self._line(f"{description}: {outcome} [{self._runs_done}/{self._runs_total} runs, "
                       f"{duration(elapsed)} elapsed, about {duration(left)} left]")
