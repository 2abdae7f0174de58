"""Typed bench results: targets, configurations, samples, records and the whole run.

Frozen dataclasses all the way down; `to_json()` gives the `gobuild.bench/v1` document that
results.json holds (every raw sample, failed runs beside measured ones).

Additions to v1 (additive: a reader of the first v1 documents reads these unchanged):
- suite `moddownload`: records `GoModDownload/cache=cold` (an empty module cache) and
  `GoModDownload/cache=warm` (a persistent cache already holding the graph), `go mod download`
  from a module proxy on an isolated network; the compile suite's metrics (time, process peak,
  cgroup peaks). The top-level `network` object says how that network was made and what a probe
  inside it could reach (`proxy_reached` true, `other_routes` empty). Each of its samples has
  `proxy_zips`: the .zip files the proxy served during that run (by the proxy's own output),
  the whole graph for a cold cache, none for a warm one. The suite runs only when asked for.
- `config` in each target and record: the configuration label, which is the image reference,
  or `REF#1`, `REF#2` when one image is benched as several configurations (an A/A check).
  Group by `config`, not `image`, to keep such configurations apart.
- `phase` in each memory record: `id` (go-env, go-list-m-all, go-build, go-test-binary) and
  `comparison`, the phase as the published comparison of Go environments names it
  ("after GOROOT initialisation", "after the module cache is loaded", "test process peak"; null where it names none).
- `load1_start` in each sample: the host's 1-minute load average when that run started (read
  by the runner probe inside the container; the kernel's figure is the host's).
- `host.load_at_round_start`: that figure for the first run of each measured round;
  `host.quiet_wait`: what --wait-quiet saw (threshold, seconds waited, load before and after,
  whether the host became quiet), or null when it was not asked for.
- `options.workload_size`, `options.configs`, `options.wait_quiet`, `options.quiet_load`.
- `prepare_s` in each target: the wall time of its preparation (workload, module cache, probes;
  not CPU-limited).
- fleets (`--host`, builder/fleet.py): `host` in each target and record (the host's label; its
  `config` is then `IMAGE@LABEL`), a top-level `hosts` list (label, endpoint as given, engine,
  architecture, CPU model, status, error, its own results folder), and status `partial` when a
  host was unreachable, lost or skipped.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from . import benchfmt
from .stats import Summary, summarize

SCHEMA = "gobuild.bench/v1"
Suite = Literal["compile", "memory", "sched", "tooling", "memstats", "gotest", "moddownload"]
SUITES: tuple[Suite, ...] = ("compile", "memory", "sched", "tooling", "memstats", "gotest",
                             "moddownload")
# what runs without --suite: moddownload is opt-in (it needs a module with dependencies, a
# network of its own and a costlier preparation)
DEFAULT_SUITES: tuple[Suite, ...] = tuple(s for s in SUITES if s != "moddownload")
Status = Literal["running", "complete", "interrupted", "failed", "partial"]

# metric in a sample -> Go benchmark unit, per suite (all better lower). peak-RSS-bytes is a
# process's resident peak, as Go's own tools mean it; the cgroup's figures (page cache
# included) have names of their own.
METRICS: dict[str, list[tuple[str, str]]] = {
    "compile": [("wall_ns", "ns/op"), ("user_ns", "user-ns/op"), ("sys_ns", "sys-ns/op"),
                ("peak_rss_bytes", "peak-RSS-bytes"), ("cgroup_peak_bytes", "cgroup-peak-bytes"),
                ("cgroup_anon_peak_bytes", "cgroup-anon-peak-bytes")],
    "memory": [("wall_ns", "ns/op"), ("peak_rss_bytes", "peak-RSS-bytes"),
               ("cgroup_peak_bytes", "cgroup-peak-bytes"),
               ("cgroup_anon_peak_bytes", "cgroup-anon-peak-bytes")],
    "sched": [("p50_ns", "p50-ns"), ("p95_ns", "p95-ns"), ("p99_ns", "p99-ns"), ("max_ns", "max-ns")],
    "tooling": [("wall_ns", "ns/op")],
    "memstats": [("heap_alloc", "heap-alloc-bytes"), ("heap_sys", "heap-sys-bytes"),
                 ("sys", "sys-bytes"), ("cgroup_usage", "cgroup-usage-bytes"),
                 ("cgroup_anon", "cgroup-anon-bytes"), ("cgroup_file", "cgroup-file-bytes")],
    "gotest": [("wall_ns", "ns/op")],
    "moddownload": [("wall_ns", "ns/op"), ("user_ns", "user-ns/op"), ("sys_ns", "sys-ns/op"),
                    ("peak_rss_bytes", "peak-RSS-bytes"), ("cgroup_peak_bytes", "cgroup-peak-bytes"),
                    ("cgroup_anon_peak_bytes", "cgroup-anon-peak-bytes")],
}

# The memory suite's phases, and what the published comparison of Go environments calls the
# phase each one stands for: the go command's own start (GOROOT read, nothing loaded), the
# module graph loaded from the module cache, and the peak of a test process.
MEMORY_PHASES: dict[str, str | None] = {
    "go-env": "after GOROOT initialisation",
    "go-list-m-all": "after the module cache is loaded",
    "go-build": None,
    "go-test-binary": "test process peak",
}


def folder_name(ref: str) -> str:
    """An image reference or configuration label as one path component
    (profiles/<folder>/cpu.pprof); '#' would end a link's path in a report."""
    return ref.replace("/", "_").replace(":", "_").replace("#", "_")


@dataclass(frozen=True, kw_only=True)
class Target:
    """One image being benched, prepared in its own volume."""

    ref: str
    image_id: str
    digest: str | None
    platform: str
    arch: str
    go_version: str
    emulated: bool
    volume: str
    config: str = ""  # the configuration label [default: ref]; REF#N for a repeated image
    prepare_s: float | None = None  # wall time of its preparation (not CPU-limited)
    host: str = ""  # the fleet host's label ("" when gobuild used one engine)

    @property
    def label(self) -> str:
        return self.config or self.ref

    def to_json(self) -> dict:
        return {"image": self.ref, "config": self.label, "image_id": self.image_id,
                "digest": self.digest, "platform": self.platform, "go_version": self.go_version,
                "emulated": self.emulated, "prepare_s": self.prepare_s,
                **({"host": self.host} if self.host else {})}


@dataclass(frozen=True, kw_only=True)
class Config:
    """One thing measured once per round: a suite case on an image at a GOMAXPROCS."""

    suite: Suite
    name: str  # Go benchmark name without "Benchmark" and without the -procs suffix
    target: Target
    argv: tuple[str, ...]
    gomaxprocs: int | None = None
    result_tag: str = "GOBUILD-RESULT"  # the line the probe prints its figures on
    working_dir: str | None = None  # [default: the workload's module]
    env: tuple[tuple[str, str], ...] = ()  # environment of this configuration's runs

    @property
    def key(self) -> str:
        return f"{self.target.label}|{self.label}"

    @property
    def label(self) -> str:
        return f"{self.name}-{self.gomaxprocs}" if self.gomaxprocs else self.name


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One measured run: its figures, or why it failed."""

    values: Mapping[str, float] = field(default_factory=dict)
    exit_code: int = 0
    oom: bool = False
    oom_reasons: tuple[str, ...] = ()
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # argv, signal, go test lines...

    @property
    def failed(self) -> bool:
        return self.oom or self.error is not None

    def to_json(self) -> dict:
        out = {**self.extra, **self.values, "oom": self.oom, "exit_code": self.exit_code}
        if self.oom_reasons:
            out["oom_reasons"] = list(self.oom_reasons)
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True, kw_only=True)
class Record:
    config: Config
    samples: tuple[Sample, ...] = ()
    failed: tuple[Sample, ...] = ()

    def add(self, sample: Sample) -> Record:
        if sample.failed:
            return replace(self, failed=(*self.failed, sample))
        return replace(self, samples=(*self.samples, sample))

    def values(self, metric: str) -> list[float]:
        """The measured values of a metric (runs that could not measure it report -1)."""
        return [v for s in self.samples if (v := s.values.get(metric, -1)) >= 0]

    def summary(self, metric: str) -> Summary | None:
        return summarize(self.values(metric))

    def to_json(self) -> dict:
        cfg = self.config
        out = {
            "suite": cfg.suite, "name": cfg.name, "image": cfg.target.ref,
            "config": cfg.target.label, "gomaxprocs": cfg.gomaxprocs, "argv": list(cfg.argv), "emulated": cfg.target.emulated,
            **({"host": cfg.target.host} if cfg.target.host else {}),
            "samples": [s.to_json() for s in self.samples],
            "failed": [s.to_json() for s in self.failed],
            "summary": {m: (s.as_json() if (s := self.summary(m)) else None)
                        for m, _ in METRICS[cfg.suite]},
        }
        if cfg.suite == "memory":
            phase = cfg.name.split("=", 1)[-1]
            out["phase"] = {"id": phase, "comparison": MEMORY_PHASES.get(phase)}
        if cfg.suite == "memstats":
            out["divergence"] = [divergence(s.values) for s in self.samples]
        if cfg.suite == "gotest":
            out["benchmarks"] = gotest_summary(self.samples)
        return out


def gotest_summary(samples: tuple[Sample, ...]) -> dict:
    """go test's own benchmarks over the measured runs: name -> unit -> summary."""
    values: dict[str, dict[str, list[float]]] = {}
    for s in samples:
        for result in benchfmt.parse("\n".join(s.extra.get("benchmarks", []))):
            for unit, v in result.values.items():
                values.setdefault(result.name, {}).setdefault(unit, []).append(v)
    return {name: {unit: summarize(vs).as_json() for unit, vs in units.items()}
            for name, units in sorted(values.items())}


def divergence(values: Mapping[str, float]) -> dict:
    """How far runtime.MemStats is from the cgroup's counters, as ratios."""
    usage, sys_ = values.get("cgroup_usage") or 0, values.get("sys") or 0
    anon, heap = values.get("cgroup_anon") or 0, values.get("heap_inuse") or 0
    return {
        "cgroup_usage_over_memstats_sys": usage / sys_ if sys_ else None,
        "cgroup_anon_over_heap_inuse": anon / heap if heap else None,
        "unaccounted_bytes": usage - sys_,
    }


@dataclass(frozen=True, kw_only=True)
class Results:
    """A whole bench run; written after every measured round, so a late failure keeps what
    was measured (status tells how far it got)."""

    run_id: str
    gobuild_version: str
    started: str
    finished: str | None
    status: Status
    rounds_done: int
    options: Mapping[str, Any]
    limits: Mapping[str, Any]
    host: Mapping[str, Any]
    targets: tuple[Target, ...]
    records: tuple[Record, ...]
    warnings: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()  # paths under profiles/
    error: str | None = None
    network: Mapping[str, Any] = field(default_factory=dict)  # the moddownload suite's network
    hosts: tuple[Mapping[str, Any], ...] = ()  # a fleet's hosts (builder/fleet.py)

    @property
    def oom(self) -> bool:
        return any(f.oom for r in self.records for f in r.failed)

    @property
    def failed_runs(self) -> int:
        return sum(len(r.failed) for r in self.records)

    def to_json(self) -> dict:
        suites: dict[str, list] = {}
        for rec in self.records:
            suites.setdefault(rec.config.suite, []).append(rec.to_json())
        for rec_json in suites.get("gotest", []):
            rec_json["profiles"] = [p for p in self.profiles
                                    if p.startswith(folder_name(rec_json["config"]) + "/")]
        out = {
            "schema": SCHEMA, "gobuild_version": self.gobuild_version, "run_id": self.run_id,
            "started": self.started, "finished": self.finished, "status": self.status,
            "rounds_done": self.rounds_done, "options": dict(self.options),
            "limits": dict(self.limits), "host": dict(self.host),
            "targets": [t.to_json() for t in self.targets], "suites": suites,
            "warnings": list(self.warnings), "oom": self.oom, "failed_runs": self.failed_runs,
        }
        if self.error:
            out["error"] = self.error
        if self.network:
            out["network"] = dict(self.network)
        if self.hosts:
            out["hosts"] = [dict(h) for h in self.hosts]
        return out

