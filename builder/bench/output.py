"""Bench outputs: results.json (versioned, every raw sample), bench.txt in the Go benchmark
format for benchstat, report.md with its plots, and the summary table printed on stdout."""
from __future__ import annotations

import json
from pathlib import Path

from ..fsutil import atomic_write_bytes, atomic_write_text
from . import loaded, report
from .options import format_memory
from .report import EMULATION_NOTE, HEADER, MEMINFO_NOTE, summary_rows
from .results import METRICS, Results

__all__ = ["EMULATION_NOTE", "MEMINFO_NOTE", "METRICS", "bench_txt", "summary_text", "write_all"]


def bench_txt(results: Results) -> str:
    """The Go benchmark text format: config lines per image, then one line per measured run
    (go test's own result lines for the gotest suite)."""
    lines = []
    units = sorted({u for ms in METRICS.values() for _, u in ms if u != "ns/op"})
    requested = results.limits["requested"]
    # a fleet's configurations are IMAGE@HOST: the host: line keeps them apart already
    labelled = any(t.label not in (t.ref, f"{t.ref}@{t.host}") for t in results.targets)
    cpu_of = {h.get("label"): h.get("cpu_model") for h in results.hosts}
    for t in results.targets:
        cpu = cpu_of.get(t.host) if t.host else results.host.get("cpu_model")
        lines += [
            "goos: linux", f"goarch: {t.arch}", f"cpu: {cpu or 'unknown'}",
            f"toolchain: go{t.go_version}", f"image: {t.ref}",
            # a fleet's host, so that benchstat -col host puts the hosts side by side
            *([f"host: {t.host}"] if t.host else []),
            # one image benched as several configurations (REF#1, REF#2): benchstat keeps them
            # apart only if a configuration line differs, and a line holds until it is set again
            *([f"config: {t.label}"] if labelled else []),
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


def summary_text(results: dict) -> str:
    rows = [HEADER] + summary_rows(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [f"warning: {w}" for w in results["warnings"]]
    return "\n".join(lines)


def write_all(out: Path, results: Results, profiles: dict[str, bytes]) -> None:
    """Each file is written atomically (an interrupted run leaves the old file or the new
    one): profiles first, so that results.json never names a profile that is not there yet,
    then bench.txt and results.json, then report.md and its plots, which only read them."""
    data = results.to_json()
    out.mkdir(parents=True, exist_ok=True)
    for rel, blob in sorted(profiles.items()):
        atomic_write_bytes(out / "profiles" / rel, blob)
    atomic_write_text(out / "bench.txt", bench_txt(results))
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write_text(out / "results.json", text)
    report.write_report(loaded.from_json(json.loads(text), out / "results.json"), out)
