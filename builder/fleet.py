"""`gobuild bench --host ...`: one bench on several Docker hosts at once, merged into one result.

Each host runs the ordinary bench (builder/bench/run.py) in a thread of its own, so hosts run
in parallel while one host still runs strictly one measured run at a time. Each writes its own
results folder (OUTPUT/hosts/LABEL/); the merge puts every host's targets and records into one
results.json with the host as a dimension (configurations IMAGE@LABEL, a `hosts` list), one
bench.txt with a `host:` line per block (benchstat -col host), and one report.

Faults: a host that does not answer at the start is reported and skipped; a host lost in the
middle (an engine call fails) keeps what it measured and its remaining runs are recorded as
failed with the reason; the other hosts finish. Either makes the run `partial` (its own exit
code). A lost host's containers cannot be removed while it is gone: they carry the run label,
and `gobuild bench --cleanup --host H` removes them once it is back.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import click
import docker
import docker.errors

from . import __version__, engine, pipeline
from . import hosts as hostmod
from .bench import output
from .bench.options import BenchOptions
from .bench.progress import Progress
from .bench.results import Results, Sample, folder_name
from .bench.run import check_output, run_bench
from .errors import BenchError, ConfigError, EngineError, GobuildError, Interrupted, Partial
from .hosts import Host, Reached
from .inputs import Inputs
from .matrix import image_platform


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class HostOutcome:
    """What became of one host: its results (None when nothing was measured), and its status:
    complete (the bench ran to its end; some measured runs may have failed: results.failed_runs),
    failed (the bench stopped with an error), lost (the engine stopped answering), unreachable
    (it did not answer at the start), skipped (nothing it could run), interrupted (Ctrl-C)."""

    host: Host
    status: str
    error: str | None = None
    facts: engine.EngineFacts | None = None
    images: tuple[str, ...] = ()
    results: Results | None = None
    profiles: dict | None = None
    exit_code: int = EngineError.exit_code  # the class of what ended it, when not complete

    @property
    def completed(self) -> bool:
        return self.status == "complete"


@dataclass(frozen=True, kw_only=True)
class FleetResults:
    results: Results
    outcomes: tuple[HostOutcome, ...]

    @property
    def partial(self) -> bool:
        """Some host completed and some did not (exit 10)."""
        return any(o.completed for o in self.outcomes) and not all(o.completed for o in self.outcomes)

    @property
    def none_completed(self) -> bool:
        return not any(o.completed for o in self.outcomes)

    @property
    def interrupted(self) -> bool:
        return any(o.status == "interrupted" for o in self.outcomes)

    def summary(self) -> str:
        """Why the hosts that did not complete did not (one line)."""
        return "; ".join(f"host {o.host.label} {o.status}: {o.error}" for o in self.outcomes if not o.completed)

    def error(self, output: Path) -> GobuildError | None:
        """The run's one-line error; None when every host completed (failed measured runs are
        then the caller's, as in a one-engine bench). Some host completed: Partial (10). None
        did: the class of what ended the first one (lost or unreachable: the engine's, 5)."""
        if not self.partial and not self.none_completed:
            return None
        if self.partial:
            return Partial(f"partial results: {self.summary()}; the other hosts' results are in {output}")
        first = next(o for o in self.outcomes if not o.completed)
        kept = f"; what was measured is in {output}" if any(o.results for o in self.outcomes) else ""
        return _ERRORS.get(first.exit_code, EngineError)(f"no host completed the bench: {self.summary()}{kept}")


_ERRORS = {cls.exit_code: cls for cls in (ConfigError, EngineError, BenchError)}


def host_images(reached: Reached, inputs: Inputs, images: tuple[str, ...], all_hosts: bool,
                registry: str | None, log: Callable[[str], None]) -> tuple[tuple[str, ...], list[str]]:
    """The images one host benches: those named (or the selected cells'), kept where their
    architecture is the host's own (all with all_hosts: emulated, and marked so); an image
    missing on the host is pulled from registry/IMAGE, or without a registry, when it is a
    selected cell's, built there (with that host's engine). Returns the images and why
    others were left out."""
    engine_client = reached.client
    own = reached.facts.platform  # "linux/arm/v6" on a Pi Zero: a v7 image does not run there
    skipped: list[str] = []
    cells: dict = {}
    if images:
        refs = images
    else:
        sel_inputs = inputs
        if inputs.selection.platforms and not all_hosts:  # the host's own platform of the selection
            sel_inputs = replace(inputs, selection=replace(
                inputs.selection, platforms=tuple(p for p in inputs.selection.platforms
                                                  if p == own)))
            if not sel_inputs.selection.platforms:
                return (), [f"no selected platform is {own}"]
        try:
            cells = cells_by_tag(engine_client, sel_inputs)
        except ConfigError as exc:
            return (), [exc.message]
        refs = tuple(cells)
    missing = [cells[ref] for ref in refs if ref in cells and not registry
               and engine.image_labels(engine_client, ref) is None]
    if missing:
        log(f"building {', '.join(c.id for c in missing)} there (not on the host; --registry pulls instead)")
        try:
            with _docker_env(docker_env(reached.host, os.environ)):
                pipeline.build_images(tuple(missing), inputs.lock(), inputs.templates, client=engine_client,
                                      log=log)
        except GobuildError as exc:  # the image is then missing: said below, the host skipped
            skipped.append(f"building there failed: {exc.message}")
    kept = []
    for ref in refs:
        labels = engine.image_labels(engine_client, ref)
        if labels is None and registry:
            remote = f"{registry.rstrip('/')}/{ref}"
            log(f"pulling {remote} (not on the host)")
            try:
                engine_client.images.pull(remote)
                engine_client.images.get(remote).tag(ref)
                labels = engine.image_labels(engine_client, ref)
            except docker.errors.APIError as exc:
                skipped.append(f"{ref}: not on the host and not pulled from {registry} ({exc.explanation})")
                continue
        if labels is None:
            skipped.append(f"{ref}: not on the host: load it there, or pass --registry to pull it")
            continue
        info = engine.image_info(engine_client, ref)
        platform = image_platform(info.get("Architecture", ""), info.get("Variant"))
        if platform != own and not all_hosts:
            skipped.append(f"{ref}: {platform}, not the host's {own} (--all-hosts runs it emulated)")
            continue
        kept.append(ref)
    return tuple(kept), skipped


def cells_by_tag(engine_client: docker.DockerClient, inputs: Inputs) -> dict:
    """The selected cells by their image tag, for this engine, without refusing the missing
    ones (the fleet pulls or builds them per host)."""
    from .build import image_tag
    from .matrix import Selection, select

    sel = inputs.selection
    if sel == Selection():
        sel = Selection(go=("latest",), platforms=(engine.platform(engine_client),),
                        variants=("slim",))
    elif not sel.platforms:
        sel = replace(sel, platforms=(engine.platform(engine_client),))
    lock = inputs.lock()
    return {image_tag(lock.release(cell), cell): cell for cell in select(inputs.matrix(), sel)}


def remaining_failed(results: Results, runs: int, why: str) -> Results:
    """A lost host's results: every run it had not done is a failed sample saying why (pure)."""
    records = []
    for rec in results.records:
        missing = runs - len(rec.samples) - len(rec.failed)
        for _ in range(max(0, missing)):
            rec = rec.add(Sample(exit_code=-1, error=why))
        records.append(rec)
    return replace(results, records=tuple(records))


def _with_host(results: Results, label: str) -> tuple[Results, dict[str, str]]:
    """Targets and records renamed IMAGE@LABEL with the host set; and old -> new profile folders."""
    renamed = {t.label: replace(t, host=label, config=f"{t.label}@{label}") for t in results.targets}
    records = tuple(replace(r, config=replace(r.config, target=renamed[r.config.target.label]))
                    for r in results.records)
    folders = {folder_name(old): folder_name(new.label) for old, new in renamed.items()}
    return replace(results, targets=tuple(renamed.values()), records=records), folders


def host_entry(outcome: HostOutcome, out: Path) -> dict:
    """The host as results.json's `hosts` list has it."""
    facts, res = outcome.facts, outcome.results
    inside = dict(res.host) if res is not None else {}
    return {
        "label": outcome.host.label, "endpoint": outcome.host.endpoint,
        "declared_platforms": list(outcome.host.platforms),
        "engine": f"Docker {facts.version}" if facts else None,
        "engine_version": facts.version if facts else None,
        "arch": facts.arch if facts else None, "cpus": facts.cpus if facts else None,
        "memory_bytes": facts.memory_bytes if facts else None,
        "cgroup_version": facts.cgroup_version if facts else None,
        "cpu_model": inside.get("cpu_model"), "kernel": inside.get("kernel"),
        "status": outcome.status, "error": outcome.error, "images": list(outcome.images),
        "results": str((out / "hosts" / outcome.host.label).relative_to(out)) if res is not None else None,
        "failed_runs": res.failed_runs if res is not None else 0,
        "limits_effective": dict(res.limits.get("effective") or {}) if res is not None else None,
    }


def merge(outcomes: list[HostOutcome], opts: BenchOptions, run_id: str, started: str,
          out: Path) -> tuple[Results, dict[str, bytes]]:
    """One Results for the whole fleet (pure but for the clock)."""
    targets, records, warnings, profiles = [], [], [], {}
    effective = None
    for o in outcomes:
        label = o.host.label
        if o.results is not None:
            res, folders = _with_host(o.results, label)
            targets += res.targets
            records += res.records
            warnings += [f"[{label}] {w}" for w in res.warnings]
            effective = effective or dict(res.limits.get("effective") or {})
            for rel, blob in (o.profiles or {}).items():
                head, _, tail = rel.partition("/")
                profiles[f"{folders.get(head, head)}/{tail}"] = blob
        if o.status != "complete":
            warnings.append(f"host {label} {o.status}: {o.error}")
    done = [o.completed for o in outcomes]
    status = ("complete" if all(done) else "partial" if any(done)
              else "interrupted" if any(o.status == "interrupted" for o in outcomes) else "failed")
    rounds = [o.results.rounds_done for o in outcomes if o.results is not None]
    merged = Results(
        run_id=run_id, gobuild_version=__version__, started=started, finished=_now(), status=status,
        rounds_done=min(rounds) if rounds else 0,
        options={**opts.summary(), "configs": [t.label for t in targets],
                 "hosts": [o.host.as_json() for o in outcomes]},
        limits={"requested": {"cpus": opts.cpus, "memory": opts.memory, "cpuset": opts.cpuset, "swap": 0},
                "effective": effective or {}},
        host={"fleet": [o.host.label for o in outcomes]},
        targets=tuple(targets), records=tuple(records), warnings=tuple(warnings),
        profiles=tuple(sorted(profiles)), hosts=tuple(host_entry(o, out) for o in outcomes),
        error=None if status == "complete" else "; ".join(
            f"{o.host.label}: {o.error}" for o in outcomes if not o.completed),
    )
    return merged, profiles


class _HostProgress(Progress):
    """Plain lines tagged with the host; refuses to start another run once the fleet stops."""

    def __init__(self, label: str, stop: threading.Event, quiet: bool):
        def write(line: str) -> None:
            if not quiet or line.startswith("warning:"):
                click.echo(f"bench [{label}]: {line}", err=True)
        super().__init__("plain", write=write)
        self._stop = stop

    def run_started(self, what: str) -> None:
        if self._stop.is_set():
            raise KeyboardInterrupt
        super().run_started(what)


def _lost(exc: BaseException) -> bool:
    """Whether an exception means the engine stopped answering (not a refusal or a bug)."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _bench_host(reached: Reached, opts: BenchOptions, run_id: str, stop: threading.Event,
                quiet: bool) -> HostOutcome:
    host = reached.host
    kept: dict = {}

    def sink(results: Results, profiles: dict[str, bytes]) -> None:
        kept["results"], kept["profiles"] = results, profiles

    progress = _HostProgress(host.label, stop, quiet)
    status, error, code = "complete", None, EngineError.exit_code
    try:
        with progress:
            run_bench(reached.client, opts, run_id, progress, sink=sink,
                      host_info={"label": host.label, "endpoint": host.endpoint})
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted by the user"
    except Exception as exc:  # noqa: BLE001 - one host's failure must not end the others
        lost = _lost(exc)
        status = "lost" if lost else "failed"
        code = EngineError.exit_code if lost else getattr(exc, "exit_code", BenchError.exit_code)
        why = hostmod.reason(exc) if lost else str(getattr(exc, "message", None) or exc)
        error = (f"lost in the middle of the run ({why}): run 'gobuild bench --cleanup --host "
                 f"{host.endpoint}' once it is back" if lost else why)
        progress.warn(f"host {host.label}: {error}")
    results = kept.get("results")
    if results is not None and status == "lost":
        results = remaining_failed(results, opts.runs, f"host {host.label} lost: {error.split(':')[0]}")
    if status == "complete" and results is not None and results.failed_runs:
        error = f"{results.failed_runs} measured run(s) failed"  # still complete: exit 8, as one engine
    return HostOutcome(host=host, status=status, error=error, facts=reached.facts, exit_code=code,
                       images=opts.images, results=results, profiles=kept.get("profiles"))


@contextlib.contextmanager
def _stop_on_signal(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM: no host starts another run; the runs under way are ended by
    removing their containers (the cleanup of each host)."""
    def on_signal(signum, frame):
        if not stop.is_set():
            stop.set()
            raise KeyboardInterrupt

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _cleanup(reached: Reached, outcome: HostOutcome | None, run_id: str) -> str | None:
    """Remove the run's containers, volumes and networks on one host; a lost host is not
    waited for (its things carry the run label: --cleanup --host removes them later)."""
    if outcome is not None and outcome.status == "lost":
        return None
    try:
        engine.remove_labelled(reached.client, run_id)
    except Exception as exc:  # noqa: BLE001 - what ended the run is the error to show
        return (f"could not remove the containers of run {run_id} on {reached.host.label} "
                f"({hostmod.reason(exc)}): run 'gobuild bench --cleanup --host {reached.host.endpoint}'")
    return None


def bench(inputs: Inputs, opts: BenchOptions, fleet: tuple[Host, ...], *, all_hosts: bool = False,
          registry: str | None = None, quiet: bool = False) -> FleetResults:
    """The whole `gobuild bench --host ...`; outputs into opts.output (merged) and
    opts.output/hosts/LABEL/ (each host's own)."""
    check_output(opts.output)
    say = (lambda line: None) if quiet else (lambda line: click.echo(f"bench: {line}", err=True))
    started = _now()
    reached = hostmod.reach_all(fleet)
    outcomes: dict[str, HostOutcome] = {}
    plans: list[tuple[Reached, BenchOptions]] = []
    for r in reached:
        label = r.host.label
        if not r.ok:
            click.echo(f"bench: warning: host {label} skipped: {r.error}", err=True)
            outcomes[label] = HostOutcome(host=r.host, status="unreachable", error=r.error)
            continue
        refs, left_out = host_images(r, inputs, opts.images, all_hosts, registry,
                                     lambda line, lb=label: say(f"[{lb}] {line}"))
        for why in left_out:
            click.echo(f"bench: warning: host {label}: {why}", err=True)
        try:
            if not refs:
                raise ConfigError("; ".join(left_out) or "no image to bench")
            r.facts and opts.check_engine(r.facts.cpus, r.facts.memory_bytes)
        except ConfigError as exc:
            outcomes[label] = HostOutcome(host=r.host, status="skipped", error=exc.message, facts=r.facts)
            click.echo(f"bench: warning: host {label} skipped: {exc.message}", err=True)
            continue
        say(f"[{label}] {r.host.endpoint}: linux/{r.facts.arch}, {r.facts.cpus} CPUs: {', '.join(refs)}")
        plans.append((r, replace(opts, images=refs, output=opts.output / "hosts" / label)))
    if not plans:
        why = "; ".join(f"{o.host.label}: {o.error}" for o in outcomes.values())
        if all(o.status == "unreachable" for o in outcomes.values()):
            raise EngineError(f"no host answers: {why}")
        raise ConfigError(f"no host can run the bench: {why}")
    run_id = engine.new_run_id()
    stop = threading.Event()
    done: dict[str, HostOutcome] = {}

    def work(r: Reached, host_opts: BenchOptions) -> None:
        engine.block_stop_signals()
        done[r.host.label] = _bench_host(r, host_opts, run_id, stop, quiet)

    threads = [threading.Thread(target=work, args=plan, name=f"bench-{plan[0].host.label}", daemon=True)
               for plan in plans]
    try:
        with _stop_on_signal(stop):
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        for r, _ in plans:  # ends the runs under way; each thread then returns
            _cleanup(r, done.get(r.host.label), run_id)
        for t in threads:
            t.join(120)
        interrupted = True
    else:
        interrupted = False
    finally:
        for r, _ in plans:
            if note := _cleanup(r, done.get(r.host.label), run_id):
                click.echo(f"bench: warning: {note}", err=True)
    outcomes.update(done)
    for r, _ in plans:  # a thread that had not returned by the end of the wait
        outcomes.setdefault(r.host.label, HostOutcome(host=r.host, status="interrupted", facts=r.facts,
                                                      error="interrupted by the user"))
    ordered = [outcomes[h.label] for h in fleet if h.label in outcomes]
    merged, profiles = merge(ordered, opts, run_id, started, opts.output)
    try:
        output.write_all(opts.output, merged, profiles)
    except OSError as exc:
        raise ConfigError(f"cannot write the results into {opts.output}: {exc}") from None
    if interrupted:  # what was measured is written: then the exit of Ctrl-C
        raise Interrupted(f"interrupted: what was measured is in {opts.output}/results.json; "
                          "the runs under way were removed")
    return FleetResults(results=merged, outcomes=tuple(ordered))


def cleanup(fleet: tuple[Host, ...], older_than: float | None = None) -> tuple[list[str], list[str]]:
    """`gobuild bench --cleanup --host ...`: what gobuild runs left behind, host by host.
    Returns what was removed, and why each host that did not answer was not cleaned."""
    lines, down = [], []
    for r in hostmod.reach_all(fleet):
        if not r.ok:
            down.append(r.error or f"host {r.host.label} does not answer")
            continue
        lines += [f"{r.host.label}: {line}" for line in engine.remove_stale(r.client, older_than)]
    return lines, down


# ---- images on a fleet ----------------------------------------------------------------------
#
# buildx's own multi-node builder (`docker buildx create --append --node N --platform P ENDPOINT`)
# runs BuildKit in a moby/buildkit container on each node (the docker-container driver): where
# that image can be pulled, `gobuild images --buildx-nodes NAME` creates or reuses such a builder
# and buildx sends each platform's build to the node that declared it. Without it (as on a machine
# with no registry), each platform's build goes to the host whose engine builds it natively, with
# that engine's own BuildKit (buildx's docker driver, DOCKER_HOST of that host); a platform no host
# has natively is built under emulation on the first host, and said so.


@dataclass(frozen=True, kw_only=True)
class Route:
    platform: str
    host: str  # the label of the host that builds it
    native: bool


def route(platforms: list[str], reached: list[Reached]) -> list[Route]:
    """Each platform to the first host that declares it (or whose engine is of it); a platform
    no host has goes to the first host, emulated (pure)."""
    up = [r for r in reached if r.ok]
    if not up:
        return []
    out = []
    for platform in platforms:
        home = next((r for r in up if platform in r.native()), None)
        out.append(Route(platform=platform, host=(home or up[0]).host.label, native=home is not None))
    return out


def docker_env(host: Host, environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment that points the docker CLI (and buildx) at the host, in place of the
    user's DOCKER_HOST, DOCKER_CONTEXT, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (pure). None for
    local: the user's environment as it is, the engine the Python client also talks to."""
    if host.kind == LOCAL_KIND:
        return None
    if host.kind == "context":
        return {"DOCKER_CONTEXT": host.endpoint}
    env = {"DOCKER_HOST": host.endpoint}
    if host.tls is not None:  # parse made sure they are one folder's ca.pem, cert.pem, key.pem
        env.update(DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(host.tls.ca.parent))
    elif host.kind == "tcp":  # as the client: the user's TLS settings apply to a bare tcp://
        env.update({k: environ[k] for k in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH") if k in environ})
    return env


LOCAL_KIND = hostmod.LOCAL
_ENGINE_KEYS = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")


def environment_for(host: Host, environ: Mapping[str, str]) -> dict[str, str]:
    """A whole environment for a docker CLI subprocess aimed at the host (pure)."""
    env = docker_env(host, environ)
    if env is None:
        return dict(environ)
    return {**{k: v for k, v in environ.items() if k not in _ENGINE_KEYS}, **env}


def buildx_create_argvs(builder: str, nodes: list[tuple[str, str, tuple[str, ...]]]) -> list[list[str]]:
    """`docker buildx create` lines for a builder with one node per host, each declaring the
    platforms it builds natively (pure). nodes: (node name, endpoint or context, platforms)."""
    argvs = []
    for i, (node, endpoint, platforms) in enumerate(nodes):
        argvs.append(["docker", "buildx", "create", *(["--append"] if i else []), "--name", builder,
                      "--driver", "docker-container", "--node", node,
                      *(["--platform", ",".join(platforms)] if platforms else []), endpoint])
    return argvs


def node_endpoint(host: Host) -> str:
    """What buildx create takes for a host: its endpoint, or for the local engine the default."""
    if host.kind == LOCAL_KIND:
        return "default"
    return host.endpoint


@contextlib.contextmanager
def _docker_env(env: dict[str, str] | None, builder: str | None = None) -> Iterator[None]:
    """The docker CLI that buildx runs as reads DOCKER_HOST/DOCKER_CONTEXT from the process's
    environment: set for one host's builds, put back afterwards (builds run host after host).
    env None leaves the user's engine settings as they are (the local host)."""
    keys = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "BUILDX_BUILDER")
    saved = {k: os.environ.get(k) for k in keys}
    try:
        if env is not None:
            for k in keys:
                os.environ.pop(k, None)
            os.environ.update(env)
        if builder is not None:
            os.environ["BUILDX_BUILDER"] = builder
        else:
            os.environ.pop("BUILDX_BUILDER", None)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True, kw_only=True)
class FleetImages:
    built: tuple[tuple[str, object], ...]  # (host label, build.Built)
    routes: tuple[Route, ...]
    skipped: tuple[tuple[str, str], ...]  # (host label, why)
    downloaded_bytes: int = 0
    verified: int = 0

    def as_json(self) -> dict:
        return {"images": [{**b.as_json(), "host": label} for label, b in self.built],
                "routes": [r.__dict__ for r in self.routes],
                "skipped_hosts": [{"host": h, "error": e} for h, e in self.skipped],
                "downloaded_bytes": self.downloaded_bytes, "verified": self.verified}


def build_images(inputs: Inputs, fleet: tuple[Host, ...], *, force: bool = False, verify: bool = False,
                 progress=None, trust=None, buildx_nodes: str | None = None,
                 log: Callable[[str], None] = lambda line: None) -> FleetImages:
    """`gobuild images --host ...`: each selected cell built on the host that runs its
    platform natively (see route), with that host's engine; loaded there. With buildx_nodes,
    one buildx builder of that name with a node per host does the routing itself (loaded on
    the first host)."""
    import subprocess

    from . import pipeline

    reached = hostmod.reach_all(fleet)
    skipped = [(r.host.label, r.error or "") for r in reached if not r.ok]
    for label, why in skipped:
        log(f"warning: host {label} skipped: {why}")
    cells = inputs.cells()
    routes = route(list(dict.fromkeys(c.platform for c in cells)), reached)
    if not routes:
        raise EngineError("no host answers: " + "; ".join(f"{h}: {e}" for h, e in skipped))
    by_label = {r.host.label: r for r in reached}
    lock = inputs.lock()
    if buildx_nodes:
        for argv in ensure_builder(buildx_nodes, reached, lambda argv: subprocess.run(
                argv, capture_output=True, check=False, timeout=300).returncode):
            log(" ".join(argv))
        first = next(r for r in reached if r.ok)
        with _docker_env(docker_env(first.host, os.environ), buildx_nodes):
            result = pipeline.build_images(cells, lock, inputs.templates, force=force, verify=verify,
                                           progress=progress, client=first.client, trust=trust)
        return FleetImages(built=tuple((first.host.label, b) for b in result.images),
                           routes=tuple(routes), skipped=tuple(skipped),
                           downloaded_bytes=result.downloaded_bytes, verified=result.verified)
    built: list[tuple[str, object]] = []
    downloaded = verified = 0
    for label in dict.fromkeys(r.host for r in routes):
        mine = {r.platform for r in routes if r.host == label}
        for r in routes:
            if r.host == label:
                log(f"{r.platform} -> host {label} ({'native' if r.native else 'EMULATED: no host builds it natively'})")
        host_cells = tuple(c for c in cells if c.platform in mine)
        reached_host = by_label[label]
        with _docker_env(docker_env(reached_host.host, os.environ)):
            result = pipeline.build_images(host_cells, lock, inputs.templates, force=force, verify=verify,
                                           progress=progress, client=reached_host.client, trust=trust)
        built += [(label, b) for b in result.images]
        downloaded += result.downloaded_bytes
        verified += result.verified
    return FleetImages(built=tuple(built), routes=tuple(routes), skipped=tuple(skipped),
                       downloaded_bytes=downloaded, verified=verified)


def ensure_builder(builder: str, reached: list[Reached], run: Callable[[list[str]], int]) -> list[list[str]]:
    """Create the multi-node builder unless it exists (`docker buildx inspect NAME`); returns
    the command lines run. Needs the moby/buildkit image on every node."""
    if run(["docker", "buildx", "inspect", builder]) == 0:
        return []
    argvs = buildx_create_argvs(builder, [(f"{builder}-{r.host.label}", node_endpoint(r.host), r.native())
                                          for r in reached if r.ok])
    for argv in argvs:
        if run(argv) != 0:
            raise EngineError(f"docker buildx create failed ({' '.join(argv)}): the docker-container "
                              "driver needs the moby/buildkit image on each node: pull it there, or "
                              "build without --buildx-nodes (each platform on its own host)")
    return argvs
