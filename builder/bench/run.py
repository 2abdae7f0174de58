"""`gobuild bench` from start to end, as a library function: choose the images, prepare each,
check the limits in force, run the suites round by round, and write the outputs after every
measured round, so that a failure late in a run keeps what was measured."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import docker

from .. import __version__, engine
from ..errors import BenchError, ConfigError
from ..inputs import Inputs
from ..matrix import Selection, select
from . import modproxy, output
from .options import BenchOptions, config_labels, quiet_threshold
from .progress import Progress
from .results import METRICS, Record, Results, Target
from .runner import LOCKDOWN, Bench, configs, rounds

# A memory limit is rounded to the kernel's page size (4 KiB, or 16 or 64 KiB on some arm64
# kernels, the Raspberry Pi 5's among them).
LIMIT_SLACK = 64 * 2**10


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def choose_images(engine_client: docker.DockerClient, inputs: Inputs,
                  images: tuple[str, ...]) -> tuple[str, ...]:
    """The images to bench: those named, else the selected cells' images (default: the newest
    Go of the matrix, slim, for the engine's own platform); each must be in the engine."""
    from ..build import image_tag

    refs = images
    if not refs:
        sel = inputs.selection
        if sel == Selection():
            sel = Selection(go=("latest",), platforms=(engine.platform(engine_client),),
                            variants=("slim",))
        lock = inputs.lock()
        refs = tuple(image_tag(lock.release(cell), cell) for cell in select(inputs.matrix(), sel))
    fix = "build or pull it first" if images else "build it first (gobuild images) or pass --image TAG"
    for ref in refs:
        if engine.image_labels(engine_client, ref) is None:
            raise ConfigError(f"no image {ref} in the engine: {fix}")
    return refs


def effective_limits(facts: dict) -> dict:
    """The limits in force, from what the runner probe read inside the container: CPUs,
    memory, swap the container may use on top of memory (None: unknown), CPU set."""
    host_swap = facts.get("host_swap_kb")
    if facts.get("cgroup_version") == 2:
        quota, _, period = (facts.get("cpu_max") or "max 100000").partition(" ")
        cpus = None if quota == "max" else int(quota) / int(period or 100000)
        mem = facts.get("memory_max")
        memory = None if mem in (None, "", "max") else int(mem)
        swap_max = facts.get("swap_max")
        swap = None if swap_max in (None, "") else (2**63 if swap_max == "max" else int(swap_max))
    else:
        q, p = facts.get("cpu_quota_us", -1), facts.get("cpu_period_us", -1)
        cpus = q / p if q and q > 0 and p and p > 0 else None
        mem = facts.get("memory_limit")
        memory = int(mem) if mem and int(mem) < 2**62 else None
        memsw = facts.get("memsw_limit")
        swap = int(memsw) - memory if memsw and memory is not None else None
    if swap is None and host_swap == 0:
        swap = 0  # no swap accounting, but no swap on the host either: none to use
    return {"cpus": cpus, "memory": memory, "swap": swap, "cpuset": facts.get("cpuset") or None,
            "cgroup_version": facts.get("cgroup_version")}


def cpu_list(text: str | None) -> frozenset[int] | None:
    """'0-2,4' -> {0, 1, 2, 4}."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(cpus)


def check_limits(requested: dict, effective: dict, ref: str) -> None:
    """Every requested limit must be in force: CPUs, memory, no swap, the CPU set."""
    cpus, mem, swap = effective["cpus"], effective["memory"], effective.get("swap")
    hint = "does this engine support {} (gobuild doctor)?"
    if cpus is None or abs(cpus - requested["cpus"]) > 0.001:
        raise BenchError(f"{ref}: the container runs with {cpus} CPUs, not the "
                         f"{requested['cpus']:g} asked for: {hint.format('CPU quotas')}")
    if mem is None or abs(mem - requested["memory"]) >= LIMIT_SLACK:
        raise BenchError(f"{ref}: the container's memory limit is {mem}, not "
                         f"{requested['memory']}: {hint.format('memory limits')}")
    if swap != 0:
        amount = {None: "an unknown amount", 2**63: "without limit"}.get(swap, f"{swap} bytes")
        raise BenchError(f"{ref}: the container may swap ({amount}), "
                         f"so its memory limit is not what it says: {hint.format('swap limits (swapaccount=1)')}")
    want = cpu_list(requested.get("cpuset"))
    if want is not None and cpu_list(effective.get("cpuset")) != want:
        raise BenchError(f"{ref}: the container runs on CPUs {effective.get('cpuset')}, not "
                         f"{requested['cpuset']}: {hint.format('cpusets')}")


def warnings_for(host: dict, records: tuple[Record, ...], targets: list[Target],
                 busy_above: float | None = None) -> list[str]:
    """The run's warnings; busy_above is the load over which the host counts as busy: the
    --quiet-load in force, else the default quiet threshold (half the engine's CPUs)."""
    warns = []
    few: set[int] = set()
    threshold = quiet_threshold(host.get("engine_cpus", 1)) if busy_above is None else busy_above
    try:
        load1 = float(str(host.get("loadavg_start", "0")).split()[0])
        if load1 > threshold:
            warns.append(f"the host was busy at the start (load average {load1:.2f} on "
                         f"{host.get('engine_cpus')} CPUs, over {threshold:.2f}): times may be inflated")
    except ValueError:
        pass
    gov = host.get("governor")
    if gov and gov != "performance":
        warns.append(f"CPU governor is {gov!r}, not 'performance': frequency scaling adds noise")
    for t in targets:
        if t.emulated:
            warns.append(f"{t.label} ({t.platform}) ran under emulation: {output.EMULATION_NOTE.split(': ', 1)[1]}")
    for rec in records:
        cfg = rec.config
        metric = METRICS[cfg.suite][0][0]
        s = rec.summary(metric)
        if s and s.outliers:
            warns.append(f"{cfg.name} on {cfg.target.label}: {s.outliers} outlier(s) in {s.n} runs (MAD)")
        if s and s.n < 6:
            few.add(s.n)
        if rec.failed:
            kind = "OOM-killed" if any(f.oom for f in rec.failed) else "failed"
            warns.append(f"{cfg.label} on {cfg.target.label}: {len(rec.failed)} run(s) {kind}")
    if few:
        warns.append(f"{min(few)} measured run(s) give no 95% confidence interval of the median "
                     "(6 needed, 10 recommended): raise --runs")
    return warns


@dataclass(frozen=True, kw_only=True)
class QuietWait:
    """What --wait-quiet saw: the 1-minute load average before and after waiting."""

    threshold: float
    limit_s: float
    waited_s: float
    load_before: float | None
    load_after: float | None
    quiet: bool

    def warning(self) -> str | None:
        if self.quiet:
            return None
        if self.load_after is None:
            return ("--wait-quiet: the 1-minute load average could not be read, so measured without "
                    "waiting (for a local engine it is read from /proc/loadavg of the machine gobuild "
                    "runs on; the load of an engine's VM, as with Docker Desktop or colima, is not seen)")
        return (f"--wait-quiet: the host did not become quiet in {self.limit_s:g} s (1-minute load "
                f"average {self.load_after:.2f}, threshold {self.threshold:.2f}): times may be inflated")


def wait_quiet(read_load: Callable[[], float | None], threshold: float, limit: float,
               update: Callable[[str], None] = lambda text: None, *, poll: float = 5.0,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> QuietWait:
    """Wait until the 1-minute load average is below threshold, or give up after limit
    seconds. The kernel updates the figure every 5 s, so polling faster tells nothing new."""
    start = clock()
    before = load = read_load()
    while load is not None and load >= threshold:
        left = limit - (clock() - start)
        if left <= 0:
            break
        update(f"waiting for a quiet host: load {load:.2f}, threshold {threshold:.2f}, "
               f"giving up in {left:.0f} s")
        sleep(min(poll, left))
        load = read_load()
    return QuietWait(threshold=threshold, limit_s=limit, waited_s=round(clock() - start, 1),
                     load_before=before, load_after=load,
                     quiet=load is not None and load < threshold)


def local_load() -> float | None:
    """This machine's 1-minute load average."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def load_reader(engine_client: docker.DockerClient, bench: Bench, target: Target) -> Callable[[], float | None]:
    """Where the engine's host load comes from: this machine's /proc/loadavg when the engine
    listens on a local socket, else the runner probe in a container on the engine's host (the
    kernel's load average is not per container)."""
    if str(getattr(engine_client.api, "base_url", "")).startswith("http+docker://local"):
        return local_load

    def remote() -> float | None:
        try:
            return float(str(bench.facts(target).get("loadavg", "")).split()[0])
        except (ValueError, IndexError):
            return None
    return remote


Sink = Callable[[Results, dict[str, bytes]], None]


def run_bench(engine_client: docker.DockerClient, opts: BenchOptions, run_id: str,
              log: Progress | Callable[[str], None] | None = None, *,
              host_info: dict | None = None, sink: Sink | None = None) -> Results:
    """Run the bench; results (results.json, bench.txt, report.md, profiles/) are written into
    opts.output after every measured round and at the end, whatever ends the run: an error or
    Ctrl-C after the first measured round leaves what was measured, marked with its status.

    For a fleet (builder/fleet.py): host_info (label, endpoint) goes into results.json's host,
    and sink gets the results and profiles each time they are written, so that a host lost
    mid-run still hands over what it measured."""
    facts_engine = engine.facts(engine_client)
    requested = {"cpus": opts.cpus, "memory": opts.memory, "cpuset": opts.cpuset, "swap": 0}
    started = _now()
    bench = Bench(engine_client, opts, run_id, facts_engine.arch, log or Progress())
    bench.log(f"run id {run_id}: {len(opts.images)} configuration(s), suites {', '.join(opts.suites)}, "
              f"{opts.runs} runs after {opts.warmup} warm-up, limits {opts.cpus:g} CPUs / {opts.memory} bytes")
    targets = [bench.prepare(ref, i, label)
               for i, (ref, label) in enumerate(zip(opts.images, config_labels(opts.images)))]
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
        "quiet_wait": None, "load_at_round_start": [], "lockdown": dict(LOCKDOWN),
        **(host_info or {}),
    }
    cfgs = configs(opts, targets)
    extra_warnings = [output.MEMINFO_NOTE] if "memstats" in opts.suites else []
    results = Results(
        run_id=run_id, gobuild_version=__version__, started=started, finished=None,
        status="running", rounds_done=0, options=opts.summary(), host=host,
        limits={"requested": requested, "effective": effective}, targets=tuple(targets),
        records=tuple(Record(config=c) for c in cfgs),
    )
    profiles: dict[str, bytes] = {}

    def on_round(records: tuple[Record, ...], done: int, profs: dict[str, bytes],
                 loads: list[float | None]) -> None:
        nonlocal results
        profiles.update(profs)
        host["load_at_round_start"] = loads
        results = replace(results, records=records, rounds_done=done, host=dict(host),
                          warnings=tuple(warnings_for(host, records, targets, opts.quiet_load)
                                         + extra_warnings),
                          profiles=tuple(sorted(profiles)))
        output.write_all(opts.output, results, profiles)
        if sink is not None:
            sink(results, dict(profiles))

    status, error = "failed", None
    try:
        with contextlib.ExitStack() as stack:
            if "moddownload" in opts.suites:
                bench.proxies = stack.enter_context(modproxy.serving(bench, targets))
                results = replace(results, network=bench.proxies.facts())
            if opts.wait_quiet is not None:  # after the preparation: its tail is load too
                threshold = (quiet_threshold(facts_engine.cpus) if opts.quiet_load is None
                             else opts.quiet_load)
                with bench.progress.step(f"waiting up to {opts.wait_quiet:g} s for a 1-minute "
                                         f"load average below {threshold:.2f}") as update:
                    waited = wait_quiet(load_reader(engine_client, bench, targets[0]), threshold,
                                        opts.wait_quiet, update)
                host["quiet_wait"] = asdict(waited)
                if waited.load_after is not None:  # the load measuring starts with
                    host["loadavg_start"] = f"{waited.load_after:.2f}"
                if warning := waited.warning():
                    extra_warnings.append(warning)
                    bench.progress.warn(warning)
            rounds(bench, cfgs, opts, on_round)
        status = "complete"
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted by the user"
        raise
    except Exception as exc:
        error = str(getattr(exc, "message", None) or exc)
        raise
    finally:
        if results.rounds_done:  # only what was measured is worth keeping
            results = replace(results, status=status, finished=_now(), error=error)
            if sink is not None:
                sink(results, dict(profiles))
            try:
                output.write_all(opts.output, results, profiles)
            except OSError as exc:
                if status == "complete":
                    raise ConfigError(f"cannot write the results into {opts.output}: {exc}") from None
                bench.progress.warn(f"could not write the partial results into {opts.output}: {exc}")
    return results


def bench(inputs: Inputs, opts: BenchOptions, engine_client: docker.DockerClient | None = None,
          log: Progress | Callable[[str], None] | None = None) -> Results:
    """The whole `gobuild bench`: the images (opts.images, else the selected cells'), the limits
    checked against the engine, a run id, the run, and every container, volume and network of
    the run removed on every way out (Ctrl-C and SIGTERM included). Progress goes to log: a
    Progress (live on a terminal, plain lines, or nothing), or a function that takes lines."""
    check_output(opts.output)
    if opts.workload is not None and not (opts.workload / "go.mod").is_file():  # before the engine
        raise ConfigError(f"--workload {opts.workload}: no go.mod there; point at a Go module's root")
    engine_client = engine_client or engine.client()
    opts = replace(opts, images=choose_images(engine_client, inputs, opts.images))
    facts = engine.facts(engine_client)
    opts.check_engine(facts.cpus, facts.memory_bytes)
    run_id = engine.new_run_id()
    progress = log if isinstance(log, Progress) else Progress() if log is None else Progress.lines(log)
    with progress, engine.cleanup_on_exit(engine_client, run_id):
        return run_bench(engine_client, opts, run_id, progress)


def check_output(folder: Path) -> None:
    """Refuse an output folder that cannot be written before anything runs (and without
    creating it: a bench that fails early leaves nothing behind)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a folder" if not existing.is_dir() else "is not writable"
        raise ConfigError(f"--output {folder}: {existing} {what}: choose another folder")


def cleanup(older_than: float | None = None) -> list[str]:
    """`gobuild bench --cleanup`: what gobuild runs that are no longer running left behind."""
    return engine.remove_stale(engine.client(), older_than)


def default_output() -> Path:
    return Path("results") / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
