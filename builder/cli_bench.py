"""`gobuild bench`: parse, build the options, call the library, print."""
from __future__ import annotations

import json
import math
from pathlib import Path

import click

from .bench.options import (
    BenchOptions,
    parse_cpus,
    parse_duration,
    parse_gomaxprocs,
    parse_memory,
    workload_shape,
)
from .bench.output import summary_text
from .bench.progress import Progress
from .bench.results import DEFAULT_SUITES, SUITES
from .bench.run import bench, default_output
from .bench.run import cleanup as cleanup_stale
from .bench.workload import SIZES
from .errors import BenchError, ConfigError, EngineError
from .inputs import Inputs, hosts_options, inputs_options, json_option


@click.group("bench", invoke_without_command=True)
@inputs_options
@hosts_options
@click.option("--all-hosts", is_flag=True,
              help="With --host: run every image on every host, also where its architecture "
                   "is not the host's (emulated, and marked so) [default: only natively].")
@click.option("--registry", metavar="HOST:PORT",
              help="With --host: pull an image missing on a host from this registry (HOST:PORT/IMAGE) "
                   "[default: build a selected cell's image there].")
@click.option("--image", "images", multiple=True, metavar="TAG",
              help="Image(s) to bench instead of matrix cells; repeatable. An image named twice "
                   "is benched as two configurations, TAG#1 and TAG#2, interleaved (an A/A check).")
@click.option("--cpus", default="1", show_default=True, help="CPU limit, as docker run --cpus (0.5, 2).")
@click.option("--memory", default="2g", show_default=True, help="Memory limit, as docker run --memory (512m, 2g); swap off.")
@click.option("--cpuset", metavar="LIST", help="CPUs to pin to, as docker run --cpuset-cpus (0-1).")
@click.option("--suite", "suites", multiple=True,
              type=click.Choice(SUITES),
              help="Suite(s) to run; repeatable [default: all but moddownload, which is opt-in].")
@click.option("--runs", default=10, show_default=True, type=click.IntRange(1, 1000), help="Measured runs per configuration.")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(0, 100), help="Warm-up runs, discarded.")
@click.option("--gomaxprocs", metavar="LIST", help="GOMAXPROCS values, e.g. 1,2,4 [default: the CPU limit rounded up].")
@click.option("--workload", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Bench your own module (its go.mod folder) instead of the embedded one.")
@click.option("--workload-size", type=click.Choice(list(SIZES)), default=None,
              help="Embedded workload's size: small = 20 modules, 100 packages (the default); "
                   "medium = 200, 600; large = 1,200 modules, 2,400 packages, the published "
                   "comparison's graph size (on a busy 2-CPU host: 2 min to prepare, go list "
                   "-deps 17 s a run at --cpus 1; pair it with --suite tooling; each size's "
                   "times are in the README).")
@click.option("--modules", type=click.IntRange(1, 5000), help="Embedded workload: modules [default: the size's].")
@click.option("--packages", type=click.IntRange(1, 20000), help="Embedded workload: packages [default: the size's].")
@click.option("--compile-target", type=click.Choice(["workload", "std"]), default="workload",
              show_default=True, help="What the compile suite builds with go build -a.")
@click.option("--bench-package", metavar="PKG",
              help="Package whose tests and benchmarks the memory and gotest suites run "
                   "[default: ./benchpkg of the embedded workload, . of --workload].")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: results/<UTC timestamp>].")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the run-order shuffle.")
@click.option("--run-timeout", default="2h", show_default=True, metavar="DURATION",
              help="A measured run still going after this long (90s, 10m) is killed and recorded "
                   "as a failed run, with the reason; the bench goes on.")
@click.option("--wait-quiet", type=click.FloatRange(0), is_flag=False, flag_value=300.0, default=None,
              metavar="[SECONDS]",
              help="Before measuring, wait until the host's 1-minute load average is below "
                   "--quiet-load, for at most SECONDS (300 when none given); if it is not, "
                   "measure anyway and record a warning.")
@click.option("--quiet-load", type=click.FloatRange(0), metavar="LOAD",
              help="Load average under which --wait-quiet counts the host as quiet "
                   "[default: half the engine's CPUs]; 0 waits the whole SECONDS.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr (errors and warnings only).")
@click.option("--cleanup", is_flag=True,
              help="Only remove the containers, volumes and networks that gobuild runs which are no longer "
                   "running left behind, and say what was removed.")
@click.option("--older-than", metavar="AGE",
              help="With --cleanup: also remove what is older than AGE (90m, 12h, 2d), whoever "
                   "owns it (runs on other hosts, which this machine cannot see).")
@json_option
@click.pass_context
def bench_cmd(ctx: click.Context, inputs: Inputs, hosts, all_hosts, registry, images, cpus, memory, cpuset, suites, runs, warmup, gomaxprocs,
              workload, workload_size, modules, packages, compile_target, bench_package, output, seed,
              wait_quiet, quiet_load, quiet, cleanup, older_than, as_json, run_timeout) -> None:
    """Measure the Go toolchain in containers under cgroup CPU and memory limits.

    Suites: compile (go build -a, cold cache, per GOMAXPROCS), memory (peak memory of go env,
    go list -m all, go build, and a go test binary), sched (goroutine-creation latency),
    tooling (go list -deps, go mod graph, go list -m all), memstats (runtime.MemStats against
    the cgroup's counters), gotest (go test -bench -benchmem with CPU and memory profiles),
    moddownload (only when asked for with --suite moddownload: go mod download from a local
    module proxy on a network with no other route, with an empty module cache and with a warm
    persistent one; --workload must then have dependencies). Without --suite, all but
    moddownload run.

    Configurations (images, Go versions, suites, GOMAXPROCS values) are interleaved round by
    round, so compare them within one run. Progress goes to stderr (live on a terminal, plain
    lines otherwise, none with -q); stdout gets only the summary (or --json).

    Writes results.json, bench.txt (Go benchmark format: benchstat old/bench.txt new/bench.txt),
    report.md and profiles/ into --output, and prints a summary. Images whose architecture
    differs from the engine's run under emulation and are marked so everywhere.

    \b
    Examples:
      gobuild bench --cpus 0.5 --memory 2g
      gobuild bench --go 1.22 --go 1.27 --variant slim --platform linux/amd64 --suite compile
      gobuild bench --image gobuild/go:1.27.3-bookworm-amd64 --gomaxprocs 1,2 --runs 20
      gobuild bench --suite tooling --workload-size large --wait-quiet 120
      gobuild bench --suite moddownload --go 1.22 --variant slim --cpus 1
      gobuild bench --image gobuild/go:1.27.3-slim-amd64 --image gobuild/go:1.27.3-slim-amd64  # A/A
      gobuild bench --cleanup                  # what crashed gobuild runs left behind
      gobuild bench --cleanup --older-than 1d  # also what other hosts' runs left
      gobuild bench --host local --host pi5=ssh://pi@pi5.local --suite compile  # a fleet
      gobuild bench --host pi5=ssh://pi@pi5.local --cleanup   # what a lost run left on pi5

    With --host (or the hosts: of gobuild.yaml), each host benches the images of its own
    architecture, hosts in parallel and one measured run at a time on each; results.json,
    bench.txt (a host: line per block) and report.md merge them, and each host's own results
    are in OUTPUT/hosts/LABEL/. A host that does not answer, or is lost mid-run, is reported
    and its runs marked failed; the others finish; the exit code is then 10 (partial). When
    no host completes, it is the class of what stopped them (5 for an engine that does not
    answer); Ctrl-C writes what was measured, then exits 130.
    """
    if ctx.invoked_subcommand:  # `gobuild bench compare ...`: the subcommand does the work
        return
    cpus_value, memory_value = parse_cpus(cpus), parse_memory(memory)  # before the engine
    procs = parse_gomaxprocs(gomaxprocs) if gomaxprocs else (max(1, math.ceil(cpus_value)),)
    age = parse_duration(older_than) if older_than else None
    shape = workload_shape(workload_size, modules, packages)
    if workload and workload_size:
        raise ConfigError("--workload-size sizes the embedded workload, not --workload PATH: give one of the two")
    if quiet_load is not None and wait_quiet is None:
        raise ConfigError("--quiet-load only goes with --wait-quiet: gobuild bench --wait-quiet 120 --quiet-load 1")
    if age is not None and not cleanup:
        raise ConfigError("--older-than only goes with --cleanup: gobuild bench --cleanup --older-than 2d")
    if all_hosts and not hosts:
        raise ConfigError("--all-hosts goes with --host: gobuild bench --host local --host pi5=ssh://pi@pi5 --all-hosts")
    if cleanup and hosts:
        from .fleet import cleanup as fleet_cleanup

        removed, down = fleet_cleanup(hosts, age)
        total = sum(" removed " in r for r in removed)
        click.echo("\n".join([*removed, f"{total} containers, volumes and networks left behind by gobuild runs removed"]))
        if down:
            raise EngineError(f"not cleaned: {'; '.join(down)}: run this again once it answers")
        return
    if cleanup:
        removed = cleanup_stale(age)
        summary = (f"{sum(r.startswith('removed') for r in removed)} containers, volumes and networks "
                   "left behind by gobuild runs removed")
        click.echo("\n".join([*removed, summary]))
        return
    opts = BenchOptions(
        images=images, cpus=cpus_value, memory=memory_value,
        cpuset=cpuset, suites=tuple(dict.fromkeys(suites)) or DEFAULT_SUITES, runs=runs, warmup=warmup,
        gomaxprocs=procs, workload=workload, workload_modules=shape[0], workload_packages=shape[1],
        workload_size=None if (modules or packages) else (workload_size or "small"),
        compile_target=compile_target,
        bench_package=bench_package or ("." if workload else "./benchpkg"),
        output=output or default_output(), seed=seed, wait_quiet=wait_quiet, quiet_load=quiet_load,
        run_timeout=parse_duration(run_timeout, "--run-timeout"),
    )
    if hosts:
        from .fleet import bench as fleet_bench

        fleet = fleet_bench(inputs, opts, hosts, all_hosts=all_hosts, registry=registry, quiet=quiet)
        data = fleet.results.to_json()
        click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else summary_text(data))
        if not quiet:
            click.echo(f"bench: wrote {opts.output}/results.json, bench.txt, report.md "
                       f"(each host's own in {opts.output}/hosts/)", err=True)
        if error := fleet.error(opts.output):  # partial (10), or no host completed (5, ...)
            raise error
        if fleet.results.failed_runs:
            raise BenchError(f"{fleet.results.failed_runs} measured run(s) failed; the other results "
                             f"are in {opts.output}")
        return
    results = bench(inputs, opts, log=Progress.for_stderr(quiet))
    data = results.to_json()
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else summary_text(data))
    if not quiet:
        click.echo(f"bench: wrote {opts.output}/results.json, bench.txt, report.md", err=True)
    if results.failed_runs:
        raise BenchError(
            f"{results.failed_runs} measured run(s) failed"
            f"{' (OOM-killed: raise --memory)' if results.oom else ''}; the other results are in {opts.output}"
        )
