"""Bench outputs: results.json (versioned, every raw sample), bench.txt in the Go benchmark
format for benchstat, report.md, and the summary table printed on stdout."""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..fsutil import atomic_write_bytes, atomic_write_text
from .options import format_memory
from .runner import Record, Target
from .stats import summarize

SCHEMA = "gobuild.bench/v1"
EMULATION_NOTE = ("emulated: this image's architecture differs from the engine's; its times were "
                  "taken under qemu and say nothing about that hardware")
MEMINFO_NOTE = "/proc/meminfo inside a container shows the host's memory, not the container's"

# metric in a sample -> (Go benchmark unit, better)
METRICS = {
    "compile": [("wall_ns", "ns/op"), ("user_ns", "user-ns/op"), ("sys_ns", "sys-ns/op"),
                ("cgroup_peak_bytes", "peak-RSS-bytes")],
    "memory": [("wall_ns", "ns/op"), ("cgroup_peak_bytes", "peak-RSS-bytes"),
               ("vmhwm_bytes", "vmhwm-bytes")],
    "sched": [("p50_ns", "p50-ns"), ("p95_ns", "p95-ns"), ("p99_ns", "p99-ns"), ("max_ns", "max-ns")],
    "tooling": [("wall_ns", "ns/op")],
    "memstats": [("heap_alloc", "heap-alloc-bytes"), ("heap_sys", "heap-sys-bytes"),
                 ("sys", "sys-bytes"), ("cgroup_usage", "cgroup-usage-bytes"),
                 ("cgroup_anon", "cgroup-anon-bytes"), ("cgroup_file", "cgroup-file-bytes")],
}
_BENCH_LINE = re.compile(r"^Benchmark\S+\s+\d+(\s+[-+0-9.eE]+\s+\S+)+\s*$")


def divergence(sample: dict) -> dict:
    """How far runtime.MemStats is from the cgroup's counters, as ratios."""
    usage, sys_ = sample.get("cgroup_usage") or 0, sample.get("sys") or 0
    anon, heap = sample.get("cgroup_anon") or 0, sample.get("heap_inuse") or 0
    return {
        "cgroup_usage_over_memstats_sys": usage / sys_ if sys_ else None,
        "cgroup_anon_over_heap_inuse": anon / heap if heap else None,
        "unaccounted_bytes": usage - sys_,
    }


def record_json(rec: Record) -> dict:
    cfg = rec.config
    metrics = METRICS.get(cfg.suite, [])
    out = {
        "suite": cfg.suite, "name": cfg.name, "image": cfg.target.ref,
        "gomaxprocs": cfg.gomaxprocs, "argv": list(cfg.argv), "emulated": cfg.target.emulated,
        "samples": rec.samples, "failed": rec.failed,
        "summary": {m: (s.as_json() if (s := summarize([x[m] for x in rec.samples if x.get(m, -1) >= 0])) else None)
                    for m, _ in metrics},
    }
    if cfg.suite == "memstats":
        out["divergence"] = [divergence(s) for s in rec.samples]
    return out


def bench_txt(targets: list[Target], records: list[Record], gotest: dict[str, str],
              limits: dict, host: dict) -> str:
    """The Go benchmark text format: config lines per image, then one line per measured run."""
    lines = []
    units = sorted({u for ms in METRICS.values() for _, u in ms if u != "ns/op"})
    for t in targets:
        lines += [
            "goos: linux", f"goarch: {t.arch}", f"cpu: {host.get('cpu_model') or 'unknown'}",
            f"toolchain: go{t.go_version}", f"image: {t.ref}",
            f"cpus: {limits['requested']['cpus']:g}",
            f"memory: {format_memory(limits['requested']['memory'])}",
            f"emulated: {str(t.emulated).lower()}",
        ]
        lines += [f"Unit {u} better=lower" for u in units]
        for rec in records:
            cfg = rec.config
            if cfg.target != t:
                continue
            procs = f"-{cfg.gomaxprocs}" if cfg.gomaxprocs else ""
            for s in rec.samples:
                iters = s.get("n", 1)
                values = "  ".join(f"{s[m]} {u}" for m, u in METRICS[cfg.suite] if s.get(m, -1) >= 0)
                lines.append(f"Benchmark{cfg.name}{procs}  {iters}  {values}")
        if t.ref in gotest:
            lines += [ln.strip() for ln in gotest[t.ref].splitlines() if ln.startswith("pkg: ")][:1]
            lines += [ln.strip() for ln in gotest[t.ref].splitlines() if _BENCH_LINE.match(ln.strip())]
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
                if metric not in ("wall_ns", "cgroup_peak_bytes", "p50_ns", "p99_ns", "sys", "cgroup_usage"):
                    continue
                procs = f"-{r['gomaxprocs']}" if r["gomaxprocs"] else ""
                ci = f"[{_fmt(metric, s['ci_low'])}, {_fmt(metric, s['ci_high'])}]" if s and s["ci_low"] is not None else "-"
                rows.append([
                    suite, f"{r['name']}{procs}", r["image"] + (" (emulated)" if r["emulated"] else ""),
                    metric, _fmt(metric, s["median"] if s else None), ci,
                    _fmt(metric, s["p95"] if s else None), str(s["n"] if s else 0),
                    str(len(r["failed"])) + (" OOM" if any(f.get("oom") for f in r["failed"]) else ""),
                ])
    return rows


HEADER = ["suite", "benchmark", "image", "metric", "median", "95% CI", "p95", "n", "failed"]


def report_md(results: dict) -> str:
    host, lim = results["host"], results["limits"]
    out = [
        f"# gobuild bench {results['run_id']}", "",
        f"- started {results['started']}, finished {results['finished']}",
        (f"- engine {host['engine_version']} ({host['engine_arch']}), kernel {host.get('kernel')}, "
         f"cgroup v{host.get('cgroup_version')}, CPU {host.get('cpu_model')}, governor "
         f"{host.get('governor') or 'unknown'}, load at start {host.get('loadavg_start')}"),
        (f"- requested {lim['requested']['cpus']:g} CPUs, {format_memory(lim['requested']['memory'])}; "
         f"in force {lim['effective']['cpus']:g} CPUs, {lim['effective']['memory']} bytes"),
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


def write_all(out: Path, results: dict, txt: str, profiles: dict[str, bytes]) -> None:
    """Each file is written atomically: an interrupted run leaves the old file or the new one."""
    out.mkdir(parents=True, exist_ok=True)
    for rel, data in sorted(profiles.items()):
        atomic_write_bytes(out / "profiles" / rel, data)
    atomic_write_text(out / "bench.txt", txt)
    atomic_write_text(out / "report.md", report_md(results))
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, sort_keys=True) + "\n")
