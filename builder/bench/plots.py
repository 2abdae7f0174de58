"""The report's plots: PNGs drawn with matplotlib's Agg renderer (no display needed), sized to
be read at the width GitHub shows an image (about 880 px), each with a title, axis labels with
units and a legend. Only what a run holds is drawn: a function returns None when its suite is
absent. matplotlib is imported inside the functions (it takes seconds): commands that draw
nothing never pay for it.
"""
from __future__ import annotations

import io
import re
import statistics
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import atomic_write_bytes
from .loaded import Record, Run
from .stats import summarize

WIDTH_IN, DPI = 8.8, 100  # 880 px wide: GitHub's Markdown column
PLOTS_DIR = "plots"
SCHED_QUANTILES = (("p50_ns", 0.50, "P50"), ("p95_ns", 0.95, "P95"), ("p99_ns", 0.99, "P99"),
                   ("max_ns", 1.0, "max"))


@dataclass(frozen=True, kw_only=True)
class Plot:
    file: str  # relative to the report's folder (plots/compile.png)
    title: str
    caption: str


def _figure(height_in: float, rows: int = 1, cols: int = 1):
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, folder: Path, name: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    rel = f"{PLOTS_DIR}/{name}"
    atomic_write_bytes(folder / rel, buf.getvalue())
    return rel


def _image_label(run: Run, config: str) -> str:
    t = run.target(config)
    return f"{config} (emulated)" if t.emulated else config


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _plain_numbers(axis) -> None:
    """0.2, 1, 10, 100 on a log axis instead of powers of ten (minor ticks unlabelled)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _short(name: str) -> str:
    """GoTooling/cmd=go-list-deps -> go-list-deps; GoMemory/phase=go-env -> go-env."""
    return name.split("=", 1)[1] if "=" in name else name


def compile_plot(run: Run, folder: Path) -> Plot | None:
    """Median wall time of go build -a against GOMAXPROCS, one line per image, the median's 95%
    confidence interval shaded (where there are 6 runs or more), every run as a dot."""
    recs = [r for r in run.records if r.suite == "compile" and r.values.get("wall_ns")]
    if not recs:
        return None
    fig, axes = _figure(4.4)
    ax = axes[0][0]
    images = list(dict.fromkeys(r.config for r in recs))
    any_ci = False
    for image, color in zip(images, _colors(len(images))):
        mine = sorted((r for r in recs if r.config == image), key=lambda r: r.gomaxprocs or 0)
        xs, med, lo, hi = [], [], [], []
        for r in mine:
            s = summarize(list(r.values["wall_ns"]))
            if s is None:
                continue
            x = r.gomaxprocs or 0
            xs.append(x)
            med.append(s.median / 1e9)
            lo.append((s.ci_low if s.ci_low is not None else s.median) / 1e9)
            hi.append((s.ci_high if s.ci_high is not None else s.median) / 1e9)
            any_ci = any_ci or s.ci_low is not None
            ax.scatter([x] * len(r.values["wall_ns"]), [v / 1e9 for v in r.values["wall_ns"]],
                       s=12, color=color, alpha=0.45, linewidths=0)
        emulated = run.target(image).emulated
        ax.plot(xs, med, marker="o", color=color, linestyle="--" if emulated else "-",
                markerfacecolor="white" if emulated else color, label=f"{_image_label(run, image)}: median")
        ax.fill_between(xs, lo, hi, color=color, alpha=0.18,
                        label="95% CI of the median" if image == images[0] and any_ci else None)
    ax.scatter([], [], s=12, color="grey", alpha=0.45, label="each measured run")
    procs = sorted({r.gomaxprocs or 0 for r in recs})
    ax.set_xticks(procs)
    ax.set_xlabel("GOMAXPROCS")
    ax.set_ylabel("wall time (s)")
    ax.set_ylim(bottom=0)
    cpus = (run.limits.get("requested") or {}).get("cpus")
    ax.set_title(f"Compile time against GOMAXPROCS (go build -a, {cpus:g} CPU limit)"
                 if isinstance(cpus, (int, float)) else "Compile time against GOMAXPROCS (go build -a)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    rel = _save(fig, folder, "compile-gomaxprocs.png")
    ci = ("shaded: the 95% confidence interval of the median" if any_ci else
          "no confidence interval: fewer than 6 runs per point")
    return Plot(file=rel, title="Compile time against GOMAXPROCS",
                caption=f"Median wall time of `go build -a` per GOMAXPROCS value, one line per image; "
                        f"dots: every measured run; {ci}.")


def sched_plot(run: Run, folder: Path) -> Plot | None:
    """Goroutine-creation latency as a CDF: the probe reports P50/P95/P99 (and the maximum) of
    its goroutines per run, so each run's CDF is drawn through those points; the medians over
    the runs are marked and named in the legend. The maximum (one goroutine in 20,000, often
    a hundred times the P99) would squeeze the rest into a corner: it is in the caption."""
    recs = [r for r in run.records if r.suite == "sched" and r.values.get("p50_ns")]
    if not recs:
        return None
    quants = [(m, q, name) for m, q, name in SCHED_QUANTILES if name != "max"]
    fig, axes = _figure(4.6 + 0.2 * len(recs))
    ax = axes[0][0]
    for rec, color in zip(recs, _colors(len(recs))):
        have = [(m, q, name) for m, q, name in quants if rec.values.get(m)]
        runs = min(len(rec.values[m]) for m, _, _ in have)
        for i in range(runs):
            ax.plot([rec.values[m][i] / 1e3 for m, _, _ in have], [q for _, q, _ in have],
                    color=color, alpha=0.3, linewidth=1)
        meds = [(statistics.median(rec.values[m]) / 1e3, q, name) for m, q, name in have]
        figures = " / ".join(f"{name} {x:.3g}" for x, _, name in meds)
        ax.plot([x for x, _, _ in meds], [q for _, q, _ in meds], marker="D", linewidth=2,
                color=color, markerfacecolor="white" if rec.emulated else color,
                label=f"{_image_label(run, rec.config)}, GOMAXPROCS={rec.gomaxprocs}: {figures} µs")
    for _, q, name in quants:
        ax.axhline(q, color="grey", linewidth=0.6, linestyle=":")
        ax.annotate(name, (1.0, q), xycoords=("axes fraction", "data"), xytext=(3, -3),
                    textcoords="offset points", fontsize=8, color="grey")
    ax.plot([], [], color="grey", alpha=0.5, label="each run (through its P50, P95, P99)")
    shown = [v for r in recs for m, _, _ in quants for v in r.values.get(m, ())]
    wide = max(shown) > 20 * min(shown)  # native beside emulated: a log scale keeps both readable
    if wide:
        ax.set_xscale("log")
        _plain_numbers(ax.xaxis)
    else:
        ax.set_xlim(left=0)
    ax.set_ylim(0.45, 1.01)
    ax.set_xlabel(f"goroutine-creation latency (µs{', log scale' if wide else ''})")
    ax.set_ylabel("fraction of goroutines created")
    ax.set_title("Goroutine-creation latency: cumulative distribution")
    ax.grid(alpha=0.3, which="both")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8,
               ncols=1)  # under the axes: never over a line
    rel = _save(fig, folder, "sched-latency.png")
    worst = max((v for r in recs for v in r.values.get("max_ns", ())), default=None)
    most = f" The largest single latency seen was {worst / 1e3:.3g} µs." if worst else ""
    return Plot(file=rel, title="Goroutine-creation latency",
                caption="Cumulative distribution of the time from a `go` statement to the new "
                        "goroutine's first instruction. The probe reports P50, P95 and P99 of its "
                        "goroutines per run: thin lines join one run's points, diamonds the medians "
                        f"over the runs (figures in the legend).{most}")


def tooling_plot(run: Run, folder: Path) -> Plot | None:
    """Every run of each go command as a dot, per image, with the median as a bar."""
    recs = [r for r in run.records if r.suite == "tooling" and r.values.get("wall_ns")]
    if not recs:
        return None
    commands = list(dict.fromkeys(_short(r.name) for r in recs))
    images = list(dict.fromkeys(r.config for r in recs))
    fig, axes = _figure(4.4)
    ax = axes[0][0]
    width = 0.8 / len(images)
    for j, (image, color) in enumerate(zip(images, _colors(len(images)))):
        for i, cmd in enumerate(commands):
            rec = next((r for r in recs if r.config == image and _short(r.name) == cmd), None)
            if rec is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            vals = [v / 1e6 for v in rec.values["wall_ns"]]
            offsets = [((k % 5) - 2) * width * 0.12 for k in range(len(vals))]
            emulated = run.target(image).emulated  # hollow, as everywhere emulated
            ax.scatter([x + o for o in offsets], vals, s=16, alpha=0.8,
                       facecolors="none" if emulated else color, edgecolors=color,
                       linewidths=1 if emulated else 0,
                       label=_image_label(run, image) + ": each run" if i == 0 else None)
            med = statistics.median(vals)
            p95 = summarize(vals).p95  # type: ignore[union-attr]
            ax.hlines(med, x - width * 0.4, x + width * 0.4, color=color, linewidth=2.5,
                      label="median" if i == 0 and j == 0 else None)
            ax.hlines(p95, x - width * 0.3, x + width * 0.3, color=color, linewidth=1,
                      linestyle=":", label="P95" if i == 0 and j == 0 else None)
    argv = {_short(r.name): " ".join(r.argv) or _short(r.name) for r in recs}
    ax.set_xticks(range(len(commands)), [argv[c] for c in commands])
    ax.set_yscale("log")
    _plain_numbers(ax.yaxis)
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_xlabel("command (on the workload's module graph)")
    ax.set_title("Tooling latency per command, every measured run")
    ax.grid(alpha=0.3, axis="y", which="both")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8,
               ncols=2)  # under the axes: never over a dot
    rel = _save(fig, folder, "tooling-latency.png")
    return Plot(file=rel, title="Tooling latency",
                caption="Wall time of each go command, every measured run as a dot; the thick bar "
                        "is the median, the dotted one the P95.")


# The published comparison names three memory phases; what gobuild runs for each.
PHASES: dict[str, tuple[str, str]] = {
    "go-env": ("after GOROOT initialisation",
               "`go env`: the go command starts, finds GOROOT and reads its configuration, and exits"),
    "go-list-m-all": ("after the module cache is loaded",
                      "`go list -m all`: the go command loads the whole module graph from the module cache"),
    "go-test-binary": ("test process peak",
                       ("the `go test -c` binary of the bench package run alone (its benchmarks), "
                       "without the go command around it")),
    "go-build": ("build peak (not in the comparison)",
                 "`go build ./...` of the workload: the go command and every compile and link it runs"),
}
MEMORY_KINDS = (("peak_rss_bytes", "process peak (peak-RSS-bytes)", ""),
                ("cgroup_peak_bytes", "cgroup peak (page cache included)", "//"),
                ("cgroup_anon_peak_bytes", "cgroup anonymous peak", ".."))


def phase_of(rec: Record) -> str:
    return _short(rec.name)


def memory_plot(run: Run, folder: Path) -> Plot | None:
    """Bars per phase: the process peak beside the cgroup's peaks, one panel per image."""
    recs = [r for r in run.records if r.suite == "memory" and any(r.values.values())]
    if not recs:
        return None
    images = list(dict.fromkeys(r.config for r in recs))
    kinds = [k for k in MEMORY_KINDS if any(r.values.get(k[0]) for r in recs)]
    fig, axes = _figure(3.0 + 2.4 * len(images), rows=len(images))
    colors = _colors(len(kinds))
    for ax, image in zip((row[0] for row in axes), images):
        order = list(PHASES)  # the comparison's phases first, in its order
        mine = sorted((r for r in recs if r.config == image),
                      key=lambda r: order.index(phase_of(r)) if phase_of(r) in order else len(order))
        width = 0.8 / len(kinds)
        for k, ((metric, label, hatch), color) in enumerate(zip(kinds, colors)):
            xs, meds, lo, hi = [], [], [], []
            for i, rec in enumerate(mine):
                vals = rec.values.get(metric)
                if not vals:
                    continue
                med = statistics.median(vals) / 2**20
                xs.append(i - 0.4 + width * (k + 0.5))
                meds.append(med)
                lo.append(med - min(vals) / 2**20)
                hi.append(max(vals) / 2**20 - med)
            ax.bar(xs, meds, width * 0.92, color=color, hatch=hatch, edgecolor="black",
                   linewidth=0.4, yerr=[lo, hi], capsize=2, label=label)
            for x, m, up in zip(xs, meds, hi):
                ax.annotate(f"{m:.3g}", (x, m + up), textcoords="offset points", xytext=(0, 2),
                            ha="center", fontsize=7)
        ax.set_xticks(range(len(mine)), [
            f"{PHASES.get(phase_of(r), (phase_of(r),))[0]}\n({phase_of(r)})" for r in mine], fontsize=8)
        ax.set_yscale("log")  # a build's hundreds of MiB beside go env's few
        _plain_numbers(ax.yaxis)
        ax.set_ylabel("peak memory (MiB, log scale)")
        ax.set_title(f"Peak memory per phase: {_image_label(run, image)}", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="upper left")
    rel = _save(fig, folder, "memory-phases.png")
    return Plot(file=rel, title="Peak memory per phase",
                caption="Median peak memory per phase over the measured runs (whiskers: min to "
                        "max). The process peak is the command's resident peak with its children; "
                        "the cgroup's peak includes page cache.")


RUN_PLOTS: tuple[Callable[[Run, Path], Plot | None], ...] = (compile_plot, memory_plot, sched_plot,
                                                             tooling_plot)


# ---- the matrix view ---------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Point:
    row: str  # Go version (the x axis)
    column: str  # platform (and host)
    median: float
    ci_low: float | None
    ci_high: float | None
    emulated: bool


def version_key(text: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", text)) or (0,)


def scale_for(metric: str, values: Sequence[float]) -> tuple[str, float]:
    """The unit label and divisor that keep a metric's values readable (ms, not 0.0132 s)."""
    if metric.endswith("bytes"):
        return "MiB", 2**20
    top = max(values, default=0)
    for div, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if top >= div:
            return unit, div
    return "ns", 1.0


def matrix_plot(title: str, what: str, metric: str, statistic: str,
                panels: Sequence[tuple[str, list[Point]]], folder: Path, name: str) -> Plot:
    """One panel per table of a headline metric: the value across Go versions, one line per
    platform; emulated points hollow on a dashed line and named so in the legend."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = _figure(1.6 + 2.8 * rows, rows=rows, cols=cols)
    flat = [ax for row in axes for ax in row]
    versions = sorted({p.row for _, pts in panels for p in pts}, key=version_key)
    columns = list(dict.fromkeys(p.column for _, pts in panels for p in pts))
    colors = dict(zip(columns, _colors(len(columns))))
    unit, scale = scale_for(metric, [p.median for _, pts in panels for p in pts])
    for ax, (panel, points) in zip(flat, panels):
        for column in columns:
            for emulated in (False, True):
                pts = sorted((p for p in points if p.column == column and p.emulated == emulated),
                             key=lambda p: version_key(p.row))
                if not pts:
                    continue
                xs = [versions.index(p.row) for p in pts]
                ys = [p.median / scale for p in pts]
                err = [[(p.median - (p.ci_low if p.ci_low is not None else p.median)) / scale for p in pts],
                       [((p.ci_high if p.ci_high is not None else p.median) - p.median) / scale for p in pts]]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colors[column],
                            linestyle="--" if emulated else "-",
                            markerfacecolor="white" if emulated else colors[column],
                            label=f"{column} (emulated: qemu, not the hardware)" if emulated else column)
        ax.set_xticks(range(len(versions)), [
            (f"go{v}" if v[:1].isdigit() and "-" not in v.split(" ")[0] else v).replace(" (run ", "\n(run ")
            for v in versions], fontsize=8)
        ax.set_xlim(-0.5, len(versions) - 0.5)
        ax.set_title(textwrap.fill(panel, 40), fontsize=9)
        ax.set_xlabel("Go version", fontsize=8)
        ax.set_ylabel(f"{what} ({unit})", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    handles, labels = {}, []
    for ax in flat[:len(panels)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    labels = list(handles)
    fig.legend([handles[lab] for lab in labels], labels, loc="outside lower center",
               ncols=min(3, len(labels)), fontsize=8)
    fig.suptitle(title.replace("`", ""), fontsize=11)
    rel = _save(fig, folder, name)
    stat = ("P95 of the runs per Go version and platform" if statistic == "p95" else
            "Median per Go version and platform, whiskers: its 95% CI (none below 6 runs)")
    return Plot(file=rel, title=title,
                caption=f"{stat}; hollow markers on dashed lines ran under emulation.")
