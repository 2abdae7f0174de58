"""Running the suites: each measured process in its own container under the requested cgroup
limits, configurations interleaved round by round and shuffled within a round.

Per image, a labelled volume mounted at /gobuild holds the workload, its module cache and the
probe programs, which a preparation container builds with the toolchain under test. Measured
containers have no network (the moddownload suite's: only the run's isolated network with its
module proxy, see modproxy.py) and a fresh GOCACHE (their own /tmp). Every measured command runs
under the runner probe, which reads the cgroup's counters (peaks, OOM kills) from inside.
"""
from __future__ import annotations

import json
import posixpath
import random
import shlex
import time
from collections.abc import Callable
from dataclasses import replace

import docker

from .. import engine
from ..errors import BenchError, ConfigError
from . import benchfmt, modproxy, workload
from .options import BenchOptions
from .progress import Progress
from .results import Config, Record, Sample, Target, folder_name

MOUNT = "/gobuild"
RUNNER = f"{MOUNT}/bin/runner"
TEST_BINARY = f"{MOUNT}/bin/workload.test"  # go test -c of --bench-package, built once
ENV = {
    "GOCACHE": "/tmp/gocache", "GOMODCACHE": f"{MOUNT}/modcache", "GOPROXY": "off",
    # -mod=readonly: the workload is read-only to measured runs (the preparation completed go.sum)
    "GOFLAGS": "-mod=readonly", "GOSUMDB": "off", "GOTOOLCHAIN": "local", "HOME": "/tmp",
}
# The moddownload suite's warm module cache: the one thing a measured run must write that
# outlives it, so on a volume of its own (the bench volume is read-only to measured runs).
WARM_MOUNT = modproxy.WARM_MOUNT
# What a measured run is allowed, recorded in results.json's host facts ("lockdown"): runs from
# before it lack the key. GOCACHE in a tmpfs is charged to the cgroup and cannot be reclaimed
# (no swap), so the cgroup peaks include the build cache: compare warns across the change.
LOCKDOWN = {"gocache": "tmpfs", "root": "read-only", "bench_volume": "read-only",
            "capabilities": "none", "user": "non-root", "network": "none"}
TOOLING = {
    "go-list-deps": ["go", "list", "-deps", "./..."],
    "go-mod-graph": ["go", "mod", "graph"],
    "go-list-m-all": ["go", "list", "-m", "all"],
}
MEMORY_PHASES = {
    "go-env": ["go", "env"],
    "go-list-m-all": ["go", "list", "-m", "all"],
    "go-build": ["go", "build", "-o", "/dev/null", "./..."],  # nothing written: the volume is read-only
    "go-test-binary": [TEST_BINARY, "-test.run", "^$", "-test.bench", ".",
                       "-test.benchtime", "200x"],
}
# The gotest suite's profiles: written to a volume of their own (the output volume), since the
# bench volume is read-only to measured runs and a tmpfs /tmp is gone when the container stops,
# before the profiles can be copied out.
OUT_MOUNT = "/gobuild-out"
PROFILE_DIR = OUT_MOUNT
PROFILES = ("cpu.pprof", "mem.pprof")
PREP_TIMEOUT, FACTS_TIMEOUT, RUN_TIMEOUT = 3600, 600, 7200
PROBES = ("runner", "sched", "memstats", "lockcheck")  # probe/<name>, built into /gobuild/bin/<name>
MODDOWNLOAD_PROBES = ("modproxy", "netcheck")
WORKLOAD_SUITES = frozenset({"compile", "memory", "tooling", "gotest", "moddownload"})  # go on the workload
TEST_BINARY_SUITES = frozenset({"memory", "gotest"})  # run the go test -c binary

PREP = """set -eu
export GOCACHE={m}/prepcache GOMODCACHE={m}/modcache GOTOOLCHAIN=local GOFLAGS=-mod=mod GOSUMDB=off
cd {m}/probe && GOPROXY=off go build -o {m}/bin/ {probes}
cd {m}/work
{workload}
rm -rf {m}/prepcache
mkdir -p {m}/modcache/cache/download
echo "GOBUILD-ZIPS $(find {m}/modcache/cache/download -name '*.zip' | wc -l)"
chmod -R a+rwX {m}
if [ -d {warm} ]; then chmod a+rwX {warm}; fi
if [ -d {out} ]; then chmod a+rwX {out}; fi
echo GOBUILD-PREPARED
"""


def prep_script(opts: BenchOptions) -> str:
    """The preparation's shell script; what the user gave reaches it quoted."""
    download = ("go mod download" if opts.workload else
                f"GOPROXY=file://{MOUNT}/proxy go mod download all")
    # the module proxy's net/http is the costliest thing to compile: only when it is needed
    probes = PROBES + (MODDOWNLOAD_PROBES if "moddownload" in opts.suites else ())
    # sched and memstats run only their probes: the workload's modules and test binary only
    # for the suites that use them (most of a preparation's time)
    suites = set(opts.suites)
    workload_lines = ([download, "go list -deps ./... >/dev/null", "go list -m all >/dev/null",
                       "go mod graph >/dev/null"] if suites & WORKLOAD_SUITES else [])
    if suites & TEST_BINARY_SUITES:
        workload_lines.append(f"go test -c -o {MOUNT}/bin/workload.test {shlex.quote(opts.bench_package)}")
    return PREP.format(m=MOUNT, warm=WARM_MOUNT, out=OUT_MOUNT, workload="\n".join(workload_lines) or ":",
                       probes=" ".join(f"./{p}" for p in probes))


def _line(output: str, prefix: str) -> dict | None:
    for line in reversed(output.splitlines()):
        if line.startswith(prefix + " "):
            try:
                return json.loads(line[len(prefix) + 1:])
            except ValueError:
                return None
    return None


def gotest_lines(output: str) -> tuple[str | None, list[str]]:
    """The `pkg:` line and the benchmark result lines of go test's output."""
    pkg, lines = None, []
    for raw in output.splitlines():
        line = raw.strip()
        if line.startswith("pkg: ") and pkg is None:
            pkg = line
        elif line.startswith("Benchmark"):
            try:
                if benchfmt.parse(line):
                    lines.append(line)
            except ValueError:
                pass  # a benchmark's own log line, not a result
    return pkg, lines


class Bench:
    """Holds the engine, the run id and the options; every container it makes goes through the
    engine's one lifecycle and carries the run's labels, and the caller removes what is left
    (engine.cleanup_on_exit) on every way out."""

    def __init__(self, engine_client: docker.DockerClient, opts: BenchOptions, run_id: str,
                 engine_arch: str, log: Progress | Callable[[str], None]):
        self.client, self.opts, self.run_id = engine_client, opts, run_id
        self.engine_arch = engine_arch
        # a Progress, or a plain function that takes lines (benchmarks/ scripts pass one)
        self.progress = log if isinstance(log, Progress) else Progress.lines(log)
        self.log = self.progress
        self.proxies: modproxy.Proxies | None = None  # set while the moddownload suite runs

    def spec(self, target: Target, command: list[str], *, role: str, limits: bool = True,
              env: dict | None = None, user: str | None = None, network: bool | str = False,
              timeout: float = RUN_TIMEOUT, working_dir: str = f"{MOUNT}/work",
              warm_cache: bool = False, output: bool = False) -> engine.Spec:
        """A container of target's bench volume; limits=True is a measured run (or the facts
        run): locked down, the bench volume read-only; warm_cache mounts the moddownload suite's
        warm-cache volume (writable) too, output the gotest suite's output volume (writable)."""
        o = self.opts
        volumes = {target.volume: MOUNT}
        if warm_cache:
            volumes[warm_volume(target)] = WARM_MOUNT
        if output:
            volumes[out_volume(target)] = OUT_MOUNT
        spec = engine.Spec(
            image=target.ref, command=tuple(command), role=role, platform=target.platform,
            network=network, environment={**ENV, **(env or {})},
            limits=engine.Limits(cpus=o.cpus, memory=o.memory, cpuset=o.cpuset) if limits
            else engine.Limits(),
            volumes=volumes, user=user, working_dir=working_dir, timeout=timeout,
            # measured code cannot change the workload, the module cache or the runner probe
            read_only_mounts=(MOUNT,) if limits else (),
        )
        # Measured runs (and the facts run, under the same limits) run other people's code:
        # locked down, with /tmp (GOCACHE, GOTMPDIR, HOME) as their only scratch. The
        # preparation (root, a network for a user's workload) is not measured.
        return engine.locked_down(spec) if limits else spec

    def prepare(self, ref: str, index: int, label: str = "") -> Target:
        info = engine.image_info(self.client, ref)
        arch = info.get("Architecture", "?")
        labels = (info.get("Config") or {}).get("Labels") or {}
        version = labels.get("io.gobuild.go.version") or labels.get("org.opencontainers.image.version") or "?"
        volume = engine.create_volume(self.client, f"gobuild-bench-{self.run_id}-{index}", self.run_id)
        digests = info.get("RepoDigests") or []
        target = Target(ref=ref, image_id=info["Id"], digest=digests[0] if digests else None,
                        platform=f"linux/{arch}" + (f"/{info['Variant']}" if info.get("Variant") else ""),
                        arch=arch, go_version=version,
                        emulated=arch != self.engine_arch, volume=volume, config=label)
        o = self.opts
        files = workload.user_workload(o.workload) if o.workload else workload.module_graph(
            o.workload_modules, o.workload_packages)
        files.update(workload.probe_files())
        script, network = prep_script(o), o.workload is not None
        warm = "moddownload" in o.suites
        if warm:
            engine.create_volume(self.client, warm_volume(target), self.run_id)
        out = "gotest" in o.suites
        if out:
            engine.create_volume(self.client, out_volume(target), self.run_id)
        spec = self.spec(target, ["sh", "-c", script], role="prepare", limits=False, user="0",
                          network=network, timeout=PREP_TIMEOUT, working_dir=MOUNT,
                          warm_cache=warm, output=out)
        with self.progress.step(f"preparing {target.label} ({target.platform}"
                                f"{', emulated' if target.emulated else ''}): workload, module "
                                "cache, probes"):
            start = time.monotonic()
            done = engine.run(self.client, spec, self.run_id, files={MOUNT: workload.tarball(files)})
        if done.exit_code != 0 or "GOBUILD-PREPARED" not in done.output:
            raise BenchError(f"preparing {ref} failed ({done.tail()}): does the workload build, "
                             f"and does --bench-package {o.bench_package} name a package with tests?")
        if o.workload and "moddownload" in o.suites and not _line(done.output, "GOBUILD-ZIPS"):
            raise ConfigError(f"--suite moddownload: the module in {o.workload} has no dependencies "
                              "to download: bench it without moddownload, or give a module that "
                              "requires others")
        return replace(target, prepare_s=round(time.monotonic() - start, 1))

    def facts(self, target: Target) -> dict:
        """Limits in force and host facts, as seen from inside a limited container."""
        done = engine.run(self.client, self.spec(target, [RUNNER, "-facts"], role="facts",
                                                  timeout=FACTS_TIMEOUT), self.run_id)
        facts = _line(done.output, "GOBUILD-FACTS")
        if done.exit_code != 0 or facts is None:
            raise BenchError(f"cannot read the limits inside {target.ref}: {done.tail()}")
        return facts

    def sample(self, cfg: Config, keep_profiles: bool = False) -> tuple[Sample, dict[str, bytes]]:
        """Run one configuration once in a fresh container; returns the sample and, for the
        gotest suite when asked, its profiles."""
        env = {"GOMAXPROCS": str(cfg.gomaxprocs)} if cfg.gomaxprocs else {}
        env.update(cfg.env)
        network: bool | str = False
        if cfg.suite == "moddownload":  # the run's isolated network, and its proxy only
            if self.proxies is None:
                raise BenchError("moddownload: no module proxy runs (a bug: run_bench starts it)")
            env["GOPROXY"] = self.proxies.urls[cfg.target.label]
            network = self.proxies.network
        quiet = cfg.result_tag == "GOBUILD-RESULT" and cfg.suite != "gotest"
        argv = [RUNNER, *(["-quiet"] if quiet else []), *cfg.argv]
        profiles: dict[str, bytes] = {}
        spec = self.spec(cfg.target, argv, role="run", env=env, network=network,
                          working_dir=cfg.working_dir or f"{MOUNT}/work", timeout=self.opts.run_timeout,
                          warm_cache=cfg.suite == "moddownload", output=cfg.suite == "gotest")
        served = (self.proxies.zips_served(cfg.target.label)
                  if self.proxies and cfg.suite == "moddownload" else None)
        with engine.Container(self.client, spec, self.run_id) as ctr:
            done = ctr.run()
            figures = _line(done.output, "GOBUILD-RESULT") or {}
            if not done.oom_events and (figures.get("exit_code") or figures.get("signal")):
                # the probe exits 0 after its command failed: ask the engine about OOM too
                done = replace(done, oom_events=ctr.oom_events())
            sample = to_sample(cfg, done, self.opts.memory)
            if keep_profiles and not sample.failed:
                for name in PROFILES:
                    profiles.update({f"{folder_name(cfg.target.label)}/{name}": data for data in
                                     ctr.fetch(f"{PROFILE_DIR}/{name}").values()})
        if served is not None and self.proxies:  # what this run fetched through the proxy
            zips = self.proxies.zips_served(cfg.target.label) - served
            sample = replace(sample, extra={**sample.extra, "proxy_zips": zips})
        return sample, profiles


def to_sample(cfg: Config, done: engine.Finished, memory_limit: int) -> Sample:
    """A finished container's output as a sample (pure): the figures of the probe's line, or
    a failed run with the reason; OOM by every sign the engine and the cgroup give."""
    figures = _line(done.output, "GOBUILD-RESULT") or {}
    data = figures if cfg.result_tag == "GOBUILD-RESULT" else _line(done.output, cfg.result_tag)
    killed = figures.get("signal") == "killed"
    exit_code = figures.get("exit_code", done.exit_code) if figures else done.exit_code
    reasons = engine.oom_reasons(
        oom_killed=done.oom_killed, oom_events=done.oom_events,
        exit_code=137 if killed else done.exit_code, counter_delta=figures.get("oom_kills"),
        peak=figures.get("cgroup_peak_bytes"), limit=memory_limit,
    )
    if reasons:
        return Sample(exit_code=exit_code, oom=True, oom_reasons=reasons)
    if done.timed_out:  # killed by engine.Container.run at the spec's timeout (--run-timeout)
        return Sample(exit_code=-1, error=f"timed out: killed after --run-timeout; {done.tail()}")
    if data is None or exit_code != 0:
        said = "\n".join(ln for ln in done.output.splitlines() if not ln.startswith("GOBUILD-"))
        return Sample(exit_code=exit_code or done.exit_code or -1,
                      error=said.strip()[-300:] or "no output")
    values = {k: v for k, v in data.items() if isinstance(v, (int, float))
              and k not in ("exit_code", "load1_start")}
    if cfg.result_tag != "GOBUILD-RESULT":  # the probe's own figures, timed by the runner
        values["wall_ns"] = figures.get("wall_ns", -1)
    extra: dict = {"argv": list(cfg.argv)}
    if isinstance(figures.get("load1_start"), (int, float)) and figures["load1_start"] >= 0:
        extra["load1_start"] = figures["load1_start"]  # the host's load: a fact, not a metric
    if figures.get("signal"):
        extra["signal"] = figures["signal"]
    if cfg.suite == "gotest":
        pkg, lines = gotest_lines(done.output)
        if not lines:
            return Sample(exit_code=exit_code, error=f"go test printed no benchmark: {done.tail()}")
        extra.update(pkg=pkg, benchmarks=lines)
    return Sample(values=values, exit_code=0, extra=extra)


def warm_volume(target: Target) -> str:
    """The moddownload suite's warm-cache volume of target (made with the run's labels)."""
    return f"{target.volume}-warm"


def out_volume(target: Target) -> str:
    """The gotest suite's output volume of target, for its profiles (made with the run's labels)."""
    return f"{target.volume}-out"


def package_dir(opts: BenchOptions) -> str | None:
    """Where a test binary of --bench-package runs, as go test runs it: in the package's own
    folder (so that it finds its testdata), when the package is given as a relative path."""
    pkg = opts.bench_package
    if pkg == "." or pkg.startswith("./"):
        return posixpath.normpath(f"{MOUNT}/work/{pkg}")
    return None


def configs(opts: BenchOptions, targets: list[Target]) -> list[Config]:
    out = []
    first = opts.gomaxprocs[0]
    for t in targets:
        if "compile" in opts.suites:
            what = "./..." if opts.compile_target == "workload" else "std"
            for g in opts.gomaxprocs:
                out.append(Config(suite="compile", name=f"GoBuildA/pkg={opts.compile_target}",
                                  # -o /dev/null: a lone main package's binary is not written
                                  target=t, argv=("go", "build", "-a", "-o", "/dev/null", what),
                                  gomaxprocs=g))
        if "memory" in opts.suites:
            for phase, argv in MEMORY_PHASES.items():
                out.append(Config(suite="memory", name=f"GoMemory/phase={phase}", target=t,
                                  argv=tuple(argv), gomaxprocs=first,
                                  working_dir=package_dir(opts) if argv[0] == TEST_BINARY else None))
        if "sched" in opts.suites:
            for g in opts.gomaxprocs:
                out.append(Config(suite="sched", name="GoroutineCreate", target=t,
                                  argv=(f"{MOUNT}/bin/sched", "-n", "20000"), gomaxprocs=g,
                                  result_tag="GOBUILD-SCHED"))
        if "tooling" in opts.suites:
            for name, argv in TOOLING.items():
                out.append(Config(suite="tooling", name=f"GoTooling/cmd={name}", target=t,
                                  argv=tuple(argv), gomaxprocs=first))
        if "memstats" in opts.suites:
            mib = max(8, min(256, opts.memory // 2**20 // 4))
            out.append(Config(suite="memstats", name=f"MemStats/alloc={mib}MiB", target=t,
                              argv=(f"{MOUNT}/bin/memstats", "-mb", str(mib)), gomaxprocs=first,
                              result_tag="GOBUILD-MEMSTATS"))
        if "moddownload" in opts.suites:  # cold: an empty cache; warm: the persistent one
            argv = modproxy.download_argv(opts.workload is not None)
            for cache, path in (("cold", modproxy.COLD_CACHE), ("warm", modproxy.WARM_CACHE)):
                out.append(Config(suite="moddownload", name=f"GoModDownload/cache={cache}",
                                  target=t, argv=argv, gomaxprocs=first,
                                  env=(("GOMODCACHE", path),)))
        if "gotest" in opts.suites:  # the test binary go test -c built in the preparation
            out.append(Config(suite="gotest", name="GoTest", target=t, gomaxprocs=first, argv=(
                TEST_BINARY, "-test.run", "^$", "-test.bench", ".", "-test.benchmem",
                "-test.count", "1", "-test.cpuprofile", f"{PROFILE_DIR}/cpu.pprof",
                "-test.memprofile", f"{PROFILE_DIR}/mem.pprof"), working_dir=package_dir(opts)))
    return out


OnRound = Callable[[tuple[Record, ...], int, dict[str, bytes], list[float | None]], None]


def rounds(bench: Bench, cfgs: list[Config], opts: BenchOptions, on_round: OnRound) -> tuple[Record, ...]:
    """Warm-up rounds (discarded), then measured rounds; each round runs every configuration
    of every image once, in an order shuffled with the seed, so that configurations are
    interleaved, never run in blocks. After each measured round, on_round gets the records so
    far, the rounds done, the profiles of the newest gotest runs and the host's 1-minute load
    average at the start of each measured round (None where the probe could not read it)."""
    records = {c.key: Record(config=c) for c in cfgs}
    rng = random.Random(opts.seed)
    total = opts.warmup + opts.runs
    profiles: dict[str, bytes] = {}
    loads: list[float | None] = []
    bench.progress.start_runs(total * len(cfgs))
    for r in range(total):
        order = list(cfgs)
        rng.shuffle(order)
        measured = r >= opts.warmup
        for i, cfg in enumerate(order, 1):
            what = (f"round {r + 1}/{total} ({'run' if measured else 'warm-up'}) {i}/{len(order)} "
                    f"{cfg.label} {cfg.target.label}")
            bench.progress.run_started(what)
            start = time.monotonic()
            s, profs = bench.sample(cfg, keep_profiles=measured and cfg.suite == "gotest")
            took = time.monotonic() - start
            bench.progress.run_done(what, "OOM" if s.oom else ("failed" if s.failed else f"{took:.1f} s"))
            if measured:
                if i == 1:
                    loads.append(s.extra.get("load1_start"))
                records[cfg.key] = records[cfg.key].add(s)
                profiles.update(profs)
        if measured:
            on_round(tuple(records.values()), r + 1 - opts.warmup, profiles, list(loads))
    return tuple(records.values())

