"""`gobuild images`, `gobuild pull` and `gobuild join`: parse, call one function of
builder.pipeline, print."""
from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import click

from . import pipeline
from .cli_trust import trust_options
from .errors import ConfigError
from .inputs import Inputs, emit, hosts_options, inputs_options, json_option


@contextlib.contextmanager
def download_progress() -> Iterator:
    """A rich progress bar on stderr for downloads (only drawn on a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        def quiet(name: str, total: int):
            print(f"gobuild: downloading {name}", file=sys.stderr)
            return lambda n: None

        yield quiet
        return
    lock = threading.Lock()
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console, transient=False) as bar:
        def start(name: str, total: int):
            with lock:
                task = bar.add_task(name, total=total or None)
            return lambda n: bar.advance(task, n)

        yield start


@click.command("images")
@inputs_options
@hosts_options
@click.option("--buildx-nodes", metavar="NAME",
              help="With --host: create (or reuse) the buildx builder NAME with one node per host, "
                   "each declaring its native platforms, and let buildx route the builds (needs the "
                   "moby/buildkit image on every node) [default: each platform built by the engine "
                   "of the host that has it natively].")
@click.option("--push", is_flag=True,
              help="Push per-arch tags, then join them with the registry's other platforms into "
                   "multi-arch tags.")
@click.option("--no-join", is_flag=True,
              help="With --push: push the per-arch tags only and print their digests; join them "
                   "later with 'gobuild join' (one runner per architecture).")
@click.option("--registry", metavar="HOST/NAMESPACE", help="Where --push sends the images.")
@click.option("--verify", is_flag=True,
              help="Smoke-test every image: go version, go build and go test offline, cgo in bookworm.")
@click.option("--force", is_flag=True, help="Rebuild even the images that are up to date.")
@trust_options
@json_option
def images_cmd(inputs: Inputs, hosts, buildx_nodes: str | None, push: bool, no_join: bool, registry: str | None, verify: bool,
               force: bool, trust, as_json: bool) -> None:
    """Build the image of every selected cell with buildx (one platform per build).

    The toolchain named in the lock is downloaded once into the cache
    ($XDG_CACHE_HOME/gobuild), verified against its sha256, and copied into the image:
    nothing of it runs under emulation. An image whose inputs are unchanged is not rebuilt.
    Where the source publishes a release signature (.asc beside each go.dev archive), it is
    checked with gpgv against the Go release key (pinned by fingerprint; the key is fetched
    from Google on first use): the verdict, verified or unavailable, is in the image's labels
    and in --json; a bad one is exit 4.

    \b
    Tags (local): gobuild/go:<go version>-<variant>-<arch>, e.g. gobuild/go:1.22.10-slim-arm64
    Tags (--push): HOST/NS/go:<version>-<variant>-<arch>, joined into HOST/NS/go:<version>-<variant>
                   and HOST/NS/go:<minor>-<variant>; platforms already in the registry under
                   that tag are kept, so amd64 and arm64 may be pushed by separate runs one
                   after the other (in parallel: --no-join, then gobuild join)

    \b
    Examples:
      gobuild images --platform linux/arm64 --go 1.22
      gobuild images --platform linux/amd64 --platform linux/arm64   # the 64-bit ones only
      gobuild images --platform linux/arm/v6 --go 1.22 --verify      # Pi Zero/Pi 1: slim, qemu-arm smoke
      gobuild images --variant slim --verify
      gobuild images --push --registry localhost:5000/gobuild
      gobuild images --push --no-join --registry ghcr.io/acme --platform linux/arm64 --json
      gobuild images --platform linux/arm64 --json
      gobuild images --release-keyring ~/go-release.gpg --go 1.22
      gobuild images --host local --host pi5=ssh://pi@pi5.local --variant slim   # each platform on its own host
      gobuild images --host local --host label=pi5,platforms=linux/arm64+linux/arm/v7,url=ssh://pi@pi5.local
    """
    if push and not registry:
        raise ConfigError("--push needs --registry HOST/NAMESPACE (for example localhost:5000/gobuild)")
    if no_join and not push:
        raise ConfigError("--no-join only applies to --push: add --push --registry HOST/NAMESPACE")
    if registry:
        pipeline.check_publish(pipeline.Publish(registry=registry))  # before building anything
    publish = pipeline.Publish(registry=registry, join=not no_join) if push else None
    if buildx_nodes and not hosts:
        raise ConfigError("--buildx-nodes goes with --host: gobuild images --host local --host pi5=ssh://pi@pi5 --buildx-nodes fleet")
    if hosts:
        if push:
            raise ConfigError("--push with --host is not supported yet: build on the fleet, then push "
                              "from each host with gobuild images --push on it")
        from .fleet import build_images as fleet_build

        with download_progress() as progress:
            fleet = fleet_build(inputs, hosts, force=force, verify=verify, progress=progress,
                                buildx_nodes=buildx_nodes,
                                trust=trust,
                                log=lambda line: click.echo(f"gobuild: {line}", err=True))
        if as_json:
            emit(fleet.as_json(), True, "")
        else:
            for label, i in fleet.built:
                click.echo(f"{i.status:<11} {i.tag:<36} {i.platform:<12} {label:<12} "
                           f"{i.size / 1e6:7.1f} MB  {i.image_id[7:19]}")
        if fleet.skipped:
            from .errors import Partial

            raise Partial("partial: " + "; ".join(f"host {h} skipped: {e}" for h, e in fleet.skipped))
        return
    with download_progress() as progress:
        result = pipeline.build_images(inputs.cells(), inputs.lock(), inputs.templates, force=force,
                                       verify=verify, publish=publish, progress=progress,
                                       trust=trust)
    click.echo(f"downloaded {result.downloaded_bytes} bytes; verified {result.verified} images",
               err=True)
    if as_json:
        emit(result.as_json(), True, "")
        return
    for i in result.images:
        click.echo(f"{i.status:<11} {i.tag:<36} {i.platform:<12} {i.size / 1e6:7.1f} MB  {i.image_id[7:19]}")
    for p in result.pushed:
        click.echo(f"{'pushed':<11} {p.ref}@{p.digest}")
    _print_joined(result.joined)


def _print_joined(joined) -> None:
    for j in joined:
        for tag in j.tags:
            click.echo(f"{'pushed':<11} {tag} ({', '.join(j.manifests)})")


@click.command("pull")
@inputs_options
@click.option("--registry", required=True, metavar="HOST/NAMESPACE",
              help="The registry the images were pushed to.")
@click.option("--digest", metavar="sha256:...",
              help="Pull exactly this image instead of the moving tag: the index digest "
                   "'gobuild join --json' printed (any platform), or a per-arch digest of "
                   "'gobuild images --push --json' (then also its one --platform). Select one Go "
                   "version and variant.")
@json_option
def pull_cmd(inputs: Inputs, registry: str, digest: str | None, as_json: bool) -> None:
    """Pull prebuilt images for the selected cells instead of building them.

    Each cell's multi-arch tag is pulled for its platform (or, with --digest, the pinned
    image), its toolchain label is checked against the lock, and it is tagged locally as
    'gobuild images' would have tagged it.

    \b
    Examples:
      gobuild pull --registry ghcr.io/acme --go 1.22 --platform linux/amd64
      gobuild pull --registry ghcr.io/acme --go 1.22 --variant bookworm \\
          --digest sha256:4f3c...   # what the publish job's join printed
    """
    pulled = pipeline.pull(inputs.cells(), inputs.lock(), registry, digest=digest)
    emit(pulled, as_json, "\n".join(f"pulled {p['remote']} ({p['platform']}) as {p['tag']}" for p in pulled))


@click.command("join")
@inputs_options
@click.option("--registry", required=True, metavar="HOST/NAMESPACE",
              help="The registry holding the per-arch tags.")
@click.option("--digests", "digests", multiple=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Join exactly the images this file names (the --json output of 'gobuild "
                   "images --push --no-join' of one runner); repeatable. Default: each "
                   "selected cell's per-arch tag as the registry has it now.")
@click.option("--annotation", "annotations", multiple=True, metavar="KEY=VALUE",
              help="Index annotation for the multi-arch tags, repeatable (registries show them "
                   "for the tag); org.opencontainers.image.version and .description are set "
                   "from the lock and the matrix.")
@json_option
def join_cmd(inputs: Inputs, registry: str, digests: tuple[Path, ...], annotations: tuple[str, ...],
             as_json: bool) -> None:
    """Join per-arch tags already in the registry into the multi-arch tags.

    For CI with one runner per architecture: each runner pushes its images with
    'gobuild images --push --no-join --json > digests.json', and a later job joins them
    (--digests: exactly those images). Every selected cell's per-arch tag
    (HOST/NS/go:<version>-<variant>-<arch>) must be in the registry, else nothing is
    joined; platforms the multi-arch tag already lists and that are not selected are kept.
    No engine is needed, only docker buildx and the registry. --json prints each index's
    digest, for 'gobuild pull --digest'.

    \b
    Examples:
      gobuild join --registry ghcr.io/acme
      gobuild join --registry localhost:5000/gobuild --go 1.22 --variant slim --json
      gobuild join --registry ghcr.io/acme --digests amd64.json --digests arm64.json \\
          --annotation org.opencontainers.image.source=https://github.com/acme/go-images
    """
    joined = pipeline.join(inputs.cells(), inputs.lock(), registry, digests=digests,
                           annotations=annotations)
    if as_json:
        emit([j.as_json() for j in joined], True, "")
        return
    _print_joined(joined)
