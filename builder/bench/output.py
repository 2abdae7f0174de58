"""Bench outputs: results.json (versioned, every raw sample), bench.txt in the Go benchmark
format for benchstat, report.md, and the summary table printed on stdout."""
from __future__ import annotations

import json
from pathlib import Path

from ..fsutil import atomic_write_bytes, atomic_write_text
from .options import format_memory
from .results import METRICS, Results

EMULATION_NOTE = ("emulated: this image's architecture differs from the engine's; its times were "
                  "taken under qemu and say nothing about that hardware")
MEMINFO_NOTE = "/proc/meminfo inside a container shows the host's memory, not the container's"


def bench_txt(results: Results) -> str:
    """The Go benchmark text format: config lines per image, then one line per measured run
    (go test's own result lines for the gotest suite)."""
    lines = []
    units = sorted({u for ms in METRICS.values() for _, u in ms if u != "ns/op"})
    requested = results.limits["requested"]
    for t in results.targets:
        lines += [
            "goos: linux", f"goarch: {t.arch}", f"cpu: {results.host.get('cpu_model') or 'unknown'}",
            f"toolchain: go{t.go_version}", f"image: {t.ref}",
            f"cpus: {requested['cpus']:g}",
            f"memory: {format_memory(requested['memory'])}",
            f"emulated: {str(t.emulated).lower()}",
        ]
        lines += [f"Unit {u} better=lower" for u in units]
        gotest: list[str] = []
        for rec in results.records:
            cfg = rec.config
            if cfg.target != t:
                continue
            for s in rec.samples:
                if cfg.suite == "gotest":
                    if s.extra.get("pkg") and not gotest:
                        gotest.append(s.extra["pkg"])
                    gotest += s.extra.get("benchmarks", [])
                    continue
                values = "  ".join(f"{s.values[m]} {u}" for m, u in METRICS[cfg.suite]
                                   if s.values.get(m, -1) >= 0)
                lines.append(f"Benchmark{cfg.label}  1  {values}")
        lines += gotest
        lines.append("")
    return "\n".join(lines)


def _fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    if metric.endswith("bytes") or metric in ("heap_alloc", "heap_sys", "sys") or metric.startswith("cgroup_"):
        return f"{v / 2**20:.1f} MiB"
    if metric.endswith("_ns"):
        if v >= 1e9:
            return f"{v / 1e9:.2f} s"
        return f"{v / 1e6:.1f} ms" if v >= 1e6 else f"{v / 1e3:.1f} µs"
    return f"{v:g}"


def summary_rows(results: dict) -> list[list[str]]:
    rows = []
    for suite, recs in results["suites"].items():
        for r in recs:
            for metric, s in r["summary"].items():
                if metric not in ("wall_ns", "peak_rss_bytes", "cgroup_peak_bytes", "p50_ns", "p99_ns",
                                  "sys", "cgroup_usage"):
                    continue
                procs = f"-{r['gomaxprocs']}" if r["gomaxprocs"] else ""
                ci = f"[{_fmt(metric, s['ci_low'])}, {_fmt(metric, s['ci_high'])}]" if s and s["ci_low"] is not None else "-"
                rows.append([
                    suite, f"{r['name']}{procs}", r["image"] + (" (emulated)" if r["emulated"] else ""),
                    metric, _fmt(metric, s["median"] if s else None), ci,
                    _fmt(metric, s["p95"] if s else None), str(s["n"] if s else 0),
                    str(len(r["failed"])) + (" OOM" if any(f.get("oom") for f in r["failed"]) else ""),
                ])
            for bench, units in (r.get("benchmarks") or {}).items():
                s = units.get("ns/op")
                if s:
                    ci = f"[{_fmt('x_ns', s['ci_low'])}, {_fmt('x_ns', s['ci_high'])}]" if s["ci_low"] is not None else "-"
                    rows.append([suite, bench, r["image"] + (" (emulated)" if r["emulated"] else ""),
                                 "ns/op", _fmt("x_ns", s["median"]), ci, _fmt("x_ns", s["p95"]),
                                 str(s["n"]), "-"])
    return rows


HEADER = ["suite", "benchmark", "image", "metric", "median", "95% CI", "p95", "n", "failed"]


def report_md(results: dict) -> str:
    host, lim = results["host"], results["limits"]
    out = [
        f"# gobuild bench {results['run_id']}", "",
        f"- started {results['started']}, finished {results['finished']}"
        + ("" if results.get("status", "complete") == "complete" else
           f" (**{results['status']}** after {results.get('rounds_done')} measured round(s): "
           f"{results.get('error') or 'partial results'})"),
        (f"- engine {host['engine_version']} ({host['engine_arch']}), kernel {host.get('kernel')}, "
         f"cgroup v{host.get('cgroup_version')}, CPU {host.get('cpu_model')}, governor "
         f"{host.get('governor') or 'unknown'}, load at start {host.get('loadavg_start')}"),
        (f"- requested {lim['requested']['cpus']:g} CPUs, {format_memory(lim['requested']['memory'])}"
         f"{', CPUs ' + lim['requested']['cpuset'] if lim['requested'].get('cpuset') else ''}, no swap; "
         f"in force {lim['effective']['cpus']:g} CPUs, {lim['effective']['memory']} bytes, "
         f"swap {lim['effective'].get('swap')}, CPUs {lim['effective'].get('cpuset')}"),
        (f"- {results['options']['runs']} measured runs after {results['options']['warmup']} warm-up, "
         "configurations interleaved and shuffled each round"), "",
    ]
    for w in results["warnings"]:
        out.append(f"> **warning:** {w}")
    if results["warnings"]:
        out.append("")
    out += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(r) + " |" for r in summary_rows(results)]
    out.append("")
    if any(t["emulated"] for t in results["targets"]):
        out += [f"**{EMULATION_NOTE}.**", ""]
    if "memstats" in results["suites"]:
        out += [f"Note: {MEMINFO_NOTE}.", ""]
    return "\n".join(out)


def summary_text(results: dict) -> str:
    rows = [HEADER] + summary_rows(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [f"warning: {w}" for w in results["warnings"]]
    return "\n".join(lines)


def write_all(out: Path, results: Results, profiles: dict[str, bytes]) -> None:
    """Each file is written atomically (an interrupted run leaves the old file or the new
    one), results.json last, so that it never names a profile that is not there yet."""
    data = results.to_json()
    out.mkdir(parents=True, exist_ok=True)
    for rel, blob in sorted(profiles.items()):
        atomic_write_bytes(out / "profiles" / rel, blob)
    atomic_write_text(out / "bench.txt", bench_txt(results))
    atomic_write_text(out / "report.md", report_md(data))
    atomic_write_text(out / "results.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
