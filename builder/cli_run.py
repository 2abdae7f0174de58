"""`gobuild run`, `shell`, `fit` and `cache`: parse, call one library function, print."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from .errors import ConfigError
from .inputs import Inputs, emit, inputs_options, json_option

# Options end at the first word of CMD, so that `gobuild run go test -v ./...` works with or
# without `--`. Unknown options stay errors: a mistyped `--platfrom` must not run as CMD.
COMMAND_SETTINGS = {"allow_interspersed_args": False}


def env_options(func):
    """How to get a missing image, and the container's environment: shared by run and shell."""

    @click.option("--no-build", is_flag=True,
                  help="A missing image is an error (default: build it, or pull it with --registry).")
    @click.option("--registry", metavar="HOST/NAMESPACE",
                  help="Pull a missing image from this registry instead of building it.")
    @click.option("-e", "--env", "env", multiple=True, metavar="NAME[=VALUE]",
                  help="Set a variable in the container (NAME alone: this shell's value); repeatable.")
    @click.option("--network", type=click.Choice(["bridge", "none"]), default="bridge",
                  show_default=True, help="bridge: module downloads work; none: no network.")
    @click.option("--user", metavar="UID[:GID]",
                  help="Run as this uid:gid [default: yours, so files written belong to you].")
    @click.option("--cpus", metavar="N", help="CPU limit, as docker run --cpus (0.5, 2).")
    @click.option("--memory", metavar="SIZE", help="Memory limit, as docker run --memory (512m, 2g); swap off.")
    @click.option("--host", metavar="HOST",
                  help="The Docker engine to run on (as bench --host: unix://PATH, a context, "
                       "tcp://127.0.0.1:PORT...); it must be on this machine (the folder is a bind mount).")
    @functools.wraps(func)
    def wrapper(no_build, registry, env, network, user, cpus, memory, host, **kw):
        from .bench.options import parse_cpus, parse_memory
        from .hosts import parse as parse_host
        from .workenv import EnvOptions, parse_env, parse_user

        kw["host"] = parse_host(host) if host else None
        kw.update(images=EnvOptions(build=not no_build, registry=registry),
                  environment=parse_env(env, os.environ), network=network == "bridge",
                  user=parse_user(user), cpus=parse_cpus(cpus) if cpus else None,
                  memory=parse_memory(memory) if memory else None)
        if no_build and registry:
            raise ConfigError("--no-build and --registry exclude each other: drop one")
        return func(**kw)

    return wrapper


@click.command("run", context_settings=COMMAND_SETTINGS)
@inputs_options
@env_options
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Cells run at the same time (their output lines prefixed with the cell).")
@click.option("--timeout", default="1h", show_default=True, metavar="DURATION",
              help="Kill CMD after this long (90m, 2h); exit 124.")
@json_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_cmd(inputs: Inputs, images, environment, network, user, cpus, memory, host, parallel,
            timeout, as_json, command) -> None:
    """Run CMD in the selected cells' images, in the current folder, with persistent caches.

    The current folder is mounted at /work and is the working directory; CMD runs as your
    uid:gid (files it writes belong to you), with GOMODCACHE and GOCACHE on named volumes
    kept per Go release and platform (see 'gobuild cache ls'). GOFLAGS, GOPROXY, GOPRIVATE,
    GONOPROXY, GONOSUMDB, GONOSUMCHECK, GOSUMDB and GOINSECURE come from your environment
    when set. CMD's output is shown as it comes.

    An unset selector picks one cell: the newest Go of the matrix, the engine's own
    platform, the matrix's first variant. A missing image is built first (or pulled with
    --registry). One cell: gobuild exits with CMD's exit code. Several: each in turn (or
    --parallel N), then a table of cell, exit code and duration (emulated cells marked);
    the exit code is the first failing cell's, 0 when all passed.

    \b
    Examples:
      gobuild run -- go test ./...
      gobuild run --go 1.21 --go 1.22 --platform linux/amd64 --platform linux/arm64 -- go test ./...
      gobuild run --variant slim --memory 1g --cpus 2 -- go build ./...
      gobuild run --network none -e CGO_ENABLED=0 -- go vet ./...
      gobuild run --go '1.2*' --parallel 2 --json -- go test ./...
      gobuild run --host other=unix:///run/other-docker.sock -- go test ./...
    """
    from .workenv import RunOptions, parse_timeout, run

    opts = RunOptions(command=tuple(command), folder=Path.cwd(), user=user, cpus=cpus,
                      memory=memory, environment=environment, parallel=parallel,
                      network=network, timeout=parse_timeout(timeout), images=images)
    result = run(inputs, opts, json_output=as_json, host=host)
    if as_json:
        emit(result.as_json(), True, "")
    elif len(result.results) > 1:
        click.echo(result.table())
    sys.exit(result.exit_code)


@click.command("shell")
@inputs_options
@env_options
def shell_cmd(inputs: Inputs, images, environment, network, user, cpus, memory, host) -> None:
    """Open an interactive shell in one cell's image, in the current folder.

    The same container as 'gobuild run' (folder at /work, your uid:gid, the cell's
    persistent caches, network on): bash in the bookworm variant, busybox sh in slim.
    The selectors must pick one cell (unset: the newest Go, the engine's platform, the first
    variant); several matches are an error that lists them. Exits with the shell's code.

    \b
    Examples:
      gobuild shell
      gobuild shell --go 1.22 --variant slim --platform linux/arm64
      echo 'go env GOCACHE' | gobuild shell --variant slim
      gobuild shell --host rootless=unix:///run/user/1000/docker.sock
    """
    from .workenv import ShellOptions, shell

    code = shell(inputs, ShellOptions(folder=Path.cwd(), user=user, environment=environment,
                                      network=network, cpus=cpus, memory=memory, images=images),
                 host=host)
    sys.exit(code)


@click.group("cache")
def cache_cmd() -> None:
    """The persistent Go caches of 'gobuild run' and 'gobuild shell' (named volumes).

    \b
    Examples:
      gobuild cache ls
      gobuild cache prune --older-than 30d
    """


uid_option = click.option("--user", "uid", metavar="UID", callback=lambda ctx, p, v: _uid(v),
                          help="Only the caches of this uid [default: everyone's].")


def _uid(value: str | None) -> str | None:
    if value is not None and not value.isdigit():
        raise ConfigError(f"--user {value!r}: give a numeric uid (for example 1000)")
    return value


@cache_cmd.command("ls")
@uid_option
@json_option
def cache_ls_cmd(uid: str | None, as_json: bool) -> None:
    """List the cache volumes: kind, Go release, platform, owner, size, last use.

    \b
    Examples:
      gobuild cache ls
      gobuild cache ls --user 1000 --json
    """
    from .cache import list_all

    caches = list_all(uid)
    emit([c.as_json() for c in caches], as_json, cache_table(caches))


@cache_cmd.command("prune")
@click.option("--older-than", metavar="AGE",
              help="Only the caches not used for AGE (90m, 12h, 30d) [default: all of them].")
@uid_option
@json_option
def cache_prune_cmd(older_than: str | None, uid: str | None, as_json: bool) -> None:
    """Remove cache volumes (all, or those not used for --older-than AGE).

    A volume a running container uses is kept, and said so.

    \b
    Examples:
      gobuild cache prune --older-than 30d
      gobuild cache prune --user 1000
    """
    from .bench.options import parse_duration
    from .cache import prune_all

    pruned = prune_all(parse_duration(older_than) if older_than else None, uid)
    freed = sum(info.size or 0 for info, kept in pruned if kept is None)
    lines = [f"removed {info.name} ({_size(info.size)})" if kept is None
             else f"kept {info.name}: {kept}" for info, kept in pruned]
    lines.append(f"{sum(kept is None for _, kept in pruned)} cache volume(s) removed, "
                 f"{_size(freed)} freed")
    emit([{**info.as_json(), "removed": kept is None, "kept_because": kept}
          for info, kept in pruned], as_json, "\n".join(lines))


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _when(stamp: int | None) -> str:
    import datetime as dt

    if stamp is None:
        return "never"
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cache_table(caches) -> str:
    if not caches:
        return "no gobuild cache volumes"
    width = max(len(c.name) for c in caches)
    lines = [(f"{'volume':<{width}}  {'kind':<5}  {'go':<8}  {'platform':<12}  {'user':<11}  "
              f"{'size':>9}  last use")]
    lines += [f"{c.name:<{width}}  {c.kind:<5}  {c.go or 'all':<8}  {c.platform:<12}  "
              f"{c.user:<11}  {_size(c.size):>9}  {_when(c.last_use)}" for c in caches]
    return "\n".join(lines)


@click.command("fit", context_settings=COMMAND_SETTINGS)
@inputs_options
@click.option("--cpus", metavar="N", help="CPUs of the board [default: the engine's]; GOMAXPROCS follows.")
@click.option("--workload", metavar="PATH|embedded",
              help="The module to build [default: the current folder when it holds a go.mod, "
                   "else the embedded workload of 20 modules and 100 packages].")
@click.option("--min", "floor", default="64m", show_default=True, metavar="SIZE",
              help="Lowest memory limit to try.")
@click.option("--max", "ceiling", metavar="SIZE",
              help="Highest memory limit, tried first [default: 8g, or the engine's memory].")
@click.option("--max-runs", default=10, show_default=True, type=click.IntRange(1, 50),
              help="Probes of the search (the remedies get --remedy-runs each).")
@click.option("--remedy", "remedies", multiple=True,
              type=click.Choice(["p1", "gomemlimit", "gogc"]),
              help="Remedies to try: p1 (GOFLAGS=-p=1), gomemlimit (80% of the limit), "
                   "gogc (GOGC=50) [default: all three].")
@click.option("--remedy-runs", default=4, show_default=True, type=click.IntRange(1, 20),
              help="Probes per remedy.")
@click.option("--timeout", default="30m", show_default=True, metavar="DURATION",
              help="A probe running longer counts as not fitting.")
@click.option("--no-build", is_flag=True, help="A missing image is an error.")
@click.option("--registry", metavar="HOST/NAMESPACE", help="Pull a missing image from here.")
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def fit_cmd(inputs: Inputs, cpus, workload, floor, ceiling, max_runs, remedies, remedy_runs,
            timeout, no_build, registry, as_json, command) -> None:
    """Find the smallest memory limit under which CMD (default: go build ./...) succeeds.

    Bisects the container's memory limit (swap off) in one cell at the CPU count given,
    telling an OOM kill from other failures (which stop the search, with their output); then
    tries GOFLAGS=-p=1, GOMEMLIMIT and GOGC at the largest limit that did not fit, and
    further down where they fit. Every probe starts from a cold build cache and a warm
    module cache, with no network. Prints a table (setting, smallest limit that worked, time
    at that limit) and a recommendation. The selectors must pick one cell (unset: the newest
    Go, the engine's platform, the first variant). Emulated cells are marked: their figures
    are not those of real hardware.

    \b
    Examples:
      gobuild fit --variant slim --cpus 2                   # the embedded workload
      cd mymodule && gobuild fit --cpus 4 -- go build ./...
      gobuild fit --workload embedded --max 4g --remedy p1 --json
    """
    from .bench.options import parse_cpus, parse_memory
    from .fit import REMEDIES, FitOptions, fit
    from .workenv import EnvOptions, parse_timeout

    if workload == "embedded":
        subject = None
    elif workload:
        subject = Path(workload)
    else:
        subject = Path.cwd() if (Path.cwd() / "go.mod").is_file() else None
    if no_build and registry:
        raise ConfigError("--no-build and --registry exclude each other: drop one")
    opts = FitOptions(
        command=tuple(command) or ("go", "build", "./..."), workload=subject,
        cpus=parse_cpus(cpus) if cpus else None, floor=parse_memory(floor, "--min"),
        ceiling=parse_memory(ceiling, "--max") if ceiling else None, max_runs=max_runs,
        remedies=tuple(dict.fromkeys(remedies)) or REMEDIES, remedy_runs=remedy_runs,
        timeout=parse_timeout(timeout), images=EnvOptions(build=not no_build, registry=registry))
    result = fit(inputs, opts)
    emit(result.as_json(), as_json, result.table())
