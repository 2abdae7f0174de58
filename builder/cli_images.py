"""`gobuild images` and `gobuild pull`."""
from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

import click

from . import engine
from .cli import Inputs, emit, inputs_options, json_option, main


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


@main.command("images")
@inputs_options
@click.option("--push", is_flag=True, help="Push per-arch tags, then join them into multi-arch tags.")
@click.option("--registry", metavar="HOST/NAMESPACE", help="Where --push sends the images.")
@click.option("--verify", is_flag=True,
              help="Smoke-test every image: go version, go build and go test offline, cgo in bookworm.")
@click.option("--force", is_flag=True, help="Rebuild even the images that are up to date.")
@json_option
def images_cmd(inputs: Inputs, push: bool, registry: str | None, verify: bool, force: bool,
               as_json: bool) -> None:
    """Build the image of every selected cell with buildx (one platform per build).

    The toolchain named in the lock is downloaded once into the cache
    ($XDG_CACHE_HOME/gobuild), verified against its sha256, and copied into the image:
    nothing of it runs under emulation. An image whose inputs are unchanged is not rebuilt.

    \b
    Tags (local): gobuild/go:<go version>-<variant>-<arch>, e.g. gobuild/go:1.22.10-slim-arm64
    Tags (--push): HOST/NS/go:<version>-<variant>-<arch>, joined into HOST/NS/go:<version>-<variant>
                   and HOST/NS/go:<minor>-<variant> for both platforms

    \b
    Examples:
      gobuild images --platform linux/arm64 --go 1.22
      gobuild images --variant slim --verify
      gobuild images --push --registry localhost:5000/gobuild
      gobuild images --platform linux/arm64 --json
    """
    from . import build, render, smoke, toolchains
    from .errors import ConfigError
    from .registry import repository

    if push and not registry:
        raise ConfigError("--push needs --registry HOST/NAMESPACE (for example localhost:5000/gobuild)")
    if registry:
        repository(registry)  # check it before building anything
    cells, lock = inputs.cells(), inputs.lock()
    contexts = render.render_all(render.environment(inputs.templates), cells, lock)
    c = engine.client()
    planned = build.plan(c, contexts, lock)
    cache = toolchains.Cache(root=toolchains.cache_dir())
    with download_progress() as progress:
        images, downloaded = build.build_all(c, planned, cache, progress, force=force)
    if verify:
        run_id = engine.new_run_id()
        try:
            for img, p in zip(images, planned):
                click.echo(f"gobuild: smoke test of {img.tag}", err=True)
                smoke.smoke(c, img, p.cell.variant.cgo, run_id)
        finally:
            engine.remove_labelled(c, run_id)
    joined = []
    if push:
        from .registry import push as push_images

        joined = push_images(c, images, registry)
    click.echo(f"downloaded {downloaded} bytes; verified {len(images) if verify else 0} images",
               err=True)
    if as_json:
        emit([i.as_json() for i in images], True, "")
        return
    for i in images:
        click.echo(f"{i.status:<11} {i.tag:<36} {i.platform:<12} {i.size / 1e6:7.1f} MB  {i.image_id[7:19]}")
    for t in joined:
        click.echo(f"{'pushed':<11} {t}")


@main.command("pull")
@inputs_options
@click.option("--registry", required=True, metavar="HOST/NAMESPACE",
              help="The registry the images were pushed to.")
@json_option
def pull_cmd(inputs: Inputs, registry: str, as_json: bool) -> None:
    """Pull prebuilt images for the selected cells instead of building them.

    Each cell's multi-arch tag is pulled for its platform, its toolchain label is checked
    against the lock, and it is tagged locally as 'gobuild images' would have tagged it.

    \b
    Examples:
      gobuild pull --registry ghcr.io/acme --go 1.22 --platform linux/amd64
    """
    from .registry import pull, repository

    repository(registry)
    pulled = pull(engine.client(), inputs.cells(), inputs.lock(), registry)
    emit(pulled, as_json, "\n".join(f"pulled {p['remote']} ({p['platform']}) as {p['tag']}" for p in pulled))
