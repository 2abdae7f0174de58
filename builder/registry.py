"""Registry work: push per-arch tags, join them into multi-arch tags, pull prebuilt images."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import docker
import docker.errors
import requests

from .build import Built, image_tag, joined_tags, multiarch_tags
from .errors import ConfigError, EngineError, RegistryError
from .lock import Lock
from .matrix import Cell, Variant, image_platform, platform_tag

REGISTRY_RE = re.compile(r"^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*\Z")
IMAGE_NAME = "go"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
# OCI annotation keys are reverse-domain names (org.opencontainers.image.source).
ANNOTATION_KEY_RE = re.compile(r"^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*\Z")
# Only an OCI image index holds annotations, and imagetools makes one only from OCI sources.
OCI_MEDIA_TYPES = frozenset({"application/vnd.oci.image.manifest.v1+json",
                             "application/vnd.oci.image.index.v1+json"})


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
    go: str = ""  # the matrix's Go version ("1.22"): what --go selects
    version: str = ""  # the Go release ("1.22.10")
    variant: str = ""
    digest: str = ""  # the index's own digest: what 'gobuild pull --digest' pins
    annotations: dict[str, str] = field(default_factory=dict)  # index-level

    def as_json(self) -> dict:
        return {"tags": list(self.tags), "manifests": dict(self.manifests), "kept": list(self.kept),
                "go": self.go, "version": self.version, "variant": self.variant,
                "digest": self.digest, "annotations": dict(self.annotations)}


def parse_annotation(text: str) -> tuple[str, str]:
    """KEY=VALUE of --annotation -> (key, value); one line, a reverse-domain key."""
    key, sep, value = text.partition("=")
    if not sep or not ANNOTATION_KEY_RE.match(key) or not value or "\n" in value or "\r" in value:
        raise ConfigError(
            f"--annotation {text[:60]!r} is not KEY=VALUE on one line (for example "
            "org.opencontainers.image.source=https://github.com/acme/go-images)"
        )
    return key, value


def index_annotations(version: str, variant: Variant | None,
                      extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a registry shows for a multi-arch tag: the index's own annotations (the per-arch
    images' labels are not read for an index). Version and description come from the lock and
    the matrix; extra (source, revision, ...) wins."""
    name = variant.name if variant else "?"
    what = variant.description if variant and variant.description else f"{name} variant"
    return {"org.opencontainers.image.version": version,
            "org.opencontainers.image.description": f"Go {version} ({name}): {what}",
            **dict(extra or {})}


# A push that fails (the registry restarting, a dropped connection, a refused blob) is tried
# again after 2, then 4 s: blobs the registry already has are not sent again, so a retry
# costs only what was missing.
PUSH_ATTEMPTS = 3
PUSH_BACKOFF_S = 2.0


def _push_once(client: docker.DockerClient, ref: str) -> str:
    """Push one tag; return the digest the registry gave its manifest."""
    repo, tag = ref.rsplit(":", 1)
    digest = ""
    try:
        for line in client.images.push(repo, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise RegistryError(f"push of {ref} failed: {line['error'].strip()}")
            digest = (line.get("aux") or {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise RegistryError(f"push of {ref} failed: {exc.explanation}") from None
    except requests.RequestException as exc:  # the engine's answer broke off
        raise RegistryError(f"push of {ref} failed: {type(exc).__name__}") from None
    if not digest.startswith("sha256:"):
        raise RegistryError(f"push of {ref} reported no digest: is {repo} a registry?")
    return digest


def _push(client: docker.DockerClient, ref: str, sleep=time.sleep) -> str:
    """_push_once, tried PUSH_ATTEMPTS times with a growing pause; the last error is raised."""
    print(f"gobuild: pushing {ref}", file=sys.stderr)
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            return _push_once(client, ref)
        except RegistryError as exc:
            if attempt == PUSH_ATTEMPTS:
                raise RegistryError(f"{exc.message} ({PUSH_ATTEMPTS} attempts): check that the "
                                    "registry is up and run again; nothing was joined") from None
            pause = PUSH_BACKOFF_S * 2 ** (attempt - 1)
            print(f"gobuild: {exc.message}; trying again in {pause:g} s", file=sys.stderr)
            sleep(pause)
    raise AssertionError("unreachable")


def imagetools_argv(targets: list[str], sources: list[str],
                    annotations: Mapping[str, str] | None = None) -> list[str]:
    """annotations go on the index (buildx >= 0.12: --annotation index:KEY=VALUE)."""
    argv = ["docker", "buildx", "imagetools", "create"]
    for t in targets:
        argv += ["--tag", t]
    for key, value in sorted((annotations or {}).items()):
        argv += ["--annotation", f"index:{key}={value}"]
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


def join(repo: str, version: str, variant: str, new: dict[str, str],
         annotations: Mapping[str, str] | None = None) -> Joined:
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
        per_arch = describe(f"{exact}-{platform_tag(platform)}")  # as image_tag names it
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
    if annotations:
        annotations = annotations_for(exact, {src: (describe(src) or {}).get("mediaType", "")
                                              for src in sources}, annotations)
    proc = _imagetools(imagetools_argv(targets, sources, annotations))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RegistryError(
            f"joining {exact} failed: {last}: is docker buildx installed and the registry "
            "reachable?"
        )
    return Joined(tags=tuple(targets), manifests=manifests, kept=kept, version=version,
                  variant=variant, annotations=dict(annotations or {}))


def _join_group(repo: str, cell: Cell | None, version: str, variant: str, new: dict[str, str],
                extra: Mapping[str, str] | None) -> Joined:
    """join() with the index annotations of the group; then the digest of the index made and
    the annotations it really carries (read back: see kept_annotations)."""
    wanted = index_annotations(version, cell.variant if cell else None, extra)
    joined = join(repo, version, variant, new, wanted)
    made = describe(joined.tags[0])
    kept = kept_annotations(joined.tags[0], joined.annotations)
    return dataclasses.replace(joined, go=cell.go if cell else "",
                               digest=made["digest"] if made else "", annotations=kept)


def raw_argv(ref: str) -> list[str]:
    return ["docker", "buildx", "imagetools", "inspect", "--raw", ref]


def non_oci(media_types: Mapping[str, str]) -> tuple[str, str] | None:
    """(source, media type) of the first source that is not OCI, or None when all are."""
    for source, media_type in sorted(media_types.items()):
        if media_type not in OCI_MEDIA_TYPES:
            return source, media_type or "manifest of unknown type"
    return None


def annotations_for(exact: str, media_types: Mapping[str, str],
                    annotations: Mapping[str, str]) -> dict[str, str]:
    """The annotations to ask imagetools for: all of them when every source (source -> media
    type) is OCI, none otherwise. From Docker v2 sources (what an engine with the classic image
    store pushes) imagetools makes a Docker manifest list, which holds no annotations: buildx
    0.13 drops them without a word and later releases (buildx PR 4091) refuse the join."""
    blocker = non_oci(media_types)
    if blocker is None:
        return dict(annotations)
    source, media_type = blocker
    print(f"gobuild: warning: {exact} is joined without index annotations: {source} is a "
          f"{media_type}, and only an index of OCI images holds them; to get them, push the "
          "per-arch images from an engine with the containerd image store (on a GitHub runner: "
          "docker/setup-docker-action with daemon-config features containerd-snapshotter)",
          file=sys.stderr)
    return {}


def kept_annotations(ref: str, asked: Mapping[str, str]) -> dict[str, str]:
    """The index annotations ref really carries (what --json reports). An index that cannot be
    read back is reported as carrying none, with a warning: the join itself succeeded, and
    failing now would hide the digest just made."""
    proc = _imagetools(raw_argv(ref))
    try:
        raw = json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        last = (proc.stderr.strip().splitlines() or ["not a JSON manifest"])[-1]
        print(f"gobuild: warning: cannot read {ref} back ({last}): its annotations are "
              "reported as none; check them with docker buildx imagetools inspect --raw",
              file=sys.stderr)
        return {}
    kept = dict(raw.get("annotations") or {})
    if asked and not kept:
        print(f"gobuild: warning: {ref} is a {raw.get('mediaType', 'manifest list')} that "
              "carries none of the annotations asked for: check docker buildx's version "
              "(0.12 or newer writes them)", file=sys.stderr)
    return kept


def push(client: docker.DockerClient, images: list[Built], registry: str) -> list[Pushed]:
    """Push every per-arch image under HOST/NS/go:<version>-<variant>-<arch>."""
    repo = repository(registry)
    pushed = []
    for b in images:
        remote = f"{repo}:{b.tag.split(':', 1)[1]}"
        client.images.get(b.tag).tag(remote)
        try:
            digest = _push(client, remote)
        except RegistryError:  # the local name of a push that failed is not left behind
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(remote, noprune=True)
            raise
        pushed.append(Pushed(id=b.id, ref=remote, digest=digest, platform=b.platform,
                             go_version=b.go_version, variant=b.variant))
    return pushed


def join_pushed(registry: str, pushed: list[Pushed], cells: tuple[Cell, ...] = (),
                annotations: Mapping[str, str] | None = None) -> list[Joined]:
    """Join freshly pushed per-arch images (or those a digests file names) with what the
    registry already lists. cells (those pushed) give each index its matrix version and
    description."""
    repo = repository(registry)
    by_id = {cell.id: cell for cell in cells}
    groups: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    group_cell: dict[tuple[str, str], Cell | None] = {}
    for p in pushed:
        groups[(p.go_version, p.variant)][p.platform] = p.digest
        group_cell.setdefault((p.go_version, p.variant), by_id.get(p.id))
    return [_join_group(repo, group_cell[key], key[0], key[1], new, annotations)
            for key, new in sorted(groups.items())]


def pushed_from_digests(entries: list[dict], cells: tuple[Cell, ...], lock: Lock,
                        registry: str, source: str) -> list[Pushed]:
    """The per-arch images a digests file names ('gobuild images --push --no-join --json' of
    each runner), checked against the matrix, the lock and this registry; entries of cells
    that are not selected are left out."""
    repo = repository(registry)
    by_id = {cell.id: cell for cell in cells}
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or "digest" not in entry:
            continue  # an image that was not pushed
        cell = by_id.get(str(entry.get("id")))
        if cell is None:
            continue
        release = lock.release(cell)
        ref = f"{repo}:{image_tag(release, cell).split(':', 1)[1]}"
        digest = str(entry["digest"])
        if entry.get("remote") != ref or not DIGEST_RE.match(digest):
            raise ConfigError(
                f"{source}: {cell.id} names {entry.get('remote')}@{digest}, expected {ref} "
                "with a sha256 digest: join with the --registry and lock the images were pushed with"
            )
        out.append(Pushed(id=cell.id, ref=ref, digest=digest, platform=cell.platform,
                          go_version=release.version, variant=cell.variant.name))
    return out


def join_cells(cells: tuple[Cell, ...], lock: Lock, registry: str,
               annotations: Mapping[str, str] | None = None) -> list[Joined]:
    """Join per-arch tags already in the registry (pushed by other runners with
    'gobuild images --push --no-join') into the multi-arch tags of the selected cells.

    Every selected cell's per-arch tag must be there; nothing is joined otherwise."""
    repo = repository(registry)
    groups: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    group_cell: dict[tuple[str, str], Cell] = {}
    missing = []
    for cell in cells:
        release = lock.release(cell)
        ref = f"{repo}:{image_tag(release, cell).split(':', 1)[1]}"
        descriptor = describe(ref)
        if descriptor is None:
            missing.append((ref, cell.platform))
            continue
        groups[(release.version, cell.variant.name)][cell.platform] = descriptor["digest"]
        group_cell.setdefault((release.version, cell.variant.name), cell)
    if missing:
        ref, platform = missing[0]
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise RegistryError(
            f"{ref}{more} not in the registry: push it first (gobuild images --push --no-join "
            f"--platform {platform}) or select only what was pushed (--platform, --variant, --go)"
        )
    return [_join_group(repo, group_cell[key], key[0], key[1], new, annotations)
            for key, new in sorted(groups.items())]


def pull(client: docker.DockerClient, cells: tuple[Cell, ...], lock: Lock, registry: str,
         digest: str | None = None) -> list[dict]:
    """Pull the multi-arch tag of each cell for its platform (or, with digest, exactly that
    image: the index or per-arch manifest a publish job produced), check it against the lock,
    and tag it locally as gobuild would have built it."""
    repo = repository(registry)
    pinned = describe(f"{repo}@{digest}") if digest else None
    if digest and pinned is None:
        raise RegistryError(f"{repo}@{digest} is not in the registry: check --registry and "
                            "--digest (the digest 'gobuild join --json' printed)")
    platforms = sorted({cell.platform for cell in cells})
    if pinned is not None and "manifests" not in pinned and len(platforms) != 1:
        raise ConfigError(f"--digest {digest} names one platform's image, but {len(platforms)} "
                          f"platforms are selected ({', '.join(platforms)}): select its --platform")
    out = []
    for cell in cells:
        release, artifact = lock.release(cell), lock.artifact(cell)
        remote = (_platform_ref(repo, digest, pinned, cell.platform) if digest
                  else multiarch_tags(release, cell, repo)[0])
        print(f"gobuild: pulling {remote} for {cell.platform}", file=sys.stderr)
        try:
            img = client.images.pull(remote, platform=cell.platform)
        except docker.errors.APIError as exc:
            raise RegistryError(
                f"cannot pull {remote} for {cell.platform}: {exc.explanation}: "
                "push it first (gobuild images --push) or check --registry"
                + (" and --digest" if digest else "")
            ) from None
        labels = img.labels or {}
        got = labels.get("io.gobuild.toolchain.sha256")
        if got != artifact.sha256:
            raise RegistryError(
                f"{remote} ({cell.platform}) carries toolchain sha256 {got}, the lock says "
                f"{artifact.sha256}: rebuild and push it, or re-lock"
                + (", or pin the digest of this cell's image" if digest else "")
            )
        got_platform = image_platform(img.attrs.get("Architecture", ""), img.attrs.get("Variant"))
        if got_platform != cell.platform:
            hint = (": that digest names one platform's image; select its --platform" if digest
                    else "")
            raise RegistryError(f"{remote} for {cell.platform} pulled a "
                                f"{got_platform.removeprefix('linux/')} image{hint}")
        local = image_tag(release, cell)
        img.tag(local)
        entry = {"id": cell.id, "tag": local, "remote": remote, "platform": cell.platform,
                 "image_id": img.id, "toolchain_sha256": got}
        if digest:
            entry["digest"] = digest
        out.append(entry)
    return out


def _platform_ref(repo: str, digest: str, descriptor: dict, platform: str) -> str:
    """repo@<the platform's own manifest digest> for a pinned index (one engine keeps one
    image per repo@digest, so two platforms pulled by one index digest would share a name),
    or repo@digest for a per-arch manifest."""
    if "manifests" not in descriptor:
        return f"{repo}@{digest}"
    listed = index_manifests(descriptor)
    if platform not in listed:
        raise RegistryError(f"{repo}@{digest} lists no {platform} image (it lists "
                            f"{', '.join(sorted(listed)) or 'none'}): select its --platform")
    return f"{repo}@{listed[platform]}"
