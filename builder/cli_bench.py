"""`gobuild bench`: parse, build the options, call the library, print."""
from __future__ import annotations

import json
import math
from pathlib import Path

import click

from .bench.options import BenchOptions, parse_cpus, parse_duration, parse_gomaxprocs, parse_memory
from .bench.output import summary_text
from .bench.results import SUITES
from .bench.run import bench, default_output
from .bench.run import cleanup as cleanup_stale
from .errors import BenchError, ConfigError
from .inputs import Inputs, inputs_options, json_option


@click.group("bench", invoke_without_command=True)
@inputs_options
@click.option("--image", "images", multiple=True, metavar="TAG",
              help="Image(s) to bench instead of matrix cells; repeatable.")
@click.option("--cpus", default="1", show_default=True, help="CPU limit, as docker run --cpus (0.5, 2).")
@click.option("--memory", default="2g", show_default=True, help="Memory limit, as docker run --memory (512m, 2g); swap off.")
@click.option("--cpuset", metavar="LIST", help="CPUs to pin to, as docker run --cpuset-cpus (0-1).")
@click.option("--suite", "suites", multiple=True,
              type=click.Choice(SUITES),
              help="Suite(s) to run; repeatable [default: all six].")
@click.option("--runs", default=10, show_default=True, type=click.IntRange(1, 1000), help="Measured runs per configuration.")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(0, 100), help="Warm-up runs, discarded.")
@click.option("--gomaxprocs", metavar="LIST", help="GOMAXPROCS values, e.g. 1,2,4 [default: the CPU limit rounded up].")
@click.option("--workload", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Bench your own module (its go.mod folder) instead of the embedded one.")
@click.option("--modules", default=20, show_default=True, type=click.IntRange(1, 200), help="Embedded workload: modules.")
@click.option("--packages", default=100, show_default=True, type=click.IntRange(1, 2000), help="Embedded workload: packages.")
@click.option("--compile-target", type=click.Choice(["workload", "std"]), default="workload",
              show_default=True, help="What the compile suite builds with go build -a.")
@click.option("--bench-package", metavar="PKG",
              help="Package whose tests and benchmarks the memory and gotest suites run "
                   "[default: ./benchpkg of the embedded workload, . of --workload].")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: results/<UTC timestamp>].")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the run-order shuffle.")
@click.option("--cleanup", is_flag=True,
              help="Only remove the containers and volumes that gobuild runs which are no longer "
                   "running left behind, and say what was removed.")
@click.option("--older-than", metavar="AGE",
              help="With --cleanup: also remove what is older than AGE (90m, 12h, 2d), whoever "
                   "owns it (runs on other hosts, which this machine cannot see).")
@json_option
@click.pass_context
def bench_cmd(ctx: click.Context, inputs: Inputs, images, cpus, memory, cpuset, suites, runs, warmup, gomaxprocs,
              workload, modules, packages, compile_target, bench_package, output, seed, cleanup,
              older_than, as_json) -> None:
    """Measure the Go toolchain in containers under cgroup CPU and memory limits.

    Suites: compile (go build -a, cold cache, per GOMAXPROCS), memory (peak memory of go env,
    go list -m all, go build, and a go test binary), sched (goroutine-creation latency),
    tooling (go list -deps, go mod graph, go list -m all), memstats (runtime.MemStats against
    the cgroup's counters), gotest (go test -bench -benchmem with CPU and memory profiles).

    Writes results.json, bench.txt (Go benchmark format: benchstat old/bench.txt new/bench.txt),
    report.md and profiles/ into --output, and prints a summary. Images whose architecture
    differs from the engine's run under emulation and are marked so everywhere.

    \b
    Examples:
      gobuild bench --cpus 0.5 --memory 2g
      gobuild bench --go 1.22 --go 1.27 --variant slim --platform linux/amd64 --suite compile
      gobuild bench --image gobuild/go:1.27.3-bookworm-amd64 --gomaxprocs 1,2 --runs 20
      gobuild bench --cleanup                  # what crashed gobuild runs left behind
      gobuild bench --cleanup --older-than 1d  # also what other hosts' runs left
    """
    if ctx.invoked_subcommand:  # `gobuild bench compare ...`: the subcommand does the work
        return
    cpus_value, memory_value = parse_cpus(cpus), parse_memory(memory)  # before the engine
    procs = parse_gomaxprocs(gomaxprocs) if gomaxprocs else (max(1, math.ceil(cpus_value)),)
    age = parse_duration(older_than) if older_than else None
    if age is not None and not cleanup:
        raise ConfigError("--older-than only goes with --cleanup: gobuild bench --cleanup --older-than 2d")
    if cleanup:
        removed = cleanup_stale(age)
        summary = (f"{sum(r.startswith('removed') for r in removed)} containers and volumes "
                   "left behind by gobuild runs removed")
        click.echo("\n".join([*removed, summary]))
        return
    opts = BenchOptions(
        images=images, cpus=cpus_value, memory=memory_value,
        cpuset=cpuset, suites=tuple(dict.fromkeys(suites)) or SUITES, runs=runs, warmup=warmup,
        gomaxprocs=procs, workload=workload, workload_modules=modules, workload_packages=packages,
        compile_target=compile_target,
        bench_package=bench_package or ("." if workload else "./benchpkg"),
        output=output or default_output(), seed=seed,
    )
    results = bench(inputs, opts)
    data = results.to_json()
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else summary_text(data))
    click.echo(f"bench: wrote {opts.output}/results.json, bench.txt, report.md", err=True)
    if results.failed_runs:
        raise BenchError(
            f"{results.failed_runs} measured run(s) failed"
            f"{' (OOM-killed: raise --memory)' if results.oom else ''}; the other results are in {opts.output}"
        )
