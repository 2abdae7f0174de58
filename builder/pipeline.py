"""The images flow as a library function: render, plan, fetch, build, smoke-test, push, join.

No Click here: a test, a workflow step or another command calls ``build_images`` with what it
wants and gets a typed result back. Progress goes to stderr (or to the ``log`` callback).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker

from . import base, build, crossbuild, engine, registry, render, signature, smoke, toolchains
from .errors import ConfigError
from .lock import Lock, Release, load_lock, write_lock
from .matrix import Cell, Matrix, platform_arch
from .sources import date_from_headers, list_releases, resolve, warn_stderr

Log = Callable[[str], None]


def log_stderr(message: str) -> None:
    print(f"gobuild: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, kw_only=True)
class Publish:
    """Where and how to push: per-arch tags to registry, joined into multi-arch tags unless
    join is False (per-runner CI builds join later with 'gobuild join')."""

    registry: str
    join: bool = True


@dataclass(frozen=True, kw_only=True)
class ImagesResult:
    images: tuple[build.Built, ...]
    downloaded_bytes: int
    verified: int  # images smoke-tested
    pushed: tuple[registry.Pushed, ...] = ()
    joined: tuple[registry.Joined, ...] = ()

    def as_json(self) -> list[dict]:
        """One entry per image; 'remote' and 'digest' when it was pushed."""
        by_id = {p.id: p for p in self.pushed}
        out = []
        for image in self.images:
            entry = image.as_json()
            if image.id in by_id:
                entry.update(remote=by_id[image.id].ref, digest=by_id[image.id].digest)
            out.append(entry)
        return out


def check_publish(publish: Publish | None) -> None:
    """Refuse a bad --registry before anything is built."""
    if publish is not None:
        registry.repository(publish.registry)


def build_images(cells: tuple[Cell, ...], lock: Lock, templates: Path | None, *,
                 force: bool = False, verify: bool = False, publish: Publish | None = None,
                 progress: toolchains.Progress | None = None, log: Log = log_stderr,
                 client: docker.DockerClient | None = None,
                 trust: signature.Trust | None = None) -> ImagesResult:
    """Build (or find up to date) the image of every cell; optionally smoke-test and push them."""
    check_publish(publish)
    contexts = render.render_all(render.environment(templates), cells, lock)
    client = client or engine.client()
    trust = trust or signature.Trust()
    planned = build.plan(client, contexts, lock, trust=trust)
    cache = toolchains.Cache(root=toolchains.cache_dir())
    # sha256 and release signature checked before anything is built (build_all finds them cached)
    fetched = signature.fetch_and_check(cache, [p.artifact for p in planned if force or not p.up_to_date],
                                        trust, progress)
    images, downloaded = build.build_all(client, planned, cache, progress, force=force)
    downloaded += fetched
    if verify:
        verify_images(client, images, [p.cell.variant.cgo for p in planned], log)
    pushed: list[registry.Pushed] = []
    joined: list[registry.Joined] = []
    if publish is not None:
        pushed = registry.push(client, images, publish.registry)
        if publish.join:
            joined = registry.join_pushed(publish.registry, pushed, cells)
    return ImagesResult(images=tuple(images), downloaded_bytes=downloaded,
                        verified=len(images) if verify else 0, pushed=tuple(pushed),
                        joined=tuple(joined))


def verify_images(client: docker.DockerClient, images: list[build.Built], cgo: list[bool],
                  log: Log = log_stderr) -> None:
    """Smoke-test each image; its containers are removed however this ends, SIGTERM included."""
    run_id = engine.new_run_id()
    log(f"smoke tests: run {run_id}")
    engine_arch = engine.arch(client)  # asked once, not per image
    with engine.cleanup_on_exit(client, run_id):
        for image, image_cgo in zip(images, cgo, strict=True):
            log(f"smoke test of {image.tag}")
            started = time.monotonic()
            result = smoke.smoke(client, image, image_cgo, run_id, engine_arch)
            how = "emulated, " if result.emulated else ""
            log(f"smoke test of {image.tag} passed ({how}{time.monotonic() - started:.0f} s): "
                f"{result.summary}")


def join(cells: tuple[Cell, ...], lock: Lock, registry_name: str, *,
         digests: Sequence[Path] = (), annotations: Sequence[str] = ()) -> list[registry.Joined]:
    """Join per-arch images into the selected cells' multi-arch tags, with index annotations
    (version and description from the lock and matrix, plus annotations as KEY=VALUE).

    Without digests, each cell's per-arch tag is read from the registry. With digests (the
    '--json' output of 'gobuild images --push --no-join' of each runner), exactly the images
    those files name are joined: a per-arch tag pushed again since then does not slip in."""
    if not cells:
        raise ConfigError("nothing to join: the selectors match no cell of the matrix")
    extra = dict(registry.parse_annotation(a) for a in annotations)
    registry.repository(registry_name)
    if not digests:
        return registry.join_cells(cells, lock, registry_name, extra)
    pushed = []
    for path in digests:
        pushed += registry.pushed_from_digests(_digests_file(path), cells, lock, registry_name,
                                               str(path))
    if not pushed:
        raise ConfigError(f"{', '.join(map(str, digests))} name no pushed image of the selected "
                          "cells: pass the --json output of 'gobuild images --push --no-join'")
    return registry.join_pushed(registry_name, pushed, cells, extra)


def _digests_file(path: Path) -> list:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read digests file {path}: {exc}: pass the --json output of "
                          "'gobuild images --push --no-join'") from None
    if not isinstance(data, list):
        raise ConfigError(f"digests file {path} is not a JSON list: pass the --json output of "
                          "'gobuild images --push --no-join'")
    return data


def pull(cells: tuple[Cell, ...], lock: Lock, registry_name: str,
         client: docker.DockerClient | None = None, digest: str | None = None) -> list[dict]:
    """Pull each cell's multi-arch tag for its platform, checked against the lock; with digest,
    exactly that image (one Go version and variant: an index digest serves every platform)."""
    registry.repository(registry_name)
    if digest is not None:
        if not registry.DIGEST_RE.match(digest):
            raise ConfigError(f"--digest {digest[:80]!r} is not sha256:<64 hex digits>: pass the "
                              "digest 'gobuild join --json' or 'gobuild images --json' printed")
        groups = sorted({(cell.go, cell.variant.name) for cell in cells})
        if len(groups) != 1:
            raise ConfigError(
                f"--digest pins one image, but the selectors match {len(groups)} Go versions "
                "and variants: select one with --go and --variant (and --platform for a "
                "per-arch digest)")
    return registry.pull(client or engine.client(), cells, lock, registry_name, digest)


def bases(platforms: tuple[str, ...], suite: str, mirror: str, force: bool = False,
          client: docker.DockerClient | None = None) -> Iterator[base.BaseImage]:
    """Build the Debian bases that are missing (each as it is done: a generator)."""
    yield from base.build_bases(client or engine.client(), platforms, suite, mirror, force)


@dataclass(frozen=True, kw_only=True)
class LockResult:
    path: Path
    changed: bool
    resolved: dict[str, Release]  # matrix version -> the release it resolved to


def relock(matrix: Matrix, cells: tuple[Cell, ...], lock_path: Path, *, source: str,
           mirror: str | None, pypi_index: str, trust: signature.Trust | None = None,
           progress: toolchains.Progress | None = None) -> LockResult:
    """Resolve the selected versions and write the lock; versions not selected are kept.
    Where the source serves a release signature, the archive is fetched and the signature
    verified now, and the lock records the verdict and the .asc URL (a bad one writes nothing)."""
    versions = tuple(dict.fromkeys(cell.go for cell in cells))
    releases = list_releases(source, mirror, pypi_index, warn_stderr)
    resolved = resolve(matrix, versions, releases, dated=date_from_headers)
    resolved = crossbuild.complete(resolved, arches=tuple(platform_arch(p) for p in matrix.platforms),
                                   cache=toolchains.Cache(root=toolchains.cache_dir()),
                                   host_arch=engine.host_arch())
    resolved = _with_signatures(resolved, trust or signature.Trust(), progress)
    old = load_lock(lock_path).go if lock_path.exists() else {}
    keep = {k: v for k, v in old.items() if k in matrix.go and k not in resolved}
    lock = Lock(go=dict(sorted({**keep, **resolved}.items())), path=lock_path)
    return LockResult(path=lock_path, changed=write_lock(lock), resolved=resolved)


def _with_signatures(resolved: dict[str, Release], trust: signature.Trust,
                     progress: toolchains.Progress | None) -> dict[str, Release]:
    """The releases with each archive's signature verdict and URL as checked now."""
    arts = [a for r in resolved.values() for a in r.files.values()]
    found = signature.lock_verdicts(toolchains.Cache(root=toolchains.cache_dir()), arts, trust,
                                    progress)
    return {minor: dataclasses.replace(r, files={
        arch: dataclasses.replace(a, signature=found[a.sha256][0], signature_url=found[a.sha256][1])
        if a.sha256 in found else a for arch, a in r.files.items()}) for minor, r in resolved.items()}
