"""`gobuild run` and `gobuild shell`: a cell's image as a working Go environment.

The current folder is mounted at WORKDIR and is the working directory; commands run as the
caller's uid:gid, so that what they write there belongs to the caller; persistent per-cell
caches (builder/cache.py) keep modules and builds warm between runs. Containers go through the
one lifecycle (builder/engine.py); the interactive shell through its one other way in
(`engine.interactive`).

An unset selector here means one cell, not all: the newest Go of the matrix, the engine's own
platform, the matrix's first variant.
"""
from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import docker

from . import cache, engine, pipeline
from .build import image_tag
from .errors import ConfigError, EngineError
from .inputs import Inputs
from .lock import Lock
from .matrix import Cell, Matrix, Selection, select

WORKDIR = "/work"
# Passed from the caller's environment when set: what decides where modules come from and how
# they are checked (GONOPROXY and GOINSECURE belong to the same family as GOPRIVATE).
FORWARDED = ("GOFLAGS", "GOPROXY", "GOPRIVATE", "GONOPROXY", "GONOSUMDB", "GONOSUMCHECK",
             "GOSUMDB", "GOINSECURE")
TIMED_OUT_EXIT = 124  # as timeout(1)
GOBIN = "/tmp/gobin"  # where `go install` puts tools in run and shell (any uid may write)
REFUSED_EXIT = 125  # as docker run when the engine refuses the container

Log = Callable[[str], None]


def log_stderr(message: str) -> None:
    print(f"gobuild: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, kw_only=True)
class EnvOptions:
    """What run, shell and fit share: which image, and how to get it when it is missing."""

    build: bool = True  # False (--no-build): a missing image is an error
    registry: str | None = None  # pull a missing image from here instead of building it


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    command: tuple[str, ...]
    folder: Path  # mounted at WORKDIR
    user: str  # "uid:gid"
    cpus: float | None = None
    memory: int | None = None
    environment: Mapping[str, str] = field(default_factory=dict)  # -e, over the forwarded ones
    parallel: int = 1
    network: bool = True
    timeout: float = 3600
    images: EnvOptions = EnvOptions()


@dataclass(frozen=True, kw_only=True)
class Target:
    cell: Cell
    image: str
    go_version: str  # the exact release in the image
    emulated: bool
    caches: tuple[cache.CacheVolume, ...]


@dataclass(frozen=True, kw_only=True)
class CellResult:
    cell: str
    image: str
    platform: str
    emulated: bool
    exit_code: int
    seconds: float
    oom: bool
    timed_out: bool
    refused: str = ""  # the engine's refusal: CMD never ran in this cell

    @property
    def note(self) -> str:
        return ", ".join(n for n, on in (("emulated (qemu)", self.emulated), ("OOM-killed", self.oom),
                                         ("timed out", self.timed_out),
                                         ("engine refused, see above", bool(self.refused))) if on)

    def as_json(self) -> dict:
        return {"cell": self.cell, "image": self.image, "platform": self.platform,
                "emulated": self.emulated, "exit_code": self.exit_code,
                "seconds": round(self.seconds, 3), "oom": self.oom, "timed_out": self.timed_out,
                "refused": self.refused or None}


@dataclass(frozen=True, kw_only=True)
class RunResult:
    run_id: str
    results: tuple[CellResult, ...]

    @property
    def exit_code(self) -> int:
        """The first failing cell's exit code (in matrix order), else 0: one cell passes its
        command's code through, several say whether any failed."""
        return next((r.exit_code for r in self.results if r.exit_code != 0), 0)

    def table(self) -> str:
        width = max([len("cell"), *(len(r.cell) for r in self.results)])
        lines = [f"{'cell':<{width}}  {'exit':>4}  {'duration':>9}  note"]
        lines += [f"{r.cell:<{width}}  {r.exit_code:>4}  {r.seconds:>8.1f}s  {r.note}".rstrip()
                  for r in self.results]
        failed = [r.cell for r in self.results if r.exit_code != 0]
        lines.append(f"{len(self.results) - len(failed)} of {len(self.results)} passed"
                     + (f"; failed: {', '.join(failed)}" if failed else ""))
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {"run_id": self.run_id, "exit_code": self.exit_code,
                "results": [r.as_json() for r in self.results]}


def default_selection(selection: Selection, matrix: Matrix, engine_platform: str) -> Selection:
    """An unset selector picks one value (pure): newest Go, the engine's platform, the first
    variant."""
    return Selection(go=selection.go or ("latest",),
                     platforms=selection.platforms or (engine_platform,),
                     variants=selection.variants or (matrix.variants[0].name,))


def forwarded(environ: Mapping[str, str]) -> dict[str, str]:
    """The module-fetching variables the caller has set (pure)."""
    return {k: environ[k] for k in FORWARDED if k in environ}


def parse_env(items: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, str]:
    """-e K=V (or -e K: its value here, skipped when unset, as docker run does) (pure)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key or any(c.isspace() for c in key):
            raise ConfigError(f"-e {item!r}: write NAME=VALUE (or NAME to pass this shell's value)")
        if eq:
            out[key] = value
        elif key in environ:
            out[key] = environ[key]
    return out


def parse_user(text: str | None) -> str:
    """'UID[:GID]' -> 'uid:gid'; default: this process's own (pure but for the default)."""
    if text is None:
        return f"{os.getuid()}:{os.getgid()}"
    uid, _, gid = text.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise ConfigError(f"--user {text!r}: give numeric UID[:GID] (for example 1000:1000), "
                          "as the cache volumes are given to that uid")
    return f"{int(uid)}:{int(gid or uid)}"


def ensure_images(engine_client: docker.DockerClient, cells: tuple[Cell, ...], lock: Lock,
                  templates: Path | None, opts: EnvOptions, log: Log) -> dict[str, str]:
    """cell id -> local image tag; a missing image is built (or pulled from opts.registry),
    saying so, or with opts.build False an error."""
    tags = {cell.id: image_tag(lock.release(cell), cell) for cell in cells}
    missing = tuple(c for c in cells if engine.image_labels(engine_client, tags[c.id]) is None)
    if not missing:
        return tags
    names = ", ".join(tags[c.id] for c in missing)
    if not opts.build:
        first = missing[0]
        raise ConfigError(
            f"no image {names} in the engine: build it first (gobuild images --go {first.go} "
            f"--variant {first.variant.name} --platform {first.platform}) or drop --no-build")
    if opts.registry:
        log(f"image {names} is missing: pulling it from {opts.registry}")
        pipeline.pull(missing, lock, opts.registry, engine_client)
    else:
        log(f"image {names} is missing: building it (as gobuild images would)")
        pipeline.build_images(missing, lock, templates, client=engine_client, log=log)
    return tags


def one_cell(cells: tuple[Cell, ...], command: str) -> None:
    """A command that works in one cell refuses several, naming them (before building any)."""
    if len(cells) != 1:
        raise ConfigError(f"{command} needs one cell, the selectors match {len(cells)} "
                          f"({', '.join(c.id for c in cells)}): narrow them with --go, "
                          "--platform, --variant")


def targets(engine_client: docker.DockerClient, inputs: Inputs, opts: EnvOptions, user: str,
            log: Log, *, single: str | None = None) -> list[Target]:
    """The selected cells (see default_selection) with their images, ready to run; with
    single (a command's name), exactly one cell."""
    matrix = inputs.matrix()
    engine_facts = engine.facts(engine_client)
    engine_arch = engine_facts.arch
    cells = select(matrix, default_selection(inputs.selection, matrix, engine_facts.platform))
    if single:
        one_cell(cells, single)
    lock = inputs.lock()
    tags = ensure_images(engine_client, cells, lock, inputs.templates, opts, log)
    out = []
    for cell in cells:
        version = lock.release(cell).version
        out.append(Target(cell=cell, image=tags[cell.id], go_version=version,
                          emulated=cell.arch != engine_arch,
                          caches=cache.volumes_for(version, cell.platform, user)))
    return out


def spec_for(target: Target, command: tuple[str, ...], *, folder: Path, user: str,
             environment: Mapping[str, str], network: bool, role: str,
             limits: engine.Limits | None = None, timeout: float = 3600) -> engine.Spec:
    """The container of a run or shell in a cell (pure): the folder at WORKDIR as the working
    directory, the caller's uid:gid, the cell's caches, HOME in /tmp (the uid may have no home
    in the image); the forwarded and -e variables win over gobuild's own."""
    # GOBIN in /tmp: the image's GOPATH/bin belongs to its own user (1000 in slim), so
    # `go install` as any other uid would be refused there. -e GOBIN=/work/bin keeps tools.
    env = {"HOME": "/tmp", "GOBIN": GOBIN, **cache.environment(target.caches), **environment}
    return engine.Spec(
        image=target.image, command=cache.stamped(command, target.caches), role=role,
        platform=target.cell.platform, network=network, environment=env,
        limits=limits or engine.Limits(),
        volumes=cache.mounts(target.caches), user=user, working_dir=WORKDIR, timeout=timeout,
        binds=(engine.Bind(source=str(folder.resolve()), target=WORKDIR),),
    )


def prepare_caches(engine_client: docker.DockerClient, chosen: list[Target], run_id: str,
                   log: Log) -> None:
    """Every cache volume the targets need, made and handed over before any runs (cells run in
    parallel share the module cache: none may meet it half-made)."""
    for target in chosen:
        cache.ensure(engine_client, target.caches, image=target.image,
                     platform=target.cell.platform, run_id=run_id, log=log)


class Relay:
    """Passes a container's output on as it comes: stdout to stdout (or stderr, when stdout
    carries --json), stderr to stderr; with a prefix (parallel cells), line by line."""

    def __init__(self, prefix: str | None = None, stdout_to_stderr: bool = False):
        self.prefix, self.stdout_to_stderr = prefix, stdout_to_stderr
        self.partial = {False: b"", True: b""}
        self.lock = threading.Lock()

    def _stream(self, is_stderr: bool):
        return (sys.stderr if is_stderr or self.stdout_to_stderr else sys.stdout).buffer

    def __call__(self, data: bytes, is_stderr: bool) -> None:
        with self.lock:
            if self.prefix is None:
                out = self._stream(is_stderr)
                out.write(data)
                out.flush()
                return
            lines = (self.partial[is_stderr] + data).split(b"\n")
            self.partial[is_stderr] = lines.pop()
            self._write(lines, is_stderr)

    def _write(self, lines: list[bytes], is_stderr: bool) -> None:
        out = self._stream(is_stderr)
        for line in lines:
            out.write(f"[{self.prefix}] ".encode() + line + b"\n")
        out.flush()

    def close(self) -> None:
        with self.lock:
            for is_stderr, rest in self.partial.items():
                if rest:
                    self._write([rest], is_stderr)
            self.partial = {False: b"", True: b""}


def run_cell(engine_client: docker.DockerClient, target: Target, opts: RunOptions, run_id: str,
             relay: Relay, log: Log = log_stderr) -> CellResult:
    spec = spec_for(target, opts.command, folder=opts.folder, user=opts.user,
                    environment={**forwarded(os.environ), **opts.environment},
                    network=opts.network, role="run", timeout=opts.timeout,
                    limits=engine.Limits(cpus=opts.cpus, memory=opts.memory))
    start = time.monotonic()
    try:
        done = engine.run(engine_client, spec, run_id, on_output=relay)
    except EngineError as exc:  # one cell's refusal is its row: the other cells go on
        log(f"{target.cell.id}: {exc.message}")
        return CellResult(cell=target.cell.id, image=target.image, platform=target.cell.platform,
                          emulated=target.emulated, exit_code=REFUSED_EXIT,
                          seconds=time.monotonic() - start, oom=False, timed_out=False,
                          refused=exc.message)
    finally:
        relay.close()
    took = time.monotonic() - start
    return CellResult(cell=target.cell.id, image=target.image, platform=target.cell.platform,
                      emulated=target.emulated,
                      exit_code=TIMED_OUT_EXIT if done.timed_out else done.exit_code,
                      seconds=took, oom=done.oom, timed_out=done.timed_out)


def check_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: run gobuild from the folder to mount")
    resolved = folder.resolve()
    if ":" in str(resolved):  # the engine's bind syntax is SOURCE:TARGET:MODE
        raise ConfigError(f"{resolved} has ':' in its path, which a bind mount cannot take: "
                          "run gobuild from a folder without ':' in its path (rename it)")
    return resolved


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def check_local_engine(docker_host: str | None, command: str, setting: str = "DOCKER_HOST") -> None:
    """run and shell bind-mount a folder of this machine; an engine on another host would
    mount a folder of that host's disk (an empty one, made there) instead (pure)."""
    if not docker_host or docker_host.startswith(("unix://", "npipe://", "fd://")):
        return
    where = urlsplit(docker_host).hostname or ""
    if docker_host.startswith(("tcp://", "ssh://")) and (where in LOCAL_HOSTS or where.startswith("127.")
                                              or where == socket.gethostname()):
        return
    fix = "unset DOCKER_HOST" if setting == "DOCKER_HOST" else "give an engine of this machine"
    raise ConfigError(f"{command} needs the engine on this machine, and {setting}={docker_host} "
                      f"is elsewhere (the folder would be an empty one on that host): {fix}, "
                      "or run gobuild on that host")


def host_client(host, command: str) -> docker.DockerClient | None:
    """The engine of --host (a hosts.Host; None: the usual one, checked only), which must be on
    this machine: run and shell bind-mount a folder of this machine."""
    if host is None:
        check_local_engine(os.environ.get("DOCKER_HOST"), command)
        return None
    from . import hosts

    where = hosts.endpoint_url(host)
    check_local_engine(where, command, "--host")
    return hosts.client(host)


def run(inputs: Inputs, opts: RunOptions, *, json_output: bool = False,
        engine_client: docker.DockerClient | None = None, log: Log = log_stderr,
        host=None) -> RunResult:
    """`gobuild run`: CMD in each selected cell, one after the other (or opts.parallel at a
    time), its output shown as it comes; every container removed on every way out. host
    (--host): the engine it runs on."""
    opts = replace(opts, folder=check_folder(opts.folder))
    engine_client = engine_client or host_client(host, "gobuild run") or engine.client()
    facts = engine.facts(engine_client)
    if opts.cpus and facts.cpus and opts.cpus > facts.cpus:
        raise ConfigError(f"--cpus {opts.cpus:g} is more than the engine's {facts.cpus} CPUs: "
                          f"ask for at most {facts.cpus}")
    chosen = targets(engine_client, inputs, opts.images, opts.user, log)
    run_id = engine.new_run_id()
    with engine.cleanup_on_exit(engine_client, run_id):
        prepare_caches(engine_client, chosen, run_id, log)
        several = len(chosen) > 1

        def one(index: int, target: Target) -> CellResult:
            what = " ".join(opts.command)
            log(f"[{index}/{len(chosen)}] {target.cell.id}"
                f"{' (emulated: qemu)' if target.emulated else ''}: {what}")
            relay = Relay(prefix=target.cell.id if opts.parallel > 1 and several else None,
                          stdout_to_stderr=json_output)
            result = run_cell(engine_client, target, opts, run_id, relay, log)
            if several:
                log(f"{target.cell.id}: exit {result.exit_code} in {result.seconds:.1f} s"
                    f"{f' ({result.note})' if result.note else ''}")
            return result

        if opts.parallel <= 1 or not several:
            results = [one(i, t) for i, t in enumerate(chosen, 1)]
        else:
            pool = ThreadPoolExecutor(max_workers=min(opts.parallel, len(chosen)),
                                      initializer=engine.block_stop_signals)
            try:
                futures = [pool.submit(one, i, t) for i, t in enumerate(chosen, 1)]
                results = [f.result() for f in futures]
            finally:
                # never wait here for containers still running: the cleanup removes them
                pool.shutdown(wait=False, cancel_futures=True)
    return RunResult(run_id=run_id, results=tuple(results))


@dataclass(frozen=True, kw_only=True)
class ShellOptions:
    folder: Path
    user: str
    environment: Mapping[str, str] = field(default_factory=dict)
    network: bool = True
    cpus: float | None = None
    memory: int | None = None
    images: EnvOptions = EnvOptions()


def shell_command(target: Target) -> tuple[str, ...]:
    """bash in the Debian variant, busybox sh in slim."""
    return ("bash",) if target.cell.variant.kind == "debian" else ("sh",)


def shell(inputs: Inputs, opts: ShellOptions, *, engine_client: docker.DockerClient | None = None,
          log: Log = log_stderr, host=None) -> int:
    """`gobuild shell`: an interactive shell in one cell; returns the shell's exit code."""
    from contextlib import nullcontext

    from .fleet import _docker_env, docker_env

    folder = check_folder(opts.folder)
    engine_client = engine_client or host_client(host, "gobuild shell") or engine.client()
    (target,) = targets(engine_client, inputs, opts.images, opts.user, log, single="gobuild shell")
    run_id = engine.new_run_id()
    with engine.cleanup_on_exit(engine_client, run_id):
        prepare_caches(engine_client, [target], run_id, log)
        log(f"{target.cell.id}{' (emulated: qemu)' if target.emulated else ''}: "
            f"{shell_command(target)[0]} in {WORKDIR} ({folder}); exit to leave")
        spec = spec_for(target, shell_command(target), folder=folder, user=opts.user,
                        environment={**forwarded(os.environ), **opts.environment},
                        network=opts.network, role="shell",
                        limits=engine.Limits(cpus=opts.cpus, memory=opts.memory))
        # the docker CLI that runs it, aimed at --host's engine
        with _docker_env(docker_env(host, os.environ)) if host is not None else nullcontext():
            return engine.interactive(engine_client, spec, run_id)


def parse_timeout(text: str) -> float:
    from .bench.options import parse_duration

    try:
        seconds = parse_duration(text)
    except ConfigError:
        raise ConfigError(f"--timeout {text!r} is not a duration: write a number with s, m, h "
                          "or d (90m, 2h)") from None
    if not seconds > 0 or not math.isfinite(seconds):
        raise ConfigError(f"--timeout {text!r} must be more than 0")
    return seconds
