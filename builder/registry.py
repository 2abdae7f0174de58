"""Registry work: push per-arch tags, join them into multi-arch tags, pull prebuilt images."""
from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

import docker
import docker.errors

from .build import Built, image_tag, multiarch_tags
from .errors import ConfigError, RegistryError
from .lock import Lock
from .matrix import Cell

REGISTRY_RE = re.compile(r"^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
IMAGE_NAME = "go"


def repository(registry: str) -> str:
    """HOST[:PORT]/NAMESPACE -> HOST[:PORT]/NAMESPACE/go, after checking the reference."""
    registry = registry.rstrip("/")
    if not REGISTRY_RE.match(registry) or "/" not in registry:
        raise ConfigError(
            f"--registry {registry!r} is not HOST/NAMESPACE (for example ghcr.io/acme or "
            "localhost:5000/gobuild)"
        )
    return f"{registry}/{IMAGE_NAME}"


def _push(c: docker.DockerClient, ref: str) -> None:
    repo, tag = ref.rsplit(":", 1)
    print(f"gobuild: pushing {ref}", file=sys.stderr)
    try:
        for line in c.images.push(repo, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise RegistryError(f"push of {ref} failed: {line['error'].strip()}")
    except docker.errors.APIError as exc:
        raise RegistryError(f"push of {ref} failed: {exc.explanation}") from None


def imagetools_argv(targets: list[str], sources: list[str]) -> list[str]:
    argv = ["docker", "buildx", "imagetools", "create"]
    for t in targets:
        argv += ["--tag", t]
    return argv + sources


def push(c: docker.DockerClient, images: list[Built], registry: str) -> list[str]:
    """Push every per-arch image, then join each version+variant into multi-arch tags."""
    repo = repository(registry)
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for b in images:
        remote = f"{repo}:{b.tag.split(':', 1)[1]}"
        c.images.get(b.tag).tag(remote)
        _push(c, remote)
        groups[(b.go_version, b.variant)].append(remote)
    joined = []
    for (version, variant), sources in sorted(groups.items()):
        minor = ".".join(version.split(".")[:2])
        targets = [f"{repo}:{version}-{variant}", f"{repo}:{minor}-{variant}"]
        proc = subprocess.run(imagetools_argv(targets, sorted(sources)), capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise RegistryError(
                f"joining {targets[0]} failed: {proc.stderr.strip().splitlines()[-1:]}: "
                "is docker buildx installed and the registry reachable?"
            )
        joined += targets
    return joined


def pull(c: docker.DockerClient, cells: tuple[Cell, ...], lock: Lock, registry: str) -> list[dict]:
    """Pull the multi-arch tag of each cell for its platform, check it against the lock, and
    tag it locally as gobuild would have built it."""
    repo = repository(registry)
    out = []
    for cell in cells:
        release, artifact = lock.release(cell), lock.artifact(cell)
        remote = multiarch_tags(release, cell, repo)[0]
        print(f"gobuild: pulling {remote} for {cell.platform}", file=sys.stderr)
        try:
            img = c.images.pull(remote, platform=cell.platform)
        except docker.errors.APIError as exc:
            raise RegistryError(
                f"cannot pull {remote} for {cell.platform}: {exc.explanation}: "
                "push it first (gobuild images --push) or check --registry"
            ) from None
        labels = img.labels or {}
        got = labels.get("io.gobuild.toolchain.sha256")
        if got != artifact.sha256:
            raise RegistryError(
                f"{remote} ({cell.platform}) carries toolchain sha256 {got}, the lock says "
                f"{artifact.sha256}: rebuild and push it, or re-lock"
            )
        arch = img.attrs.get("Architecture")
        if arch != cell.arch:
            raise RegistryError(f"{remote} for {cell.platform} pulled a {arch} image")
        local = image_tag(release, cell)
        img.tag(local)
        out.append({"id": cell.id, "tag": local, "remote": remote, "platform": cell.platform,
                    "image_id": img.id, "toolchain_sha256": got})
    return out
