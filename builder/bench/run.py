"""`gobuild bench` from start to end: prepare each image, check the limits in force, run the
suites, write the outputs, and remove every container and volume of the run on every way out."""
from __future__ import annotations

import contextlib
import datetime as dt
import signal
from collections.abc import Iterator

import docker

from .. import __version__, engine
from ..errors import BenchError
from . import output
from .options import BenchOptions
from ..engine import cleanup_on_exit  # noqa: F401 - moved to the engine seam
from .runner import Bench, Record, configs, log_stderr, rounds
from .stats import summarize

PAGE = 4096


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def effective_limits(facts: dict) -> dict:
    if facts.get("cgroup_version") == 2:
        quota, _, period = (facts.get("cpu_max") or "max 100000").partition(" ")
        cpus = None if quota == "max" else int(quota) / int(period or 100000)
        mem = facts.get("memory_max")
        memory = None if mem in (None, "", "max") else int(mem)
    else:
        q, p = facts.get("cpu_quota_us", -1), facts.get("cpu_period_us", -1)
        cpus = q / p if q and q > 0 and p and p > 0 else None
        mem = facts.get("memory_limit")
        memory = int(mem) if mem and int(mem) < 2**62 else None
    return {"cpus": cpus, "memory": memory, "cpuset": facts.get("cpuset") or None,
            "cgroup_version": facts.get("cgroup_version")}


def check_limits(requested: dict, effective: dict, ref: str) -> None:
    cpus, mem = effective["cpus"], effective["memory"]
    if cpus is None or abs(cpus - requested["cpus"]) > 0.001:
        raise BenchError(
            f"{ref}: the container runs with {cpus} CPUs, not the {requested['cpus']:g} asked for: "
            "does this engine support CPU quotas (gobuild doctor)?"
        )
    if mem is None or abs(mem - requested["memory"]) >= PAGE:
        raise BenchError(
            f"{ref}: the container's memory limit is {mem}, not {requested['memory']}: "
            "does this engine support memory limits (gobuild doctor)?"
        )


def warnings_for(host: dict, records: list[Record], targets) -> list[str]:
    warns = []
    few: set[int] = set()
    try:
        load1 = float(str(host.get("loadavg_start", "0")).split()[0])
        if load1 > 0.5 * max(1, host.get("engine_cpus", 1)):
            warns.append(f"the host was busy at the start (load average {load1:.2f} on "
                         f"{host.get('engine_cpus')} CPUs): times may be inflated")
    except ValueError:
        pass
    gov = host.get("governor")
    if gov and gov != "performance":
        warns.append(f"CPU governor is {gov!r}, not 'performance': frequency scaling adds noise")
    for t in targets:
        if t.emulated:
            warns.append(f"{t.ref} ({t.platform}) ran under emulation: {output.EMULATION_NOTE.split(': ', 1)[1]}")
    for rec in records:
        cfg = rec.config
        for metric, _ in output.METRICS.get(cfg.suite, [])[:1]:
            s = summarize([x[metric] for x in rec.samples if x.get(metric, -1) >= 0])
            if s and s.outliers:
                warns.append(f"{cfg.name} on {cfg.target.ref}: {s.outliers} outlier(s) in {s.n} runs (MAD)")
            if s and s.n < 6:
                few.add(s.n)
        if rec.failed:
            kind = "OOM-killed" if any(f.get("oom") for f in rec.failed) else "failed"
            warns.append(f"{cfg.name} on {cfg.target.ref}: {len(rec.failed)} run(s) {kind}")
    if few:
        warns.append(f"{min(few)} measured run(s) give no 95% confidence interval of the median "
                     "(6 needed, 10 recommended): raise --runs")
    return warns


def run_bench(c: docker.DockerClient, opts: BenchOptions, run_id: str,
              log=log_stderr) -> tuple[dict, str, dict[str, bytes]]:
    """Everything but writing files: returns (results, bench.txt text, profiles)."""
    facts_engine = engine.facts(c)
    requested = {"cpus": opts.cpus, "memory": opts.memory, "cpuset": opts.cpuset}
    started = _now()
    log(f"run id {run_id}: {len(opts.images)} image(s), suites {', '.join(opts.suites)}, "
        f"{opts.runs} runs after {opts.warmup} warm-up, limits {opts.cpus:g} CPUs / {opts.memory} bytes")
    bench = Bench(c, opts, run_id, facts_engine.arch, log)
    targets = [bench.prepare(ref, i) for i, ref in enumerate(opts.images)]
    inside = bench.facts(targets[0])
    effective = effective_limits(inside)
    for t in targets:
        check_limits(requested, effective_limits(bench.facts(t)) if t is not targets[0] else effective, t.ref)
    host = {
        "engine_version": facts_engine.version, "engine_api": facts_engine.api_version,
        "engine_arch": facts_engine.arch, "engine_cpus": facts_engine.cpus,
        "engine_memory_bytes": facts_engine.memory_bytes, "storage_driver": facts_engine.storage_driver,
        "cgroup_version": inside.get("cgroup_version"), "kernel": inside.get("kernel"),
        "cpu_model": inside.get("cpu_model"), "governor": inside.get("governor") or None,
        "loadavg_start": inside.get("loadavg"), "cpus_online": inside.get("nproc_online"),
    }
    cfgs = configs(opts, targets)
    records = list(rounds(bench, cfgs, opts).values()) if cfgs else []
    gotest_out: dict[str, str] = {}
    gotest_oom: dict[str, bool] = {}
    profiles: dict[str, bytes] = {}
    if "gotest" in opts.suites:
        for t in targets:
            log(f"go test -bench . -benchmem -count={opts.runs} in {t.ref}")
            out, profs, oom = bench.gotest(t, opts.runs)
            gotest_out[t.ref], gotest_oom[t.ref] = out, oom
            folder = t.ref.replace("/", "_").replace(":", "_")
            profiles.update({f"{folder}/{name}": data for name, data in profs.items()})
    suites: dict[str, list] = {}
    for rec in records:
        suites.setdefault(rec.config.suite, []).append(output.record_json(rec))
    if "gotest" in opts.suites:
        suites["gotest"] = [
            {"suite": "gotest", "image": t.ref, "emulated": t.emulated, "oom": gotest_oom[t.ref],
             "output": gotest_out[t.ref], "summary": {}, "samples": [], "failed": [],
             "profiles": sorted(p for p in profiles if p.startswith(t.ref.replace("/", "_").replace(":", "_")))}
            for t in targets
        ]
    warns = warnings_for(host, records, targets)
    for ref, oom in gotest_oom.items():
        if oom:
            warns.append(f"go test -bench in {ref} was OOM-killed")
    if "memstats" in opts.suites:
        warns.append(output.MEMINFO_NOTE)
    limits = {"requested": requested, "effective": effective}
    results = {
        "schema": output.SCHEMA, "gobuild_version": __version__, "run_id": run_id,
        "started": started, "finished": _now(),
        "options": {"suites": list(opts.suites), "runs": opts.runs, "warmup": opts.warmup,
                    "gomaxprocs": list(opts.gomaxprocs), "seed": opts.seed,
                    "workload": str(opts.workload) if opts.workload else "embedded",
                    "compile_target": opts.compile_target},
        "limits": limits, "host": host,
        "targets": [{"image": t.ref, "image_id": t.image_id, "digest": t.digest,
                     "platform": t.platform, "go_version": t.go_version, "emulated": t.emulated}
                    for t in targets],
        "suites": suites, "warnings": warns,
        "oom": any(f.get("oom") for r in records for f in r.failed) or any(gotest_oom.values()),
        "failed_runs": sum(len(r.failed) for r in records),
    }
    return results, output.bench_txt(targets, records, gotest_out, limits, host), profiles
