"""`gobuild fit`: the smallest memory limit under which a command (go build ./...) succeeds in
one cell, at a given CPU count, and what the usual remedies buy below it.

The search is a bisection over the container's memory limit (swap off) in log space, from
--max down to --min: a probe that the kernel's OOM killer ends (by any sign, engine.oom_reasons)
did not fit, a probe that succeeds did, and a probe that fails otherwise stops everything with
its output (a broken build is not a memory question). It stops when the bracket is within
STOP_RATIO or STOP_BYTES, or after --max-runs probes. The remedies (GOFLAGS=-p=1, GOMEMLIMIT,
GOGC) are then tried first at the largest limit that did not fit, and bisected further down
when they fit there.

Every probe starts from the same cache state: a cold build cache (GOCACHE in the container's
own /tmp, gone with it) and a warm module cache (downloaded once, before the search, into a
volume of the run), with no network. GOMAXPROCS is set to the CPU count, so that the go
command runs as many compiles at once as it would on a board with that many CPUs (before Go
1.25 it follows the host's CPUs, not the container's limit).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import docker

from . import engine
from .bench import workload
from .errors import BenchError, ConfigError
from .inputs import Inputs
from .workenv import EnvOptions, Log, forwarded, log_stderr, targets

MiB, GiB = 2**20, 2**30
MOUNT = "/gobuild"
STOP_RATIO = 1.10  # the bracket (largest that failed, smallest that fit) is this close
STOP_BYTES = 16 * MiB
CACHE_STATE = ("every probe starts from a cold build cache and a warm module cache "
               "(downloaded once before the search), with no network")
BOARDS = (512 * MiB, 1 * GiB, 2 * GiB, 4 * GiB, 8 * GiB, 16 * GiB, 32 * GiB)
EMBEDDED = {"modules": 20, "packages": 100}  # the bench's default workload
PREP_TIMEOUT = 3600

Outcome = Literal["ok", "oom", "timeout", "failed"]
# key -> the setting as a user would write it
SETTINGS = {"as-is": "as is", "p1": "GOFLAGS=-p=1", "gomemlimit": "GOMEMLIMIT=80% of the limit",
            "gogc": "GOGC=50"}
REMEDIES = ("p1", "gomemlimit", "gogc")


def setting_env(key: str, limit: int, goflags: str) -> dict[str, str]:
    """The variables a setting adds to a probe at a limit (pure). GOMEMLIMIT is each Go
    process's own soft limit, so at 80% of the container's it leaves room for the go command
    and for the compiles running beside one another."""
    if key == "p1":
        return {"GOFLAGS": f"{goflags} -p=1".strip()}
    if key == "gomemlimit":
        return {"GOMEMLIMIT": f"{int(limit * 0.8) // MiB}MiB"}
    if key == "gogc":
        return {"GOGC": "50"}
    return {}


@dataclass(frozen=True, kw_only=True)
class Probe:
    setting: str
    limit: int
    outcome: Outcome
    seconds: float
    exit_code: int
    reasons: tuple[str, ...] = ()  # the OOM signs seen
    output: str = ""  # the end of a failed probe's output

    @property
    def fits(self) -> bool:
        return self.outcome == "ok"

    def as_json(self) -> dict:
        return {"setting": self.setting, "limit": self.limit, "outcome": self.outcome,
                "seconds": round(self.seconds, 3), "exit_code": self.exit_code,
                "oom_reasons": list(self.reasons)}


def round_mib(n: float) -> int:
    return max(1, round(n / MiB)) * MiB


def next_limit(lo: int, hi: int) -> int | None:
    """The next limit to try between lo (failed, or the floor) and hi (fitted): their
    geometric middle, in whole MiB; None when the bracket is close enough (pure)."""
    if hi <= lo or hi / lo <= STOP_RATIO or hi - lo <= STOP_BYTES:
        return None
    mid = round_mib(math.sqrt(lo * hi))
    return mid if lo < mid < hi else None


def search(probe: Callable[[int], Probe], *, start: int, floor: int, runs: int) -> list[Probe]:
    """Probe start, then bisect between the largest limit that did not fit (or floor) and the
    smallest that did, for at most runs probes. Stops at once when start does not fit, or at a
    probe that failed for another reason than memory (the caller reports it)."""
    probes: list[Probe] = []
    lo, hi, limit = floor, None, start
    while len(probes) < runs:
        done = probe(limit)
        probes.append(done)
        if done.outcome == "failed":
            break
        if done.fits:
            hi = limit
        else:
            lo = max(lo, limit)
        if hi is None:
            break
        limit = next_limit(lo, hi)
        if limit is None and lo == floor and hi > floor and not any(p.limit == floor for p in probes):
            limit = floor  # nothing failed yet, close to the floor: try it, to see a failure
        if limit is None:
            break
    return probes


@dataclass(frozen=True, kw_only=True)
class SettingResult:
    key: str
    smallest_ok: int | None  # the smallest limit that worked; None: none did
    seconds: float | None  # wall time at that limit
    largest_failed: int | None  # the largest limit below it that did not fit
    tried_from: int
    runs: int

    @property
    def label(self) -> str:
        return SETTINGS[self.key]

    def as_json(self) -> dict:
        return {"setting": self.label, "key": self.key, "smallest_ok": self.smallest_ok,
                "seconds": None if self.seconds is None else round(self.seconds, 3),
                "largest_failed": self.largest_failed, "tried_from": self.tried_from,
                "runs": self.runs}


def summarize(key: str, probes: list[Probe]) -> SettingResult:
    """A setting's result from its probes (pure)."""
    ok = [p for p in probes if p.fits]
    best = min(ok, key=lambda p: p.limit) if ok else None
    below = [p.limit for p in probes if not p.fits and (best is None or p.limit < best.limit)]
    return SettingResult(key=key, smallest_ok=best.limit if best else None,
                         seconds=best.seconds if best else None,
                         largest_failed=max(below) if below else None,
                         tried_from=probes[0].limit if probes else 0, runs=len(probes))


def board(limit: int) -> int | None:
    return next((b for b in BOARDS if b >= limit), None)


def size_text(n: int) -> str:
    return f"{n // GiB} GB" if n >= GiB else f"{n // MiB} MB"


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MiB:.0f} MiB"


def recommend(settings: tuple[SettingResult, ...]) -> str:
    """One line: the smallest board the command fits, with which setting, at what cost in
    time (pure). A board's size is the build's need alone: its OS needs room too."""
    base = settings[0]
    if base.smallest_ok is None:
        return "does not fit under the largest limit tried: raise --max"
    base_board = board(base.smallest_ok)
    alone = (f"the build alone needs {mib(base.smallest_ok)}; leave room for the board's OS")
    if base_board is None:
        return f"needs {mib(base.smallest_ok)}: more than any board listed"
    better = [s for s in settings[1:] if s.smallest_ok is not None
              and board(s.smallest_ok) is not None and board(s.smallest_ok) < base_board]
    if not better:
        tried = ", ".join(s.label for s in settings[1:]) or "no remedy tried"
        return (f"fits a {size_text(base_board)} board as is ({alone}); "
                f"{tried}: none gets it onto a smaller board")
    best = min(better, key=lambda s: (board(s.smallest_ok), s.seconds or 0))
    ratio = (best.seconds or 0) / base.seconds if base.seconds else float("nan")
    pace = f"{ratio:.1f}x {'slower' if ratio >= 1 else 'faster'}"
    return (f"fits a {size_text(board(best.smallest_ok))} board with {best.label} "
            f"(build {pace}, {mib(best.smallest_ok)}); as is it needs a "
            f"{size_text(base_board)} board ({alone})")


@dataclass(frozen=True, kw_only=True)
class FitOptions:
    command: tuple[str, ...]
    workload: Path | None  # None: the embedded workload
    cpus: float | None = None  # None: the engine's CPUs
    floor: int = 64 * MiB
    ceiling: int | None = None  # None: 8 GiB, or the engine's memory when less
    max_runs: int = 10
    remedies: tuple[str, ...] = REMEDIES
    remedy_runs: int = 4
    timeout: float = 1800
    images: EnvOptions = field(default_factory=EnvOptions)


@dataclass(frozen=True, kw_only=True)
class FitResult:
    run_id: str  # the labels of its containers and volume
    cell: str
    image: str
    platform: str
    emulated: bool
    cpus: float
    gomaxprocs: int
    command: tuple[str, ...]
    subject: str
    floor: int
    ceiling: int
    probes: tuple[Probe, ...]
    settings: tuple[SettingResult, ...]

    @property
    def recommendation(self) -> str:
        return recommend(self.settings)

    @property
    def search_runs(self) -> int:
        return self.settings[0].runs

    def table(self) -> str:
        emulated = ", EMULATED (qemu): not the figures of real hardware" if self.emulated else ""
        lines = [
            f"cell {self.cell} ({self.image}){emulated}",
            (f"{self.cpus:g} CPUs (GOMAXPROCS={self.gomaxprocs}); subject: {self.subject}; "
             f"command: {' '.join(self.command)}"),
            f"caches: {CACHE_STATE}",
            (f"search: {mib(self.floor)} to {mib(self.ceiling)}, {self.search_runs} run(s); "
             f"remedies: {len(self.probes) - self.search_runs} run(s)"),
            "",
            (f"{'setting':<28} {'smallest limit that worked':>26} {'time at that limit':>19} "
             f"{'largest that did not':>21}"),
        ]
        for s in self.settings:
            worked = mib(s.smallest_ok) if s.smallest_ok else f"none from {mib(s.tried_from)}"
            took = "-" if s.seconds is None else f"{s.seconds:.1f} s"
            lines.append(f"{s.label:<28} {worked:>26} {took:>19} {mib(s.largest_failed):>21}")
        lines += ["", self.recommendation]
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {"schema": "gobuild.fit/v1", "run_id": self.run_id, "cell": self.cell, "image": self.image,
                "platform": self.platform, "emulated": self.emulated, "cpus": self.cpus,
                "gomaxprocs": self.gomaxprocs, "command": list(self.command),
                "subject": self.subject, "cache_state": CACHE_STATE, "floor": self.floor,
                "ceiling": self.ceiling, "search_runs": self.search_runs,
                "probes": [p.as_json() for p in self.probes],
                "settings": [s.as_json() for s in self.settings],
                "recommendation": self.recommendation}


PREP = """set -eu
export GOCACHE=/tmp/prepcache GOMODCACHE={m}/modcache GOTOOLCHAIN=local HOME=/tmp
cd {m}/work
{download}
go list -deps -test ./... >/dev/null
chmod -R a+rwX {m}
echo GOBUILD-PREPARED
"""
EMBEDDED_ENV = {"GOFLAGS": "-mod=mod", "GOSUMDB": "off"}


def prep_script(embedded: bool) -> str:
    download = (f"export GOPROXY=file://{MOUNT}/proxy GOFLAGS=-mod=mod GOSUMDB=off\n"
                "go mod download all" if embedded else "go mod download")
    return PREP.format(m=MOUNT, download=download)


def outcome_of(done: engine.Finished) -> tuple[Outcome, tuple[str, ...]]:
    """How a probe ended (pure): an OOM by any sign the engine gives, or a Go process that
    could not get memory; else a timeout, a success or another failure."""
    reasons = engine.oom_reasons(oom_killed=done.oom_killed, oom_events=done.oom_events,
                                 exit_code=done.exit_code)
    if "runtime: out of memory" in done.output:
        reasons = (*reasons, "a Go process ran out of memory")
    if reasons and done.exit_code != 0:
        return "oom", reasons
    if done.timed_out:
        return "timeout", ()
    return ("ok" if done.exit_code == 0 else "failed"), ()


class Prober:
    """Runs one probe: a fresh container of the cell at a memory limit with a setting."""

    def __init__(self, engine_client: docker.DockerClient, *, image: str, platform: str,
                 command: tuple[str, ...], volume: str, cpus: float, gomaxprocs: int,
                 base_env: dict[str, str], timeout: float, run_id: str, log: Log):
        self.client, self.image, self.platform, self.command = engine_client, image, platform, command
        self.volume, self.cpus, self.gomaxprocs = volume, cpus, gomaxprocs
        self.base_env, self.timeout, self.run_id, self.log = base_env, timeout, run_id, log
        self.count = 0

    def spec(self, key: str, limit: int) -> engine.Spec:
        env = {**self.base_env, "GOCACHE": "/tmp/gocache", "GOMODCACHE": f"{MOUNT}/modcache",
               "GOPROXY": "off", "GOTOOLCHAIN": "local", "HOME": "/tmp",
               "GOMAXPROCS": str(self.gomaxprocs)}
        env.update(setting_env(key, limit, env.get("GOFLAGS", "")))
        return engine.Spec(image=self.image, command=self.command, role="fit",
                           platform=self.platform, environment=env,
                           limits=engine.Limits(cpus=self.cpus, memory=limit),
                           volumes={self.volume: MOUNT}, user="0",
                           working_dir=f"{MOUNT}/work", timeout=self.timeout)

    def __call__(self, key: str) -> Callable[[int], Probe]:
        def probe(limit: int) -> Probe:
            self.count += 1
            start = time.monotonic()
            done = engine.run(self.client, self.spec(key, limit), self.run_id)
            took = time.monotonic() - start
            outcome, reasons = outcome_of(done)
            self.log(f"probe {self.count}: {SETTINGS[key]} at {mib(limit)}: "
                     f"{outcome.upper() if outcome != 'ok' else 'ok'} in {took:.1f} s")
            return Probe(setting=key, limit=limit, outcome=outcome, seconds=took,
                         exit_code=done.exit_code, reasons=reasons,
                         output=done.output[-4000:] if outcome == "failed" else "")
        return probe


def subject_files(workload_path: Path | None) -> tuple[dict[str, bytes], str]:
    if workload_path is None:
        files = workload.module_graph(EMBEDDED["modules"], EMBEDDED["packages"])
        return files, (f"the embedded workload ({EMBEDDED['modules']} modules, "
                       f"{EMBEDDED['packages']} packages)")
    return workload.user_workload(workload_path), f"the module in {workload_path.resolve()}"


def check_failed(probes: list[Probe], command: tuple[str, ...], log: Log) -> None:
    last = probes[-1] if probes else None
    if last is not None and last.outcome == "failed":
        log(f"output of the failed probe:\n{last.output.rstrip()}")
        raise BenchError(f"{' '.join(command)} failed at {mib(last.limit)} with exit "
                         f"{last.exit_code}, not for lack of memory (its output is above): "
                         "fix the build, then fit again")


def run_fit(engine_client: docker.DockerClient, prober: Prober, opts: FitOptions, ceiling: int,
            log: Log) -> tuple[list[Probe], tuple[SettingResult, ...]]:
    """The search, then the remedies at the largest limit that did not fit."""
    probes = search(prober("as-is"), start=ceiling, floor=opts.floor, runs=opts.max_runs)
    check_failed(probes, opts.command, log)
    base = summarize("as-is", probes)
    if base.smallest_ok is None:
        how = probes[0].outcome.upper() if probes else "not run"
        # A timeout at the ceiling is not a lack of memory: more memory would not help.
        fix = "raise --timeout" if how == "TIMEOUT" else "raise --max"
        raise BenchError(f"{' '.join(opts.command)} does not fit in {mib(ceiling)} ({how}): {fix}")
    settings = [base]
    if base.largest_failed is None:
        log(f"fits at {mib(base.smallest_ok)}, with nothing below it failing down to "
            f"{mib(opts.floor)}: no remedy needed (lower --min to look further)")
        return probes, tuple(settings)
    for key in opts.remedies:
        tried = search(prober(key), start=base.largest_failed, floor=opts.floor,
                       runs=opts.remedy_runs)
        check_failed(tried, opts.command, log)
        probes += tried
        settings.append(summarize(key, tried))
    return probes, tuple(settings)


def fit(inputs: Inputs, opts: FitOptions, engine_client: docker.DockerClient | None = None,
        log: Log = log_stderr) -> FitResult:
    """`gobuild fit`: one cell, its image found or built, a prepared workload, the search."""
    if opts.workload is not None and not (opts.workload / "go.mod").is_file():
        raise ConfigError(f"--workload {opts.workload}: no go.mod there; point at a Go module's root")
    engine_client = engine_client or engine.client()
    facts = engine.facts(engine_client)
    cpus = opts.cpus or float(facts.cpus or 1)
    if facts.cpus and cpus > facts.cpus:
        raise ConfigError(f"--cpus {cpus:g} is more than the engine's {facts.cpus} CPUs: "
                          f"ask for at most {facts.cpus}")
    ceiling = opts.ceiling or min(8 * GiB, facts.memory_bytes or 8 * GiB)
    if facts.memory_bytes and ceiling > facts.memory_bytes:
        raise ConfigError(f"--max {mib(ceiling)} is more than the engine's {mib(facts.memory_bytes)}")
    if opts.floor >= ceiling:
        raise ConfigError(f"--min {mib(opts.floor)} is not below --max {mib(ceiling)}")
    (target,) = targets(engine_client, inputs, opts.images, "0:0", log, single="gobuild fit")
    files, subject = subject_files(opts.workload)
    embedded = opts.workload is None
    run_id = engine.new_run_id()
    with engine.cleanup_on_exit(engine_client, run_id):
        volume = engine.create_volume(engine_client, f"gobuild-fit-{run_id}", run_id)
        log(f"preparing {subject} in {target.image}"
            f"{' (emulated: qemu)' if target.emulated else ''}: module cache, no build cache")
        user_env = forwarded(os.environ)
        prep = engine.Spec(image=target.image, command=("sh", "-c", prep_script(embedded)),
                           role="fit-prepare", platform=target.cell.platform,
                           network=not embedded, environment={} if embedded else user_env,
                           volumes={volume: MOUNT}, user="0", working_dir=MOUNT,
                           timeout=PREP_TIMEOUT)
        done = engine.run(engine_client, prep, run_id, files={MOUNT: workload.tarball(files)})
        if done.exit_code != 0 or "GOBUILD-PREPARED" not in done.output:
            raise BenchError(f"preparing {subject} failed ({done.tail()}): does "
                             "'go list -deps -test ./...' work in it?")
        gomaxprocs = max(1, math.ceil(cpus))
        log(f"{CACHE_STATE}; {cpus:g} CPUs, GOMAXPROCS={gomaxprocs}")
        prober = Prober(engine_client, image=target.image, platform=target.cell.platform,
                        command=opts.command, volume=volume, cpus=cpus, gomaxprocs=gomaxprocs,
                        base_env=EMBEDDED_ENV if embedded else user_env, timeout=opts.timeout,
                        run_id=run_id, log=log)
        probes, settings = run_fit(engine_client, prober, opts, ceiling, log)
    return FitResult(run_id=run_id, cell=target.cell.id, image=target.image, platform=target.cell.platform,
                     emulated=target.emulated, cpus=cpus, gomaxprocs=gomaxprocs,
                     command=opts.command, subject=subject, floor=opts.floor, ceiling=ceiling,
                     probes=tuple(probes), settings=settings)
