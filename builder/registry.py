"""Registry work: push per-arch tags, join them into multi-arch tags, pull prebuilt images."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass

import docker
import docker.errors

from .build import Built, image_tag, joined_tags, multiarch_tags
from .errors import ConfigError, EngineError, RegistryError
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


@dataclass(frozen=True, kw_only=True)
class Pushed:
    """A per-arch image in the registry: its tag and the digest of its manifest."""

    id: str  # the cell's identifier
    ref: str  # HOST/NS/go:1.22.10-slim-arm64
    digest: str  # sha256:...
    platform: str
    go_version: str
    variant: str

    def as_json(self) -> dict:
        return {"id": self.id, "remote": self.ref, "digest": self.digest,
                "platform": self.platform}


@dataclass(frozen=True, kw_only=True)
class Joined:
    """A multi-arch tag and the per-arch manifests it lists, by platform."""

    tags: tuple[str, ...]
    manifests: dict[str, str]  # platform -> digest
    kept: tuple[str, ...]  # the platforms that were already in the registry and kept

    def as_json(self) -> dict:
        return {"tags": list(self.tags), "manifests": dict(self.manifests), "kept": list(self.kept)}


def _push(client: docker.DockerClient, ref: str) -> str:
    """Push one tag; return the digest the registry gave its manifest."""
    repo, tag = ref.rsplit(":", 1)
    print(f"gobuild: pushing {ref}", file=sys.stderr)
    digest = ""
    try:
        for line in client.images.push(repo, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise RegistryError(f"push of {ref} failed: {line['error'].strip()}")
            digest = (line.get("aux") or {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise RegistryError(f"push of {ref} failed: {exc.explanation}") from None
    if not digest.startswith("sha256:"):
        raise RegistryError(f"push of {ref} reported no digest: is {repo} a registry?")
    return digest


def imagetools_argv(targets: list[str], sources: list[str]) -> list[str]:
    argv = ["docker", "buildx", "imagetools", "create"]
    for t in targets:
        argv += ["--tag", t]
    return argv + sources


def inspect_argv(ref: str) -> list[str]:
    return ["docker", "buildx", "imagetools", "inspect", "--format", "{{json .Manifest}}", ref]


def _imagetools(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise EngineError("the docker CLI is not installed: install docker and docker-buildx "
                          "(make setup)") from None


def describe(ref: str) -> dict | None:
    """The registry's descriptor of ref (digest, mediaType, and manifests for an index), or
    None when the registry has no such tag."""
    proc = _imagetools(inspect_argv(ref))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if "not found" in last.lower():
            return None
        raise RegistryError(
            f"cannot read {ref} from the registry: {last}: is docker buildx installed and the "
            "registry reachable?"
        )
    return json.loads(proc.stdout)


def platform_key(platform: dict) -> str:
    """os/arch of an index entry; arm64's 'v8' variant is implied, arm's is kept."""
    key = f"{platform.get('os')}/{platform.get('architecture')}"
    if platform.get("architecture") == "arm" and platform.get("variant"):
        key += f"/{platform['variant']}"
    return key


def index_manifests(descriptor: dict | None) -> dict[str, str]:
    """platform -> digest of the image manifests an index lists (attestations left out).

    Raises when the tag holds a single image: whose platform it is cannot be told from the
    index, and replacing it would lose it."""
    if descriptor is None:
        return {}
    if "manifests" not in descriptor:
        raise RegistryError(
            "holds a single image, not a multi-arch index: delete that tag or join into another "
            "registry namespace"
        )
    out = {}
    for entry in descriptor["manifests"]:
        platform = entry.get("platform") or {}
        if platform.get("os", "unknown") == "unknown":  # attestation manifests
            continue
        out[platform_key(platform)] = entry["digest"]
    return out


def _read_index(ref: str) -> dict[str, str]:
    descriptor = describe(ref)
    try:
        return index_manifests(descriptor)
    except RegistryError as exc:
        raise RegistryError(f"{ref} {exc.message}") from None


def moves_minor(minor_now: dict[str, str], manifests: dict[str, str]) -> bool:
    """Whether the minor tag (1.22-slim) may point at the new set: only when that set lists
    every platform the minor tag lists now, so that no platform's users lose it (after a patch
    release pushed one platform at a time, the minor tag waits for the last one)."""
    return set(minor_now) <= set(manifests)


def join(repo: str, version: str, variant: str, new: dict[str, str]) -> Joined:
    """Point the multi-arch tags of version+variant at the new per-arch digests (platform ->
    digest) plus the other platforms the version's tag already lists in the registry.

    A kept platform takes the digest its own per-arch tag names now (a re-push of that tag
    wins over what the index listed). The minor tag (1.22-slim) moves with it only when
    nothing it lists now would be lost (moves_minor). Every source is a digest in the same
    repository: imagetools refuses one that is missing, so a tag never names a manifest that
    is not there. Runs joining the same tag must not run at once (each reads, then writes the
    index): parallel runners push with --no-join and one later job runs 'gobuild join'."""
    exact, minor = joined_tags(version, variant, repo)
    existing = _read_index(exact)
    kept = tuple(sorted(p for p in existing if p not in new))
    current = {}
    for platform in kept:
        per_arch = describe(f"{exact}-{platform.split('/', 1)[1].replace('/', '')}")
        current[platform] = per_arch["digest"] if per_arch else existing[platform]
    manifests = dict(sorted({**current, **new}.items()))
    minor_now = _read_index(minor)
    targets = [exact, minor] if moves_minor(minor_now, manifests) else [exact]
    sources = [f"{repo}@{digest}" for digest in manifests.values()]
    print(f"gobuild: joining {', '.join(manifests)} into {exact}"
          f"{' (kept from the registry: ' + ', '.join(kept) + ')' if kept else ''}", file=sys.stderr)
    if minor not in targets:
        print(f"gobuild: {minor} stays on its {', '.join(sorted(minor_now))} images until "
              f"{exact} lists every one of those platforms", file=sys.stderr)
    proc = _imagetools(imagetools_argv(targets, sources))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RegistryError(
            f"joining {exact} failed: {last}: is docker buildx installed and the registry "
            "reachable?"
        )
    return Joined(tags=tuple(targets), manifests=manifests, kept=kept)


def push(client: docker.DockerClient, images: list[Built], registry: str) -> list[Pushed]:
    """Push every per-arch image under HOST/NS/go:<version>-<variant>-<arch>."""
    repo = repository(registry)
    pushed = []
    for b in images:
        remote = f"{repo}:{b.tag.split(':', 1)[1]}"
        client.images.get(b.tag).tag(remote)
        pushed.append(Pushed(id=b.id, ref=remote, digest=_push(client, remote), platform=b.platform,
                             go_version=b.go_version, variant=b.variant))
    return pushed


def join_pushed(registry: str, pushed: list[Pushed]) -> list[Joined]:
    """Join freshly pushed per-arch images with what the registry already lists."""
    repo = repository(registry)
    groups: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for p in pushed:
        groups[(p.go_version, p.variant)][p.platform] = p.digest
    return [join(repo, version, variant, new) for (version, variant), new in sorted(groups.items())]


def join_cells(cells: tuple[Cell, ...], lock: Lock, registry: str) -> list[Joined]:
    """Join per-arch tags already in the registry (pushed by other runners with
    'gobuild images --push --no-join') into the multi-arch tags of the selected cells.

    Every selected cell's per-arch tag must be there; nothing is joined otherwise."""
    repo = repository(registry)
    groups: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    missing = []
    for cell in cells:
        release = lock.release(cell)
        ref = f"{repo}:{image_tag(release, cell).split(':', 1)[1]}"
        descriptor = describe(ref)
        if descriptor is None:
            missing.append((ref, cell.platform))
            continue
        groups[(release.version, cell.variant.name)][cell.platform] = descriptor["digest"]
    if missing:
        ref, platform = missing[0]
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise RegistryError(
            f"{ref}{more} not in the registry: push it first (gobuild images --push --no-join "
            f"--platform {platform}) or select only what was pushed (--platform, --variant, --go)"
        )
    return [join(repo, version, variant, new) for (version, variant), new in sorted(groups.items())]


def pull(client: docker.DockerClient, cells: tuple[Cell, ...], lock: Lock, registry: str) -> list[dict]:
    """Pull the multi-arch tag of each cell for its platform, check it against the lock, and
    tag it locally as gobuild would have built it."""
    repo = repository(registry)
    out = []
    for cell in cells:
        release, artifact = lock.release(cell), lock.artifact(cell)
        remote = multiarch_tags(release, cell, repo)[0]
        print(f"gobuild: pulling {remote} for {cell.platform}", file=sys.stderr)
        try:
            img = client.images.pull(remote, platform=cell.platform)
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
