"""report.md: a run's facts, its summary table, the memory phases named as the published
comparison names them, the plots, and, over several images or several runs, the matrix view
(rows Go versions, columns platforms, one table per headline metric, emulated cells marked).

`write_report` renders one results folder; `write_summary` renders the matrix view of several.
Both read what results.json holds (loaded.Run), so a report can be rendered again at any time
(`gobuild report PATH...`).
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..fsutil import atomic_write_text
from ..matrix import platform_tag
from . import plots
from .loaded import Record, Run, load
from .options import format_memory
from .results import METRICS
from .stats import Summary, summarize

EMULATION_NOTE = ("emulated: this image's architecture differs from the engine's; its times were "
                  "taken under qemu and say nothing about that hardware")
MEMINFO_NOTE = "/proc/meminfo inside a container shows the host's memory, not the container's"
EMULATED_MARK = "⚠ emulated"
SUMMARY_METRICS = ("wall_ns", "peak_rss_bytes", "cgroup_peak_bytes", "p50_ns", "p99_ns", "sys",
                   "cgroup_usage")
HEADER = ["suite", "benchmark", "image", "metric", "median", "95% CI", "p95", "n", "failed"]


def fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    if metric.endswith("bytes") or metric in ("heap_alloc", "heap_sys", "sys") or metric.startswith("cgroup_"):
        return f"{v / 2**20:.1f} MiB"
    if metric.endswith("_ns"):
        if v >= 1e9:
            return f"{v / 1e9:.2f} s"
        if v >= 1e6:
            return f"{v / 1e6:.1f} ms"
        return f"{v / 1e3:.1f} µs" if v >= 1e4 else f"{v:.0f} ns"
    return f"{v:g}"


def summary_rows(results: dict) -> list[list[str]]:
    """The summary table of a results.json document: headline metrics of every record."""
    rows = []
    for suite, recs in results["suites"].items():
        for r in recs:
            declared = [m for m, _ in METRICS.get(suite, ())]  # the writer's order
            for metric, s in sorted(r["summary"].items(), key=lambda kv: (
                    declared.index(kv[0]) if kv[0] in declared else len(declared), kv[0])):
                if metric not in SUMMARY_METRICS:
                    continue
                procs = f"-{r['gomaxprocs']}" if r["gomaxprocs"] else ""
                ci = f"[{fmt(metric, s['ci_low'])}, {fmt(metric, s['ci_high'])}]" if s and s["ci_low"] is not None else "-"
                rows.append([
                    suite, f"{r['name']}{procs}", (r.get("config") or r["image"]) + (" (emulated)" if r["emulated"] else ""),
                    metric, fmt(metric, s["median"] if s else None), ci,
                    fmt(metric, s["p95"] if s else None), str(s["n"] if s else 0),
                    str(len(r["failed"])) + (" OOM" if any(f.get("oom") for f in r["failed"]) else ""),
                ])
            for bench, units in (r.get("benchmarks") or {}).items():
                s = units.get("ns/op")
                if s:
                    ci = f"[{fmt('x_ns', s['ci_low'])}, {fmt('x_ns', s['ci_high'])}]" if s["ci_low"] is not None else "-"
                    rows.append([suite, bench, (r.get("config") or r["image"]) + (" (emulated)" if r["emulated"] else ""),
                                 "ns/op", fmt("x_ns", s["median"]), ci, fmt("x_ns", s["p95"]),
                                 str(s["n"]), "-"])
    return rows


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows] + [""])


def _facts(run: Run) -> list[str]:
    host, lim, raw = run.host, run.limits, run.raw
    req, eff = lim.get("requested") or {}, lim.get("effective") or {}
    status = ("" if run.status == "complete" else
              f" (**{run.status}** after {run.rounds_done} measured round(s): "
              f"{raw.get('error') or 'partial results'})")
    if run.hosts:
        return [f"- started {run.started}, finished {run.finished}{status}", *_hosts_facts(run), ""]
    return [
        f"- started {run.started}, finished {run.finished}{status}",
        (f"- engine {host.get('engine_version')} ({host.get('engine_arch')}), kernel "
         f"{host.get('kernel')}, cgroup v{host.get('cgroup_version')}, CPU {host.get('cpu_model')}, "
         f"governor {host.get('governor') or 'unknown'}, load at start {host.get('loadavg_start')}"
         + (f", host {run.host_label}" if run.host_label else "")),
        (f"- requested {req.get('cpus', 0):g} CPUs, {format_memory(req['memory']) if req.get('memory') else '?'}"
         f"{', CPUs ' + req['cpuset'] if req.get('cpuset') else ''}, no swap; "
         f"in force {eff.get('cpus') or 0:g} CPUs, {eff.get('memory')} bytes, "
         f"swap {eff.get('swap')}, CPUs {eff.get('cpuset')}"),
        (f"- {run.options.get('runs')} measured runs after {run.options.get('warmup')} warm-up, "
         "configurations interleaved and shuffled each round"),
        "",
    ]


def _hosts_facts(run: Run) -> list[str]:
    """A fleet run: one row per host (its own results folder has the full facts)."""
    lim = run.limits
    req = lim.get("requested") or {}
    rows = [[h.get("label"), h.get("endpoint"), h.get("engine") or "-", h.get("arch") or "-",
             h.get("cpu_model") or "-", h.get("cpus") or "-", h.get("cgroup_version") or "-",
             h.get("status"), h.get("failed_runs", 0), h.get("results") or "-", h.get("error") or ""]
            for h in run.hosts]
    return [
        (f"- requested {req.get('cpus', 0):g} CPUs, "
         f"{format_memory(req['memory']) if req.get('memory') else '?'}, no swap, on every host; "
         f"{run.options.get('runs')} measured runs after {run.options.get('warmup')} warm-up on each, "
         "hosts in parallel, one run at a time per host"),
        "", "### Hosts", "",
        *_table(["host", "endpoint", "engine", "arch", "CPU", "CPUs", "cgroup", "status", "failed runs",
                 "results", "error"], rows),
    ]


def memory_phase_rows(run: Run) -> list[list[str]]:
    """The memory suite's phases under the names the published comparison uses."""
    rows = []
    order = list(plots.PHASES)  # the comparison's phases first, in its order
    memory = [r for r in run.records if r.suite == "memory"]
    for rec in sorted(memory, key=lambda r: (r.config != memory[0].config,
                                             order.index(plots.phase_of(r)) if plots.phase_of(r) in order
                                             else len(order))):
        phase = plots.phase_of(rec)
        name, what = plots.PHASES.get(phase, (phase, f"`{rec.name}`"))
        cells = []
        for metric, _, _ in plots.MEMORY_KINDS:
            s = summarize(list(rec.values.get(metric, ())))
            cells.append(_cell(metric, s, "median") if s else "-")
        emu = f" {EMULATED_MARK}" if rec.emulated else ""
        rows.append([name, what, rec.config + emu, *cells,
                     str(max((len(v) for v in rec.values.values()), default=0))])
    return rows


MEMORY_HEADER = ["phase (as the comparison names it)", "what gobuild measures", "image",
                 "process peak", "cgroup peak", "cgroup anon peak", "n"]
TMPFS_NOTE = (
    "Measured runs are locked down with GOCACHE, HOME and GOTMPDIR in a tmpfs at /tmp: its pages "
    "are charged to the cgroup and cannot be reclaimed, so the cgroup peaks include the build "
    "cache the command wrote (the process peak does not).")
MEMORY_MAPPING = (
    "The published comparison names three memory phases; gobuild measures each as a command of "
    "its own, in a fresh container, and reports the process peak (the command and every child "
    "it waited for: `ru_maxrss`, and VmHWM while polling) beside the cgroup's peaks (page cache "
    "included) and the cgroup's anonymous peak. *After GOROOT initialisation* is `go env`; "
    "*after the module cache is loaded* is `go list -m all`; *test process peak* is the test "
    "binary built by `go test -c` run alone; `go build ./...` is measured too, as the build's "
    "peak, which the comparison does not name. Cells: median [95% CI of the median, from 6 runs].")


def _plot_md(plot: plots.Plot) -> list[str]:
    return [f"### {plot.title}", "", f"![{plot.title}]({plot.file})", "", plot.caption, ""]


def _draw(fn: Callable[[], plots.Plot | None], what: str) -> tuple[plots.Plot | None, str | None]:
    """A plot, or why it could not be drawn: a plotting failure must not cost a bench its
    results, and the report says what is missing."""
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - reported in the Markdown, never silently
        return None, f"> **the {what} plot could not be drawn:** {type(exc).__name__}: {exc}"


def report_md(run: Run, folder: Path) -> str:
    """report.md of one run; its plots are written into folder/plots/."""
    out = [f"# gobuild bench {run.run_id}", "", *_facts(run)]
    for w in run.warnings:  # one quote each: consecutive quote lines would run together
        out += [f"> **warning:** {w}", ""]
    out += ["## Summary", "", *_table(HEADER, summary_rows(dict(run.raw)))]
    if any(t.emulated for t in run.targets):
        out += [f"**{EMULATION_NOTE}.**", ""]
    if "memstats" in run.raw.get("suites", {}):
        out += [f"Note: {MEMINFO_NOTE}.", ""]
    if any(r.suite == "memory" for r in run.records):
        note = MEMORY_MAPPING + (f" {TMPFS_NOTE}" if run.host.get("lockdown", {}).get("gocache") == "tmpfs"
                                 else "")
        out += ["## Memory per phase", "", note, "",
                *_table(MEMORY_HEADER, memory_phase_rows(run))]
    drawn = [_draw(functools.partial(fn, run, folder), fn.__name__.removesuffix("_plot"))
             for fn in plots.RUN_PLOTS]
    if any(p or e for p, e in drawn):
        out += ["## Plots", ""]
        for plot, error in drawn:
            out += _plot_md(plot) if plot else [error, ""] if error else []
    if len(run.targets) > 1:
        out += ["## Across Go versions and platforms", "", *matrix_md([run], folder)]
    return "\n".join(out).rstrip() + "\n"


# ---- the matrix view ---------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Headline:
    suite: str
    metrics: tuple[str, ...]  # the first one the records hold is shown
    statistic: str  # "median" (with its CI) or "p95" (of the runs)
    title: str
    file: str
    axis: str  # what the plot's y axis shows


HEADLINES = (
    Headline(suite="compile", metrics=("wall_ns",), statistic="median",
             title="Compile time (`go build -a`, wall)", file="matrix-compile.png",
             axis="wall time"),
    Headline(suite="memory", metrics=("peak_rss_bytes", "cgroup_peak_bytes"), statistic="median",
             title="Peak memory per phase", file="matrix-memory.png", axis="peak memory"),
    Headline(suite="sched", metrics=("p95_ns",), statistic="median",
             title="Goroutine-creation latency P95", file="matrix-sched.png", axis="P95 latency"),
    Headline(suite="tooling", metrics=("wall_ns",), statistic="p95",
             title="Tooling latency P95", file="matrix-tooling.png", axis="P95 wall time"),
    Headline(suite="moddownload", metrics=("wall_ns",), statistic="median",
             title="Module download time", file="matrix-moddownload.png", axis="wall time"),
    Headline(suite="moddownload", metrics=("peak_rss_bytes",), statistic="median",
             title="Module download peak memory", file="matrix-moddownload-memory.png",
             axis="process peak"),
)


def _cell(metric: str, s: Summary, statistic: str) -> str:
    if statistic == "p95":
        return f"{fmt(metric, s.p95)} (n={s.n})"
    if s.ci_low is None:
        return f"{fmt(metric, s.median)} (n={s.n}, no CI)"
    return f"{fmt(metric, s.median)} [{fmt(metric, s.ci_low)}, {fmt(metric, s.ci_high)}]"


def _panel(rec: Record) -> str:
    """What a table of a headline is about: the phase, the command, the GOMAXPROCS."""
    if rec.suite == "memory":
        phase = plots.phase_of(rec)
        return f"{plots.PHASES.get(phase, (phase,))[0]} ({phase})"
    procs = f"GOMAXPROCS={rec.gomaxprocs}" if rec.gomaxprocs else ""
    if rec.suite in ("compile", "sched"):
        name = plots._short(rec.name)
        return ", ".join(x for x in ((name if rec.suite == "compile" else ""), procs) if x)
    if rec.suite == "tooling" and rec.argv:
        return " ".join(rec.argv)
    return plots._short(rec.name)


@dataclass(frozen=True, kw_only=True)
class Cell:
    row: str
    column: str
    record: Record
    run: Run


def _cells(runs: Sequence[Run]) -> list[Cell]:
    """Every record of every run placed at (Go version, platform [@ host]); rows become the
    image's tag without its architecture when two images would share a cell (two variants)."""
    hosts = any(r.host_label or r.hosts for r in runs)
    placed = []
    for run in runs:
        for rec in run.records:
            t = run.target(rec.config)
            column = t.platform + (f" @ {t.host or run.host_label or 'local'}" if hosts else "")
            placed.append((run, rec, t, column))
    images_at: dict[tuple[str, str], set[str]] = {}
    runs_at: dict[tuple[str, str], set[str]] = {}
    for run, rec, t, column in placed:
        images_at.setdefault((t.go_version, column), set()).add(rec.config)
        runs_at.setdefault((t.go_version, column), set()).add(run.run_id)
    clash = any(len(v) > 1 for v in images_at.values())
    split_version: dict[str, bool] = {}
    for (version, _), ids in runs_at.items():
        split_version[version] = split_version.get(version, False) or len(ids) > 1
    cells = []
    for run, rec, t, column in placed:
        row = t.go_version
        if clash:
            tag = rec.config.rsplit(":", 1)[-1]
            suffix = "-" + platform_tag(t.platform)  # "-arm64", "-arm-v7"
            row = tag.removesuffix(suffix)
        if split_version.get(t.go_version):  # a cell of this row measured by several runs:
            row = f"{row} (run {run.run_id})"  # one row per run, so a run's cells stay together
        cells.append(Cell(row=row, column=column, record=rec, run=run))
    return cells


def matrix_md(runs: Sequence[Run], folder: Path) -> list[str]:
    """One table per headline metric and panel (rows Go versions, columns platforms), and one
    plot per headline metric across Go versions per platform."""
    cells = _cells(runs)
    columns = list(dict.fromkeys(c.column for c in sorted(cells, key=lambda c: c.column)))
    rows = sorted({c.row for c in cells}, key=plots.version_key)
    out = [(f"Rows: Go versions; columns: platforms; cells: the median over the measured runs with "
           f"its 95% confidence interval (none below 6 runs), or the P95 of the runs where the "
           f"metric is a P95. Cells marked {EMULATED_MARK} ran under qemu: they say nothing about "
           "that hardware."), ""]
    for head in HEADLINES:
        mine = [c for c in cells if c.record.suite == head.suite]
        metric = next((m for m in head.metrics if any(c.record.values.get(m) for c in mine)), None)
        if metric is None:
            continue
        out += [f"### {head.title}", ""]
        panels: list[tuple[str, list[plots.Point]]] = []
        for panel in dict.fromkeys(_panel(c.record) for c in mine):
            at = {(c.row, c.column): c for c in mine if _panel(c.record) == panel}
            table, points = [], []
            for row in rows:
                line = [f"go{row}" if row[:1].isdigit() and "-" not in row else row]
                for column in columns:
                    c = at.get((row, column))
                    s = summarize(list(c.record.values.get(metric, ()))) if c else None
                    if c is None or s is None:
                        line.append("-" if c is None else "no measured run")
                        continue
                    line.append(_cell(metric, s, head.statistic)
                                + (f" {EMULATED_MARK}" if c.record.emulated else ""))
                    value = s.p95 if head.statistic == "p95" else s.median
                    points.append(plots.Point(
                        row=row, column=column, median=value, emulated=c.record.emulated,
                        ci_low=None if head.statistic == "p95" else s.ci_low,
                        ci_high=None if head.statistic == "p95" else s.ci_high))
                if any(x not in ("-",) for x in line[1:]):
                    table.append(line)
            unit = "P95" if head.statistic == "p95" else "median [95% CI]"
            out += [f"**{panel}** ({metric}, {unit})", "", *_table(["Go", *columns], table)]
            panels.append((panel, points))
        plot, error = _draw(functools.partial(
            plots.matrix_plot, f"{head.title} across Go versions", head.axis, metric,
            head.statistic, panels, folder, head.file), head.title)
        out += ([f"![{plot.title}]({plot.file})", "", plot.caption, ""] if plot else [error, ""])
    return out


def sources_md(runs: Sequence[Run]) -> list[str]:
    rows = []
    for run in runs:
        req = run.limits.get("requested") or {}
        rows.append([str(run.path), run.run_id, run.started, run.status,
                     ", ".join(t.config + (f" {EMULATED_MARK}" if t.emulated else "") for t in run.targets),
                     f"{req.get('cpus', 0):g} CPUs, {format_memory(req['memory']) if req.get('memory') else '?'}",
                     run.host_label or str(run.host.get("cpu_model"))])
    out = _table(["results", "run", "started", "status", "images", "limits", "host"], rows)
    limits = {(r.limits.get("requested") or {}).get("cpus") for r in runs}
    if len(limits) > 1:
        out += [("> **warning:** the runs had different CPU limits: cells of different runs "
                "measure different limits"), ""]
    if len(runs) > 1:
        out += [("> **note:** cells from different runs were measured at different times: host "
                "state drifts between invocations, so small differences between runs say little; "
                "configurations benched in one run are interleaved and comparable."), ""]
    return out


def summary_md(runs: Sequence[Run], folder: Path) -> str:
    out = ["# gobuild bench: Go versions across platforms", "",
           f"Rendered {_now()} from {len(runs)} result folder(s):", "", *sources_md(runs),
           *matrix_md(runs, folder)]
    return "\n".join(out).rstrip() + "\n"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_report(run: Run, folder: Path | None = None) -> Path:
    """report.md (and its plots) of one run, in its results folder unless told otherwise."""
    folder = folder or run.path
    path = folder / "report.md"
    atomic_write_text(path, report_md(run, folder))
    return path


def write_summary(runs: Sequence[Run], folder: Path) -> Path:
    path = folder / "summary.md"
    atomic_write_text(path, summary_md(runs, folder))
    return path


def default_summary() -> Path:
    return Path("results") / ("summary-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))


def render(paths: Sequence[Path], output: Path | None = None) -> list[Path]:
    """`gobuild report PATH...`: one folder's report.md rendered again from its results.json
    (into output instead, when given); several folders' reports each rendered again in place,
    and their matrix view written to output/summary.md."""
    runs = [load(p) for p in paths]  # every input is checked before anything is written
    seen: dict[Path, Path] = {}
    for run, given in zip(runs, paths):
        if run.path.resolve() in seen:
            raise ConfigError(f"{given} and {seen[run.path.resolve()]} are the same results: "
                              "give each folder once")
        seen[run.path.resolve()] = Path(given)
    try:
        if len(runs) == 1:
            return [write_report(runs[0], output)]
        written = [write_report(run) for run in runs]
        return [*written, write_summary(runs, output or default_summary())]
    except PermissionError as exc:
        raise ConfigError(f"cannot write {exc.filename}: read-only: copy the results folder "
                          "somewhere writable, or give --output DIR") from None
