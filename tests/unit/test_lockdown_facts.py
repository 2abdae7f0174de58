"""The lockdown is a recorded fact of a run: compare warns when two runs differ in it (GOCACHE
in tmpfs counts in the cgroup peaks), and the report's memory note names the tmpfs."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

from builder.bench import compare, loaded, report, runner

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PAIR = FIXTURES / "benchstat" / "same-settings-n6"


def with_lockdown(run: loaded.Run, lockdown: dict | None) -> loaded.Run:
    host = {k: v for k, v in run.host.items() if k != "lockdown"}
    if lockdown is not None:
        host["lockdown"] = lockdown
    return dataclasses.replace(run, host=MappingProxyType(host))


def test_compare_warns_when_only_one_run_was_locked_down():
    old, new = loaded.load(PAIR / "old"), loaded.load(PAIR / "new")
    before = with_lockdown(old, None)  # results from before the lockdown carry no such fact
    after = with_lockdown(new, dict(runner.LOCKDOWN))
    warns = compare.run_warnings(before, after, "old", "new")
    said = [w for w in warns if "lockdown" in w]
    assert len(said) == 1 and "gocache tmpfs" in said[0] and "none recorded" in said[0]
    both = compare.run_warnings(with_lockdown(old, dict(runner.LOCKDOWN)), after, "old", "new")
    assert not [w for w in both if "lockdown" in w]


def test_the_memory_note_names_the_tmpfs_only_for_locked_down_runs(tmp_path):
    run = loaded.load(FIXTURES / "runs" / "go1.22-slim-amd64")
    locked = report.report_md(with_lockdown(run, dict(runner.LOCKDOWN)), tmp_path)
    assert report.TMPFS_NOTE in locked
    assert report.TMPFS_NOTE not in report.report_md(with_lockdown(run, None), tmp_path)
