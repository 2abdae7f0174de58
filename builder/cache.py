"""Persistent Go caches for `gobuild run`, `shell`: named volumes for GOCACHE and GOMODCACHE.

Keys (one volume each, per user: the uid the commands run as owns it):
- build cache (GOCACHE): per Go release and platform. Its entries are keyed by the compiler's
  own identity, so a cache shared with another release or architecture would get no hits and
  only grow; the two variants of one release and platform (bookworm, slim) share it, as they
  run the same compiler on the same sources.
- module cache (GOMODCACHE): per platform, shared by every Go version and variant of it. It
  holds module zips and their extracted sources, checked against go.sum and written under the
  go command's file locks, no compiled code: what one Go version puts there is what any other
  would. It is not shared across platforms only so that one platform's caches can be pruned
  alone.

A new volume belongs to root; a one-shot root container of the cell's own image (through the
one container lifecycle) gives it to the user before first use. Each run writes the time into
the volume (`.gobuild-last-use`, beside the folder Go uses, so that `go clean -cache` and
`-modcache` never meet a mount point), which `gobuild cache ls` and `prune --older-than` read.
"""
from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import docker
import docker.errors

from . import engine
from .errors import EngineError

CACHE_LABEL = "io.gobuild.cache"  # "build" or "mod"
GO_LABEL = "io.gobuild.cache.go"
PLATFORM_LABEL = "io.gobuild.cache.platform"
USER_LABEL = "io.gobuild.cache.user"
MOUNT_ROOT = "/gobuild-cache"
STAMP = ".gobuild-last-use"
INIT_TIMEOUT = 600

Kind = Literal["build", "mod"]
Log = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class CacheVolume:
    name: str
    kind: Kind
    go: str | None  # the Go release of a build cache; None: a module cache (every version)
    platform: str
    user: str  # "uid:gid" that owns it

    @property
    def mount(self) -> str:
        return f"{MOUNT_ROOT}/{self.kind}"

    @property
    def variable(self) -> str:
        return "GOCACHE" if self.kind == "build" else "GOMODCACHE"

    @property
    def path(self) -> str:
        """What the Go variable names: a folder inside the volume, not its mount point."""
        return f"{self.mount}/{'go-build' if self.kind == 'build' else 'mod'}"

    def labels(self) -> dict[str, str]:
        out = {CACHE_LABEL: self.kind, PLATFORM_LABEL: self.platform, USER_LABEL: self.user,
               engine.CREATED_LABEL: str(int(time.time()))}
        if self.go:
            out[GO_LABEL] = self.go
        return out


def volumes_for(go: str, platform: str, user: str) -> tuple[CacheVolume, CacheVolume]:
    """The build and module cache volumes of a cell's Go release and platform, for a user
    (pure)."""
    arch = platform.replace("/", "-")
    uid = user.split(":")[0]
    return (CacheVolume(name=f"gobuild-cache-build-go{go}-{arch}-u{uid}", kind="build", go=go,
                        platform=platform, user=user),
            CacheVolume(name=f"gobuild-cache-mod-{arch}-u{uid}", kind="mod", go=None,
                        platform=platform, user=user))


def environment(volumes: tuple[CacheVolume, ...]) -> dict[str, str]:
    return {v.variable: v.path for v in volumes}


def mounts(volumes: tuple[CacheVolume, ...]) -> dict[str, str]:
    return {v.name: v.mount for v in volumes}


def stamped(command: tuple[str, ...], volumes: tuple[CacheVolume, ...]) -> tuple[str, ...]:
    """command, run after writing the time into each cache volume (pure). `exec` keeps the
    command the container's main process: signals and the exit code are its own."""
    stamps = "".join(f"{{ date +%s >{shlex.quote(v.mount + '/' + STAMP)}; }} 2>/dev/null; "
                     for v in volumes)
    return ("sh", "-c", stamps + 'exec "$@"', "gobuild", *command)


def unclaimed(engine_client: docker.DockerClient, volumes: list[CacheVolume], *, image: str,
              run_id: str) -> list[CacheVolume]:
    """The existing volumes whose user has not claimed them: no last-use stamp of theirs (a run
    killed between creating a volume and handing it over leaves it root's, with none). Read
    as cache ls reads the stamps: a container that is created, never started."""
    if not volumes:
        return []
    spec = engine.Spec(image=image, command=("true",), role="cache-ls",
                       volumes={v.name: f"/v/{i}" for i, v in enumerate(volumes)})
    with engine.Container(engine_client, spec, run_id) as ctr:
        return [v for i, v in enumerate(volumes)
                if ctr.owners(f"/v/{i}/{STAMP}").get(STAMP) != v.user]


def ensure(engine_client: docker.DockerClient, volumes: tuple[CacheVolume, ...], *, image: str,
           platform: str, run_id: str, log: Log) -> None:
    """Create the volumes that do not exist yet and give them, and any existing one not yet
    its user's, to their user. A new volume whose handover fails is removed again, so that no
    root-owned cache is left to fail later runs."""
    fresh, existing = [], []
    for vol in volumes:
        try:
            engine_client.volumes.get(vol.name)
            existing.append(vol)
        except docker.errors.NotFound:
            try:
                engine_client.volumes.create(name=vol.name, labels=vol.labels())
            except docker.errors.APIError as exc:
                raise EngineError(f"the engine refused to create volume {vol.name}: "
                                  f"{exc.explanation}") from None
            fresh.append(vol)
    claim = unclaimed(engine_client, existing, image=image, run_id=run_id)
    if not fresh and not claim:
        return
    if fresh:
        log(f"new cache volume(s) {', '.join(v.name for v in fresh)}: owned by {fresh[0].user}")
    if claim:
        log(f"cache volume(s) {', '.join(v.name for v in claim)} not yet {claim[0].user}'s: "
            "handing them over")
    handed = fresh + claim
    users = {v.user for v in handed}
    if len(users) != 1:
        raise ValueError(f"cache volumes of several users at once: {sorted(users)}")
    spec = engine.Spec(image=image, command=("chown", handed[0].user, *(v.mount for v in handed)),
                       role="cache-init", platform=platform, user="0", volumes=mounts(tuple(handed)),
                       timeout=INIT_TIMEOUT)
    done = None
    try:
        done = engine.run(engine_client, spec, run_id)
    finally:
        if done is None or done.exit_code != 0:
            for vol in fresh:  # never an existing one: it may hold the user's cache
                with contextlib.suppress(docker.errors.APIError):
                    engine_client.volumes.get(vol.name).remove(force=True)
    if done.exit_code != 0:
        raise EngineError(f"cannot give the cache volumes to {handed[0].user} "
                          f"({done.tail()}): run again, or 'gobuild cache prune'")


@dataclass(frozen=True, kw_only=True)
class CacheInfo:
    name: str
    kind: str
    go: str | None
    platform: str
    user: str
    size: int | None  # bytes, as the engine counts them; None: not known
    created: int | None
    last_use: int | None  # unix seconds; None: never used by a run

    def as_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "go": self.go, "platform": self.platform,
                "user": self.user, "size": self.size, "created": self.created,
                "last_use": self.last_use}

    @property
    def used(self) -> int | None:
        """When it was last used, or made when never used."""
        return self.last_use or self.created


def owned_by(labels: dict, uid: str | None) -> bool:
    return uid is None or (labels.get(USER_LABEL) or "").split(":")[0] == uid


def list_caches(engine_client: docker.DockerClient, run_id: str,
                uid: str | None = None) -> list[CacheInfo]:
    """Every gobuild cache volume (of uid, when given) with its size (from the engine's disk
    usage) and last use (read from the volumes through a container that is created, never
    started)."""
    vols = sorted((v for v in engine_client.volumes.list(filters={"label": CACHE_LABEL})
                   if owned_by(v.attrs.get("Labels") or {}, uid)), key=lambda v: v.name)
    if not vols:
        return []
    sizes = {v["Name"]: (v.get("UsageData") or {}).get("Size")
             for v in engine_client.df().get("Volumes") or []}
    stamps = _read_stamps(engine_client, [v.name for v in vols], run_id)
    out = []
    for vol in vols:
        labels = vol.attrs.get("Labels") or {}
        created = labels.get(engine.CREATED_LABEL, "")
        size = sizes.get(vol.name)
        out.append(CacheInfo(
            name=vol.name, kind=labels.get(CACHE_LABEL, "?"), go=labels.get(GO_LABEL),
            platform=labels.get(PLATFORM_LABEL, "?"), user=labels.get(USER_LABEL, "?"),
            size=size if isinstance(size, int) and size >= 0 else None,
            created=int(created) if created.isdigit() else None, last_use=stamps.get(vol.name)))
    return out


def _read_stamps(engine_client: docker.DockerClient, names: list[str], run_id: str) -> dict[str, int]:
    """name -> the time its last run wrote. The container is only created, so the image's
    architecture does not matter and nothing runs; with no gobuild image at all, no times."""
    images = engine_client.images.list(name="gobuild/go")
    if not images:
        return {}
    image = next(tag for img in images for tag in img.tags)
    spec = engine.Spec(image=image, command=("true",), role="cache-ls",
                       volumes={name: f"/v/{i}" for i, name in enumerate(names)})
    out = {}
    with engine.Container(engine_client, spec, run_id) as ctr:
        for i, name in enumerate(names):
            for data in ctr.fetch(f"/v/{i}/{STAMP}").values():
                text = data.decode("ascii", "replace").strip()
                if text.isdigit():
                    out[name] = int(text)
    return out


def stale(caches: list[CacheInfo], older_than: float | None, now: float) -> list[CacheInfo]:
    """The caches to prune (pure): all of them, or those not used for older_than seconds."""
    if older_than is None:
        return list(caches)
    return [c for c in caches if c.used is None or now - c.used > older_than]


def prune(engine_client: docker.DockerClient, older_than: float | None, run_id: str,
          uid: str | None = None) -> list[tuple[CacheInfo, str | None]]:
    """Remove the cache volumes (of uid, when given) not used for older_than seconds (all,
    when None); returns each with None when removed, or why it was kept (a container uses
    it)."""
    out = []
    for info in stale(list_caches(engine_client, run_id, uid), older_than, time.time()):
        try:
            engine_client.volumes.get(info.name).remove(force=False)
            out.append((info, None))
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            out.append((info, str(exc.explanation)))
    return out


def list_all(uid: str | None = None,
             engine_client: docker.DockerClient | None = None) -> list[CacheInfo]:
    """`gobuild cache ls`."""
    engine_client = engine_client or engine.client()
    run_id = engine.new_run_id()
    with engine.cleanup_on_exit(engine_client, run_id):
        return list_caches(engine_client, run_id, uid)


def prune_all(older_than: float | None, uid: str | None = None,
              engine_client: docker.DockerClient | None = None) -> list[tuple[CacheInfo, str | None]]:
    """`gobuild cache prune`."""
    engine_client = engine_client or engine.client()
    run_id = engine.new_run_id()
    with engine.cleanup_on_exit(engine_client, run_id):
        return prune(engine_client, older_than, run_id, uid)
