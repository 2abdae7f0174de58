"""`gobuild bench compare`: two runs, or the configurations of one run, metric by metric, as
benchstat compares them: medians, the change of the median in percent, and a two-sided
Mann-Whitney U test at alpha 0.05 (`~` when not significant).

The p-value is computed the way benchstat's (go-moremath's) U test computes it, with scipy:
the exact distribution of U when there are no ties (up to 50 runs a side), the exact
distribution given the ties (a complete permutation test) when there are ties and at most 9
runs a side, and otherwise the normal approximation with tie and continuity correction.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError
from .loaded import Record, Run, go_unit, higher_is_better, load, unit_of

ALPHA = 0.05
MIN_SAMPLES = 4  # the smallest n a side at which a U test can reach p <= 0.05 (p >= 0.029)
EXACT_LIMIT, TIES_EXACT_LIMIT = 50, 9  # benchstat's (go-moremath's) limits
Column = Literal["image", "go", "platform", "host"]
COLUMNS: tuple[Column, ...] = ("image", "go", "platform", "host")  # host: a fleet's (--host)
Format = Literal["text", "markdown", "json", "csv"]
DRIFT_NOTE = (
    "separate invocations drift: host state moves between runs (in this project's own fixture "
    "same-settings-n6, two runs with identical settings, one after the other, differ "
    "'significantly' by +21% to +67% on all three tooling commands). To compare A with B, run them "
    "interleaved in one bench (gobuild bench --image A --image B) and compare within it: "
    "gobuild bench compare RUN --col image")


@dataclass(frozen=True, kw_only=True)
class UTest:
    p: float
    note: str | None = None  # why the p-value says nothing ("all samples are equal")


def u_test(old: list[float] | tuple[float, ...], new: list[float] | tuple[float, ...]) -> UTest:
    """Two-sided Mann-Whitney U test, with benchstat's choice of exact or approximate p."""
    import numpy as np
    from scipy import stats

    if len(set(old) | set(new)) == 1:
        return UTest(p=1.0, note="all samples are equal")
    ties = len(set(old) | set(new)) < len(old) + len(new)
    big = max(len(old), len(new))
    if not ties and big <= EXACT_LIMIT:
        method: object = "exact"
    elif ties and big <= TIES_EXACT_LIMIT:
        # every split of the pooled runs: the exact distribution of U given the ties
        method = stats.PermutationMethod(n_resamples=np.inf)
    else:
        method = "asymptotic"
    res = stats.mannwhitneyu(old, new, alternative="two-sided", method=method, use_continuity=True)
    return UTest(p=min(1.0, float(res.pvalue)))


@dataclass(frozen=True, kw_only=True)
class Row:
    """One metric of one configuration, base against another column."""

    table: str  # what the compared records share besides the benchmark ("" when nothing)
    suite: str
    benchmark: str  # Go benchmark name without "Benchmark" (GoBuildA/pkg=workload-1)
    metric: str
    unit: str  # the Go benchmark unit (ns/op, peak-RSS-bytes)
    base: str
    other: str
    base_median: float
    other_median: float
    base_n: int
    other_n: int
    delta_pct: float | None  # change of the median; None when the base median is 0
    p: float | None  # None when a side has fewer than MIN_SAMPLES runs
    note: str | None
    emulated: bool  # either side ran under qemu

    @property
    def better_lower(self) -> bool:
        return not (higher_is_better(self.unit) or higher_is_better(self.metric))

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p <= ALPHA and self.note is None

    @property
    def verdict(self) -> str:
        """'worse', 'better', '~' (no significant change) or 'no verdict' (too few runs)."""
        if self.p is None:
            return "no verdict"
        if not self.significant or not self.delta_pct:
            return "~"
        return "worse" if (self.delta_pct > 0) == self.better_lower else "better"

    def to_json(self) -> dict:
        return {**asdict(self), "significant": self.significant, "verdict": self.verdict,
                "better": "lower" if self.better_lower else "higher"}


@dataclass(frozen=True, kw_only=True)
class Comparison:
    base: str
    others: tuple[str, ...]
    rows: tuple[Row, ...]
    warnings: tuple[str, ...]
    unmatched: tuple[str, ...]  # metrics only one side has

    @property
    def judged(self) -> int:
        """Rows with a p-value: what a --fail-on-regression gate can judge."""
        return sum(r.p is not None for r in self.rows)

    def regressions(self, pct: float) -> list[Row]:
        """Significant changes for the worse by more than pct percent."""
        return [r for r in self.rows if r.verdict == "worse" and r.delta_pct is not None
                and abs(r.delta_pct) > pct]

    def to_json(self) -> dict:
        return {"alpha": ALPHA, "min_samples": MIN_SAMPLES, "base": self.base,
                "others": list(self.others), "rows": [r.to_json() for r in self.rows],
                "warnings": list(self.warnings), "unmatched": list(self.unmatched)}


def _row(table: str, base_rec: Record, other_rec: Record, metric: str, base: str, other: str) -> Row | None:
    a, b = base_rec.values.get(metric, ()), other_rec.values.get(metric, ())
    if not a or not b:
        return None
    ma, mb = statistics.median(a), statistics.median(b)
    few = min(len(a), len(b)) < MIN_SAMPLES
    test = None if few else u_test(a, b)
    return Row(
        table=table, suite=base_rec.suite, benchmark=base_rec.label, metric=metric,
        unit=go_unit(base_rec.suite, metric), base=base, other=other, base_median=ma,
        other_median=mb, base_n=len(a), other_n=len(b),
        delta_pct=(mb - ma) / ma * 100 if ma else None, p=test.p if test else None,
        note=f"need >= {MIN_SAMPLES} runs a side for a verdict" if few else test.note,  # type: ignore[union-attr]
        emulated=base_rec.emulated or other_rec.emulated,
    )


def _pairs(table: str, base: dict, other: dict, base_name: str, other_name: str,
           rows: list[Row], unmatched: list[str]) -> None:
    """base and other map (suite, benchmark) to a record; rows for every metric both have."""
    for key, rec in base.items():
        twin = other.get(key)
        where = f"{table + ': ' if table else ''}{rec.label}"
        if twin is None:
            unmatched.append(f"{where} only in {base_name}")
            continue
        for metric in rec.values:
            row = _row(table, rec, twin, metric, base_name, other_name)
            if row is not None:
                rows.append(row)
            elif metric in twin.values or rec.values.get(metric):
                unmatched.append(f"{where} {metric}: no measured runs in "
                                 f"{base_name if not rec.values.get(metric) else other_name}")
    for key, rec in other.items():
        if key not in base:
            unmatched.append(f"{table + ': ' if table else ''}{rec.label} only in {other_name}")


def _by_benchmark(records) -> dict:
    return {(r.suite, r.label): r for r in records}


def compare_runs(old: Run, new: Run, old_name: str = "old", new_name: str = "new") -> Comparison:
    """Two runs: records paired by image when both ran the same images, the one image of each
    when each ran one, else by platform."""
    rows: list[Row] = []
    unmatched: list[str] = []
    old_images = [t.config for t in old.targets]
    new_images = [t.config for t in new.targets]
    if sorted(old_images) == sorted(new_images):
        groups = [(img, img, img) for img in old_images]
    elif len(old_images) == 1 and len(new_images) == 1:
        groups = [("", old_images[0], new_images[0])]
    else:
        old_by = {t.platform: t.config for t in old.targets}
        new_by = {t.platform: t.config for t in new.targets}
        if len(old_by) != len(old_images) or len(new_by) != len(new_images):
            raise ConfigError(
                f"{old.path} and {new.path} ran different images, several per platform, so gobuild "
                "cannot tell which to pair: bench one image per platform in each, or compare "
                "within one run with --col image")
        groups = [(p, old_by[p], new_by[p]) for p in old_by if p in new_by]
        unmatched += [f"{p}: only in {old_name}" for p in old_by if p not in new_by]
        unmatched += [f"{p}: only in {new_name}" for p in new_by if p not in old_by]
    for table, old_image, new_image in groups:
        _pairs(table, _by_benchmark(r for r in old.records if r.config == old_image),
               _by_benchmark(r for r in new.records if r.config == new_image),
               old_name, new_name, rows, unmatched)
    return Comparison(base=old_name, others=(new_name,), rows=tuple(rows),
                      warnings=tuple(run_warnings(old, new, old_name, new_name)),
                      unmatched=tuple(unmatched))


def column_value(run: Run, config: str, col: Column) -> str:
    """A configuration's value of col; "image" is the configuration label (IMAGE#2 when the
    run benched one image twice)."""
    t = run.target(config)
    return {"image": t.config, "go": f"go{t.go_version}", "platform": t.platform,
            "host": t.host or "local"}[col]


def _name_without(run: Run, config: str, col: Column) -> str:
    """The configuration label with the column's part blanked out (gobuild/go:1.22.10-slim-amd64
    with --col go: gobuild/go:*-slim-amd64); "" when the label does not hold that part."""
    if col == "image":
        return ""
    t = run.target(config)
    if col == "host":  # IMAGE@LABEL: the same image on every host
        return config.replace(f"@{t.host}", "@*", 1) if t.host else config
    arch = t.platform.split("/", 1)[-1]
    parts = [t.go_version] if col == "go" else [arch.replace("/", ""), arch.replace("/", "-"), arch]
    return next((config.replace(p, "*", 1) for p in parts if p and p in config), "")


def compare_columns(run: Run, col: Column) -> Comparison:
    """The configurations of one run side by side, benchstat's -col: records that differ only
    in `col` are compared, the first value of `col` in the run being the base."""
    if col not in COLUMNS:
        raise ConfigError(f"--col {col}: not one of {', '.join(COLUMNS)}")
    values = list(dict.fromkeys(column_value(run, t.config, col) for t in run.targets))
    if len(values) < 2:
        what = (f"benched one image ({values[0]})" if col == "image" else
                f"benched one {col} ({values[0]})") if values else "holds no image"
        raise ConfigError(
            f"{run.path}: the run {what}, nothing to compare with --col {col}: "
            f"bench several in one run (gobuild bench --image A --image B) or compare two runs: "
            "gobuild bench compare OLD NEW")
    fleet = any(t.host for t in run.targets)  # the host is an attribute only of a fleet's run
    rest = [c for c in COLUMNS if c not in (col, "image") and (c != "host" or fleet)] if col != "image" else []
    # a configuration's slot: every attribute but the column's (the other columns and the image
    # name without the column's part), so bookworm and slim of one Go and platform stay apart
    slot_of = {t.config: (" ".join(column_value(run, t.config, c) for c in rest),
                          _name_without(run, t.config, col)) for t in run.targets}
    several = {k for k, _ in slot_of.values() if len({n for j, n in slot_of.values() if j == k}) > 1}
    configs: dict[tuple[str, str], str] = {}
    tables: dict[str, dict[str, dict]] = {}
    for rec in run.records:
        key, name = slot_of[rec.config]
        table = f"{key} {name}".strip() if key in several else key
        column = column_value(run, rec.config, col)
        if configs.setdefault((table, column), rec.config) != rec.config:
            raise ConfigError(
                f"{run.path}: {configs[(table, column)]} and {rec.config} share {col} {column} "
                f"and every other attribute gobuild can tell apart, so --col {col} cannot pair "
                "them: compare with --col image, or bench them in separate runs")
        tables.setdefault(table, {}).setdefault(column, {})[(rec.suite, rec.label)] = rec
    rows: list[Row] = []
    unmatched: list[str] = []
    base = values[0]
    for table, columns in tables.items():
        for other in values[1:]:
            if base in columns and other in columns:
                _pairs(table, columns[base], columns[other], base, other, rows, unmatched)
            elif base in columns or other in columns:
                unmatched.append(f"{table + ': ' if table else ''}only "
                                 f"{base if base in columns else other} was benched, not "
                                 f"{other if base in columns else base}")
    warnings = []
    emulated = {column_value(run, t.config, col) for t in run.targets if t.emulated}
    if emulated and len(emulated) < len(values):
        warnings.append(f"{', '.join(sorted(emulated))} ran under emulation (qemu) and the others "
                        "natively: their differences measure qemu, not the hardware")
    if run.status != "complete":
        warnings.append(f"the run is {run.status} after {run.rounds_done} measured round(s)")
    return Comparison(base=base, others=tuple(values[1:]), rows=tuple(rows),
                      warnings=tuple(warnings), unmatched=tuple(unmatched))


def _differences(a: dict, b: dict, keys: tuple[str, ...]) -> list[str]:
    return [f"{k} {a.get(k)} vs {b.get(k)}" for k in keys if a.get(k) != b.get(k)]


def run_warnings(old: Run, new: Run, old_name: str, new_name: str) -> list[str]:
    """What makes two invocations hard to compare: limits, hosts, engines, emulation, drift."""
    warns = []
    req_o, req_n = old.limits.get("requested") or {}, new.limits.get("requested") or {}
    eff_o, eff_n = old.limits.get("effective") or {}, new.limits.get("effective") or {}
    keys = ("cpus", "memory", "cpuset", "swap")
    asked = _differences(req_o, req_n, keys)
    limits = asked + [f"in force {d}" for d in _differences(
        eff_o, eff_n, tuple(k for k in keys if req_o.get(k) == req_n.get(k)))]
    if limits:
        warns.append(f"the runs had different limits ({'; '.join(limits)}): differences include the limits' effect")
    host_keys = ("label", "cpu_model", "engine_arch", "engine_cpus", "engine_memory_bytes", "kernel", "governor")
    if hosts := _differences(dict(old.host), dict(new.host), host_keys):
        warns.append(f"the runs were on different hosts ({'; '.join(hosts)})")
    engine_keys = ("engine_version", "engine_api", "storage_driver", "cgroup_version")
    if engines := _differences(dict(old.host), dict(new.host), engine_keys):
        warns.append(f"the runs used different engines ({'; '.join(engines)})")
    if (lock_o := old.host.get("lockdown")) != (lock_n := new.host.get("lockdown")):
        said = {name: ", ".join(f"{k} {v}" for k, v in sorted((lock or {}).items()))
                or "none recorded (GOCACHE on the container's disk)"
                for name, lock in ((old_name, lock_o), (new_name, lock_n))}
        warns.append(f"the runs were measured under different lockdowns ({old_name}: {said[old_name]}; "
                     f"{new_name}: {said[new_name]}): a GOCACHE in tmpfs counts in the cgroup peaks, "
                     "so memory (and compile) figures differ by that too")
    opt_keys = ("workload", "workload_shape", "compile_target", "bench_package", "warmup")
    if opts := _differences(dict(old.options), dict(new.options), opt_keys):
        warns.append(f"the runs measured different things ({'; '.join(opts)})")
    emu_o = sorted(t.image for t in old.targets if t.emulated)
    emu_n = sorted(t.image for t in new.targets if t.emulated)
    if emu_o != emu_n or emu_o:
        sides = [f"{name}: {', '.join(e)}" for name, e in ((old_name, emu_o), (new_name, emu_n)) if e]
        warns.append(f"emulated (qemu) images ({'; '.join(sides)}): their times say nothing about "
                     "the hardware, and an emulated side against a native one measures qemu")
    warns += fleet_warnings(old, new, old_name, new_name)
    for name, run in ((old_name, old), (new_name, new)):
        if run.status != "complete":
            warns.append(f"{name} is {run.status} after {run.rounds_done} measured round(s)")
    if old.run_id != new.run_id:
        warns.append(DRIFT_NOTE)
    return warns


def fleet_warnings(old: Run, new: Run, old_name: str, new_name: str) -> list[str]:
    """Fleet runs: hosts that only one side has, and a host (by label) that changed."""
    if not old.hosts and not new.hosts:
        return []
    by_o = {h.get("label"): h for h in old.hosts} or {"local": {}}
    by_n = {h.get("label"): h for h in new.hosts} or {"local": {}}
    warns = [f"host {label} only in {name}" for label, name, other in
             [*((lb, old_name, by_n) for lb in by_o), *((lb, new_name, by_o) for lb in by_n)]
             if label not in other]
    for label in by_o.keys() & by_n.keys():
        if diff := _differences(dict(by_o[label]), dict(by_n[label]),
                                ("endpoint", "arch", "cpu_model", "cpus", "engine_version")):
            warns.append(f"host {label} differs between the runs ({'; '.join(diff)})")
    for name, run in ((old_name, old), (new_name, new)):
        for h in run.hosts:
            if h.get("status") != "complete":
                warns.append(f"{name}: host {h.get('label')} {h.get('status')}: {h.get('error')}")
    return warns


# ---- formats -----------------------------------------------------------------------------

def fmt_value(metric: str, v: float) -> str:
    unit = unit_of(metric)
    if unit == "ns":
        for div, suffix in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
            if v >= div:
                return f"{v / div:.4g} {suffix}"
        return f"{v:.4g} ns"
    if unit == "bytes":
        for div, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if v >= div:
                return f"{v / div:.4g} {suffix}"
        return f"{v:.4g} B"
    return f"{v:.4g}"


def _delta(row: Row) -> str:
    if row.p is None:
        return "no verdict"
    if not row.significant or row.delta_pct is None:
        return "~"
    return f"{row.delta_pct:+.2f}%"


def _stat(row: Row) -> str:
    n = f"n={row.base_n}" if row.base_n == row.other_n else f"n={row.base_n}+{row.other_n}"
    if row.p is None:
        return f"({row.note}, {n})"
    return f"(p={row.p:.3f} {n}{', ' + row.note if row.note else ''})"


HEADER = ("benchmark", "metric", "{base}", "{other}", "vs base", "p, n")


def table_rows(cmp: Comparison) -> list[tuple[str, str, list[list[str]]]]:
    """(table, other column, rows) in the order found."""
    groups: dict[tuple[str, str], list[list[str]]] = {}
    for r in cmp.rows:
        emu = " (emulated)" if r.emulated else ""
        groups.setdefault((r.table, r.other), []).append([
            r.benchmark + emu, r.unit, fmt_value(r.metric, r.base_median),
            fmt_value(r.metric, r.other_median), _delta(r), _stat(r)])
    return [(t, o, rows) for (t, o), rows in groups.items()]


def _notes(cmp: Comparison) -> list[str]:
    notes = [(f"~: no significant change (two-sided Mann-Whitney U, p > {ALPHA}); changes are of "
             f"the median; fewer than {MIN_SAMPLES} runs a side: no verdict")]
    notes += [f"only one side: {u}" for u in cmp.unmatched]
    return notes + [f"warning: {w}" for w in cmp.warnings]


def text(cmp: Comparison) -> str:
    out = []
    for table, other, rows in table_rows(cmp):
        head = [h.format(base=cmp.base, other=other) for h in HEADER]
        every = [head, *rows]
        widths = [max(len(r[i]) for r in every) for i in range(len(head))]
        if table:
            out.append(f"{table}:")
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in every]
        out.append("")
    if not cmp.rows:
        out += ["no metric is in both", ""]
    return "\n".join(out + _notes(cmp))


def markdown(cmp: Comparison) -> str:
    out = []
    for table, other, rows in table_rows(cmp):
        head = [h.format(base=cmp.base, other=other) for h in HEADER]
        if table:
            out += [f"**{table}**", ""]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        out.append("")
    if not cmp.rows:
        out += ["No metric is in both.", ""]
    return "\n".join(out + [f"- {n}" for n in _notes(cmp)]) + "\n"


CSV_FIELDS = ("table", "suite", "benchmark", "metric", "unit", "base", "other", "base_median",
              "other_median", "base_n", "other_n", "delta_pct", "p", "verdict", "note", "emulated")


def csv_text(cmp: Comparison) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in cmp.rows:
        writer.writerow(r.to_json())
    return buf.getvalue()


def render(cmp: Comparison, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(cmp.to_json(), indent=2, sort_keys=True, default=_json_default)
    return {"text": text, "markdown": markdown, "csv": csv_text}[fmt](cmp)


def _json_default(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    raise TypeError(type(v).__name__)


def _names(paths: list[Path]) -> list[str]:
    """Column names: the folders' own names when they differ, else the paths as given."""
    folders = [load_path.parent.name if load_path.name == "results.json" else load_path.name
               for load_path in paths]
    return folders if len(set(folders)) == len(folders) and all(folders) else [str(p) for p in paths]


def compare_paths(paths: list[Path], col: Column | None = None) -> Comparison:
    """`gobuild bench compare`: OLD NEW (folders or results.json), or RUN --col ATTR (one
    run alone: its images side by side, --col image)."""
    if len(paths) == 1 and col is None:
        col = "image"
    if col:
        if len(paths) != 1:
            raise ConfigError(f"--col compares the configurations of ONE run; {len(paths)} given: "
                              "gobuild bench compare RUN --col image")
        return compare_columns(load(paths[0]), col)
    if len(paths) != 2:
        raise ConfigError(f"compare takes OLD and NEW ({len(paths)} given), or one run with --col: "
                          "gobuild bench compare OLD NEW, gobuild bench compare RUN --col image")
    old, new = load(paths[0]), load(paths[1])
    if old.path.resolve() == new.path.resolve():
        raise ConfigError(f"{paths[0]} and {paths[1]} are the same run: give two runs, or compare "
                          "within one run with --col image")
    old_name, new_name = _names(paths)
    return compare_runs(old, new, old_name, new_name)
