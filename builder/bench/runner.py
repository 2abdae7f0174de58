"""Running the suites: each measured process in its own container under the requested cgroup
limits, configurations interleaved round by round and shuffled within a round.

Per image, a labelled volume mounted at /gobuild holds the workload, its module cache and the
probe programs, which a preparation container builds with the toolchain under test. Measured
containers have no network and a fresh GOCACHE (their own /tmp).
"""
from __future__ import annotations

import io
import json
import random
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import docker

from .. import engine
from ..errors import BenchError
from . import workload
from .options import BenchOptions

MOUNT = "/gobuild"
ENV = {
    "GOCACHE": "/tmp/gocache", "GOMODCACHE": f"{MOUNT}/modcache", "GOPROXY": "off",
    "GOFLAGS": "-mod=mod", "GOSUMDB": "off", "GOTOOLCHAIN": "local", "HOME": "/tmp",
}
TOOLING = {
    "go-list-deps": ["go", "list", "-deps", "./..."],
    "go-mod-graph": ["go", "mod", "graph"],
    "go-list-m-all": ["go", "list", "-m", "all"],
}
MEMORY_PHASES = {
    "go-env": ["go", "env"],
    "go-list-m-all": ["go", "list", "-m", "all"],
    "go-build": ["go", "build", "./..."],
    "go-test-binary": [f"{MOUNT}/bin/workload.test", "-test.run", "^$", "-test.bench", ".",
                       "-test.benchtime", "200x"],
}

PREP = """set -eu
export GOCACHE={m}/prepcache GOMODCACHE={m}/modcache GOTOOLCHAIN=local GOFLAGS=-mod=mod GOSUMDB=off
cd {m}/probe && GOPROXY=off go build -o {m}/bin/ ./...
cd {m}/work
{download}
go list -deps ./... >/dev/null
go test -c -o {m}/bin/workload.test {bench_pkg}
rm -rf {m}/prepcache
chmod -R a+rwX {m}
echo GOBUILD-PREPARED
"""


@dataclass(frozen=True, kw_only=True)
class Target:
    ref: str
    image_id: str
    digest: str | None
    platform: str
    arch: str
    go_version: str
    emulated: bool
    volume: str


@dataclass(frozen=True, kw_only=True)
class Config:
    """One thing measured once per round: a suite case on an image at a GOMAXPROCS."""

    suite: str
    name: str  # Go benchmark name without "Benchmark" and without the -procs suffix
    target: Target
    argv: tuple[str, ...]
    gomaxprocs: int | None = None
    via_runner: bool = True

    @property
    def key(self) -> str:
        procs = f"-{self.gomaxprocs}" if self.gomaxprocs else ""
        return f"{self.target.ref}|{self.name}{procs}"


@dataclass
class Record:
    config: Config
    samples: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)


def _line(output: str, prefix: str) -> dict | None:
    for line in reversed(output.splitlines()):
        if line.startswith(prefix + " "):
            try:
                return json.loads(line[len(prefix) + 1:])
            except ValueError:
                return None
    return None


class Bench:
    """Holds the engine, the run id and the options; every container it makes carries the run
    label, and the caller removes them all (engine.remove_labelled) on every way out."""

    def __init__(self, c: docker.DockerClient, opts: BenchOptions, run_id: str, engine_arch: str,
                 log: Callable[[str], None]):
        self.c, self.opts, self.run_id, self.engine_arch, self.log = c, opts, run_id, engine_arch, log

    def _kwargs(self, target: Target, command: list[str], *, limits: bool = True,
                env: dict | None = None, user: str | None = None, network: bool = False) -> dict:
        o = self.opts
        return engine.container_kwargs(
            image=target.ref, command=command, run_id=self.run_id,
            name=f"gobuild-bench-{self.run_id}-{int(time.monotonic() * 1000) % 10**9}",
            platform=target.platform, network=network, environment={**ENV, **(env or {})},
            nano_cpus=o.nano_cpus if limits else None, mem_limit=o.memory if limits else None,
            cpuset_cpus=o.cpuset if limits else None,
            volumes={target.volume: {"bind": MOUNT, "mode": "rw"}},
            user=user, working_dir=f"{MOUNT}/work",
        )

    def prepare(self, ref: str, index: int) -> Target:
        info = engine.image_info(self.c, ref)
        arch = info.get("Architecture", "?")
        labels = (info.get("Config") or {}).get("Labels") or {}
        version = labels.get("io.gobuild.go.version") or labels.get("org.opencontainers.image.version") or "?"
        volume = self.c.volumes.create(
            name=f"gobuild-bench-{self.run_id}-{index}",
            labels={engine.RUN_LABEL: self.run_id},
        )
        digests = info.get("RepoDigests") or []
        target = Target(ref=ref, image_id=info["Id"], digest=digests[0] if digests else None,
                        platform=f"linux/{arch}", arch=arch, go_version=version,
                        emulated=arch != self.engine_arch, volume=volume.name)
        o = self.opts
        files = workload.user_workload(o.workload) if o.workload else workload.module_graph(
            o.workload_modules, o.workload_packages)
        files.update(workload.probe_files())
        if o.workload:
            download, network = "go mod download", True
        else:
            download, network = f"GOPROXY=file://{MOUNT}/proxy go mod download all", False
        script = PREP.format(m=MOUNT, download=download, bench_pkg=o.bench_package)
        self.log(f"preparing {ref} ({target.platform}{', emulated' if target.emulated else ''}): "
                 "workload, module cache, probes")
        kw = self._kwargs(target, ["sh", "-c", script], limits=False, user="0", network=network)
        kw["working_dir"] = MOUNT
        with engine.container(self.c, **kw) as ctr:
            ctr.put_archive(MOUNT, workload.tarball(files))
            ctr.start()
            status = ctr.wait(timeout=3600)
            out = ctr.logs().decode("utf-8", "replace")
        if status.get("StatusCode") != 0 or "GOBUILD-PREPARED" not in out:
            tail = " | ".join(out.strip().splitlines()[-3:])
            raise BenchError(f"preparing {ref} failed ({tail}): does the workload build, and does "
                             f"--bench-package {o.bench_package} name a package with tests?")
        return target

    def facts(self, target: Target) -> dict:
        """Limits in force and host facts, as seen from inside a limited container."""
        done = engine.run(self.c, timeout=600, **self._kwargs(target, [f"{MOUNT}/bin/runner", "-facts"]))
        facts = _line(done.output, "GOBUILD-FACTS")
        if done.exit_code != 0 or facts is None:
            raise BenchError(f"cannot read the limits inside {target.ref}: {done.output.strip()[-200:]}")
        return facts

    def sample(self, cfg: Config) -> dict:
        """Run one configuration once in a fresh container; a dict with "oom" true on OOM."""
        env = {"GOMAXPROCS": str(cfg.gomaxprocs)} if cfg.gomaxprocs else {}
        argv = [f"{MOUNT}/bin/runner", "-quiet", *cfg.argv] if cfg.via_runner else list(cfg.argv)
        done = engine.run(self.c, timeout=7200, **self._kwargs(cfg.target, argv, env=env))
        if cfg.suite == "sched":
            data = _line(done.output, "GOBUILD-SCHED")
        elif cfg.suite == "memstats":
            data = _line(done.output, "GOBUILD-MEMSTATS")
        else:
            data = _line(done.output, "GOBUILD-RESULT")
        oom = done.oom_killed or bool(data and data.get("oom_kills", 0) > 0)
        if data is None or oom or (data.get("exit_code", 0) != 0):
            return {"oom": oom, "exit_code": (data or {}).get("exit_code", done.exit_code),
                    "error": None if oom else done.output.strip()[-300:]}
        data["oom"] = False
        return data

    def gotest(self, target: Target, runs: int) -> tuple[str, dict[str, bytes], bool]:
        """go test -bench . -benchmem -count=runs with CPU and memory profiles; returns the
        benchmark output, the profiles and whether it was OOM-killed."""
        pkg = self.opts.bench_package
        cmd = ["go", "test", "-run", "^$", "-bench", ".", "-benchmem", f"-count={runs}",
               "-cpuprofile", f"{MOUNT}/out/cpu.pprof", "-memprofile", f"{MOUNT}/out/mem.pprof",
               "-o", f"{MOUNT}/out/workload.test", pkg]
        script = f"mkdir -p {MOUNT}/out && exec " + " ".join(f"'{a}'" for a in cmd)
        kw = self._kwargs(target, ["sh", "-c", script])
        profiles: dict[str, bytes] = {}
        with engine.container(self.c, **kw) as ctr:
            ctr.start()
            status = ctr.wait(timeout=7200)
            out = ctr.logs().decode("utf-8", "replace")
            oom = bool(self.c.api.inspect_container(ctr.id)["State"].get("OOMKilled"))
            for name in ("cpu.pprof", "mem.pprof"):
                profiles.update(_fetch_file(ctr, f"{MOUNT}/out/{name}"))
        if status.get("StatusCode") != 0 and not oom:
            raise BenchError(f"go test -bench failed in {target.ref}: {out.strip()[-300:]}")
        return out, profiles, oom


def _fetch_file(ctr, path: str) -> dict[str, bytes]:
    try:
        stream, _ = ctr.get_archive(path)
    except docker.errors.NotFound:
        return {}
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        member = tf.getmembers()[0]
        return {member.name: tf.extractfile(member).read()}


def configs(opts: BenchOptions, targets: list[Target]) -> list[Config]:
    out = []
    for t in targets:
        if "compile" in opts.suites:
            what = "./..." if opts.compile_target == "workload" else "std"
            for g in opts.gomaxprocs:
                out.append(Config(suite="compile", name=f"GoBuildA/pkg={opts.compile_target}",
                                  target=t, argv=("go", "build", "-a", what), gomaxprocs=g))
        if "memory" in opts.suites:
            for phase, argv in MEMORY_PHASES.items():
                out.append(Config(suite="memory", name=f"GoMemory/phase={phase}", target=t,
                                  argv=tuple(argv), gomaxprocs=opts.gomaxprocs[0]))
        if "sched" in opts.suites:
            for g in opts.gomaxprocs:
                out.append(Config(suite="sched", name="GoroutineCreate", target=t,
                                  argv=(f"{MOUNT}/bin/sched", "-n", "20000"), gomaxprocs=g,
                                  via_runner=False))
        if "tooling" in opts.suites:
            for name, argv in TOOLING.items():
                out.append(Config(suite="tooling", name=f"GoTooling/cmd={name}", target=t,
                                  argv=tuple(argv), gomaxprocs=opts.gomaxprocs[0]))
        if "memstats" in opts.suites:
            mib = max(8, min(256, opts.memory // 2**20 // 4))
            out.append(Config(suite="memstats", name=f"MemStats/alloc={mib}MiB", target=t,
                              argv=(f"{MOUNT}/bin/memstats", "-mb", str(mib)),
                              gomaxprocs=opts.gomaxprocs[0], via_runner=False))
    return out


def rounds(bench: Bench, cfgs: list[Config], opts: BenchOptions) -> dict[str, Record]:
    """Warm-up rounds (discarded), then measured rounds; each round runs every configuration
    once, in an order shuffled with the seed."""
    records = {c.key: Record(config=c) for c in cfgs}
    rng = random.Random(opts.seed)
    total = opts.warmup + opts.runs
    for r in range(total):
        order = list(cfgs)
        rng.shuffle(order)
        phase = "warm-up" if r < opts.warmup else "run"
        for i, cfg in enumerate(order, 1):
            start = time.monotonic()
            s = bench.sample(cfg)
            took = time.monotonic() - start
            state = "OOM" if s.get("oom") else ("failed" if s.get("error") else f"{took:.1f} s")
            bench.log(f"round {r + 1}/{total} ({phase}) {i}/{len(order)} {cfg.name}"
                      f"{'-' + str(cfg.gomaxprocs) if cfg.gomaxprocs else ''} {cfg.target.ref}: {state}")
            if r < opts.warmup:
                continue
            rec = records[cfg.key]
            (rec.failed if s.get("oom") or s.get("error") else rec.samples).append(s)
    return records


def log_stderr(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
