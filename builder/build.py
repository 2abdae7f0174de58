"""Images: one buildx call per cell (one platform each), tags, labels, and skip-if-unchanged.

The Go tree is copied into the image, never compiled, so a cross build runs nothing of the
toolchain under emulation. Each image carries a label with the digest of everything it was
built from; a second run finds that label and builds nothing.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from . import base as bases
from . import crossbuild, engine, prune, reproducible, sbom, signature, toolchains, userland
from .errors import BuildError, EngineError
from .lock import Artifact, Lock, Release
from .matrix import Cell, debian_arch
from .render import Context

IMAGE_REPO = "gobuild/go"
INPUT_LABEL = "io.gobuild.input"


def image_tag(release: Release, cell: Cell, repo: str = IMAGE_REPO) -> str:
    """The documented per-arch tag: <repo>:<go version>-<variant>-<arch>."""
    return f"{repo}:{release.version}-{cell.variant.name}-{cell.arch_tag}"


def joined_tags(version: str, variant: str, repo: str) -> list[str]:
    """The tags that join the arches: <repo>:<go version>-<variant> and <repo>:<minor>-<variant>.

    The one place this rule lives (push, join and pull use it)."""
    minor = ".".join(version.split(".")[:2])
    return [f"{repo}:{version}-{variant}", f"{repo}:{minor}-{variant}"]


def multiarch_tags(release: Release, cell: Cell, repo: str) -> list[str]:
    return joined_tags(release.version, cell.variant.name, repo)


def input_digest(ctx: Context, artifact: Artifact, base_image_id: str,
                 signature_verdict: str = signature.UNAVAILABLE) -> str:
    """sha256 over every input of a build: rendered files, toolchain, base image (for slim:
    the userland's digest), the prune groups and how they are applied, and the signature
    verdict with its key (signature.expected), so its labels never go stale."""
    h = hashlib.sha256()
    for name, content in sorted(ctx.files.items()):
        h.update(f"file {name} {len(content)}\n".encode())
        h.update(content.encode())
    h.update(f"toolchain {artifact.sha256}\nbase {base_image_id}\n".encode())
    if ctx.cell.variant.prune:
        h.update(prune.fingerprint(ctx.cell.variant.prune).encode())
    if signature_verdict != signature.UNAVAILABLE:  # unavailable: digests as they were
        h.update(f"signature {signature_verdict}\n".encode())
    return h.hexdigest()


def buildx_argv(context_dir: Path, tag: str, platform: str, base_ref: str, digest: str) -> list[str]:
    return [
        "docker", "buildx", "build", "--load", "--progress=plain",
        "--platform", platform,
        "--tag", tag,
        *(["--build-arg", f"BASE={base_ref}"] if base_ref else []),  # slim has no base
        "--label", f"{INPUT_LABEL}={digest}",
        str(context_dir),
    ]


@dataclass(frozen=True, kw_only=True)
class Planned:
    cell: Cell
    release: Release
    artifact: Artifact
    context: Context
    tag: str
    base_ref: str  # "" for slim: it is made FROM scratch and the userland
    digest: str
    up_to_date: bool
    userland: userland.Userland | None = None
    trust: signature.Trust = field(default_factory=signature.Trust)  # release-signature checks


@dataclass(frozen=True, kw_only=True)
class Built:
    id: str
    tag: str
    platform: str
    image_id: str
    size: int
    toolchain_sha256: str
    go_version: str
    variant: str
    status: str  # "built" or "up-to-date"
    signature: str = "unavailable"  # the release signature's verdict: verified or unavailable
    sbom_sha256: str | None = None  # label io.gobuild.sbom.sha256; the file: sbom.path()

    def as_json(self) -> dict:
        return {
            "id": self.id, "tag": self.tag, "platform": self.platform,
            "image_id": self.image_id, "size": self.size,
            "toolchain_sha256": self.toolchain_sha256, "go_version": self.go_version,
            "variant": self.variant, "status": self.status, "signature": self.signature,
            "sbom_sha256": self.sbom_sha256,
            "sbom": str(sbom.path(toolchains.cache_dir(), self.sbom_sha256)) if self.sbom_sha256 else None,
        }


def plan(client: docker.DockerClient, contexts: list[Context], lock: Lock,
         cache_root: Path | None = None, trust: signature.Trust | None = None) -> list[Planned]:
    trust = trust or signature.Trust()
    planned = []
    base_ids: dict[tuple[str, str], tuple[str, str]] = {}
    lands: dict[tuple[str, str], userland.Userland] = {}
    for ctx in contexts:
        cell = ctx.cell
        land = None
        if cell.variant.kind == "slim":  # no base image: the userland is files in the context
            key = (bases.suite_of(cell.variant), debian_arch(cell.platform))
            if key not in lands:
                lands[key] = userland.ensure(cache_root or toolchains.cache_dir(), *key,
                                             bases.DEBIAN_MIRROR)
            land = lands[key]
            base_ref, base_id = "", f"userland {land.digest}"
        else:
            key = (cell.variant.base, cell.arch_tag)
            if key not in base_ids:
                ref = bases.choose(client, cell.variant, cell.arch_tag)
                base_ids[key] = (ref, client.images.get(ref).id)
            base_ref, base_id = base_ids[key]
        release, artifact = lock.release(cell), lock.artifact(cell)
        tag = image_tag(release, cell)
        digest = input_digest(ctx, artifact, base_id, signature.expected(artifact, trust))
        labels = engine.image_labels(client, tag)
        planned.append(Planned(
            cell=cell, release=release, artifact=artifact, context=ctx, tag=tag,
            base_ref=base_ref, digest=digest,
            up_to_date=bool(labels) and labels.get(INPUT_LABEL) == digest, userland=land,
            trust=trust,
        ))
    return planned


def assemble(work: Path, p: Planned, tree: Path) -> Path:
    """A build context: the rendered files, go/ hard-linked from the unpacked tree (less what
    the variant prunes; stripped tools are copies), and for slim the userland's trees."""
    folder = Path(tempfile.mkdtemp(prefix=f"{p.cell.id}-", dir=work))
    for name, content in p.context.files.items():
        (folder / name).write_text(content, encoding="utf-8")
    groups = p.cell.variant.prune
    strip = prune.strip_tool(p.cell.platform) if prune.SYMBOLS in groups else None
    for rel in prune.kept_files(tree, groups, p.cell.platform):
        src, dst = tree / rel, folder / "go" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if strip and prune.is_tool_binary(rel):
            prune.strip_into(src, dst, strip)
            continue
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    if p.userland is not None:
        userland.write_tree(folder, p.userland, p.context.files["passwd"], p.context.files["group"])
    if p.cell.goarm is not None:
        crossbuild.set_goarm(folder / "go" / "go.env", p.cell.goarm, p.cell.platform)
    return folder


def provenance_labels(client: docker.DockerClient, p: Planned) -> list[str]:
    """buildx's --label arguments for the signature verdict (and key) and the SBOM's digest
    (writes the SBOM into the cache)."""
    return [*signature.label_args(p.artifact, p.trust),
            *sbom.label_args(client, image=p.tag, release=p.release, artifact=p.artifact,
                             base_ref=p.base_ref, trust=p.trust,
                             suite=bases.suite_of(p.cell.variant))]  # the matrix's, not the tag's


def buildx_command(folder: Path, p: Planned, labels: list[str], environ: dict[str, str], *,
                   no_cache: bool = False) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of the buildx build of p (pure): the one command 'gobuild
    images' runs, and the reproducibility test too (with no_cache)."""
    argv = buildx_argv(folder, p.tag, p.cell.platform, p.base_ref, p.digest)
    argv = [*argv[:-1], *(["--no-cache"] if no_cache else []), *labels, argv[-1]]
    # the image's created time and history: the release's date (engines >= 23; older ones ignore it)
    return argv, {**environ, "SOURCE_DATE_EPOCH": str(reproducible.source_date_epoch(p.release))}


def _run_build(client: docker.DockerClient, p: Planned, folder: Path, use_buildx: bool) -> None:
    print(f"gobuild: building {p.tag} ({p.cell.platform}) FROM {p.base_ref or 'scratch'}", file=sys.stderr)
    if use_buildx:
        argv, env = buildx_command(folder, p, provenance_labels(client, p), dict(os.environ))
        proc = subprocess.run(argv, stdout=sys.stderr, stderr=sys.stderr, check=False, env=env)
        if proc.returncode != 0:
            try:  # a build broken off by the engine going away is the engine's error, not the build's
                client.ping()
            except Exception:  # noqa: BLE001 - any failure to answer means the same
                raise EngineError(f"the engine stopped answering while {p.cell.id} was built: "
                                  "start it again and run again (nothing was tagged)") from None
            raise BuildError(
                f"docker buildx build failed for {p.cell.id} (exit {proc.returncode}): "
                "see the build output above"
            )
        return
    try:  # docker-py's classic builder, when buildx is absent
        for line in client.api.build(path=str(folder), tag=p.tag, platform=p.cell.platform,
                                     buildargs={"BASE": p.base_ref} if p.base_ref else {}, labels={INPUT_LABEL: p.digest},
                                     pull=False, rm=True, forcerm=True, decode=True):
            if "stream" in line:
                sys.stderr.write(line["stream"])
            if "error" in line:
                raise BuildError(f"build failed for {p.cell.id}: {line['error'].strip()}")
    except docker.errors.APIError as exc:
        raise BuildError(f"build failed for {p.cell.id}: {exc.explanation}") from None


def built(client: docker.DockerClient, p: Planned, status: str) -> Built:
    img = client.images.get(p.tag)
    return Built(
        id=p.cell.id, tag=p.tag, platform=p.cell.platform, image_id=img.id,
        size=int(img.attrs.get("Size", 0)), toolchain_sha256=p.artifact.sha256,
        signature=(img.labels or {}).get(signature.LABEL, signature.UNAVAILABLE),
        sbom_sha256=(img.labels or {}).get(sbom.LABEL),
        go_version=p.release.version, variant=p.cell.variant.name, status=status,
    )


def build_all(client: docker.DockerClient, planned: list[Planned], cache: toolchains.Cache,
              progress: toolchains.Progress | None, force: bool = False) -> tuple[list[Built], int]:
    """Build what is not up to date; return every image and the bytes downloaded."""
    todo = [p for p in planned if force or not p.up_to_date]
    for p in todo:  # built toolchains (32-bit ARM from PyPI) are built, not downloaded
        if p.artifact.built:
            crossbuild.ensure(cache, p.release, p.artifact, engine.host_arch())
    stats = toolchains.fetch_all(cache, [p.artifact for p in todo if not p.artifact.built],
                                 progress)
    use_buildx = engine.buildx_version() is not None
    if todo and not use_buildx:
        print("gobuild: warning: docker buildx not found; using the engine's classic builder",
              file=sys.stderr)
    work = cache.root / "contexts"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for p in planned:
        if p in todo:
            tree = toolchains.unpack(cache, p.artifact, p.release.version)
            folder = assemble(work, p, tree)
            reproducible.go_layer(folder, reproducible.source_date_epoch(p.release))
            try:
                _run_build(client, p, folder, use_buildx)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            results.append(built(client, p, "built"))
        else:
            results.append(built(client, p, "up-to-date"))
    return results, stats.downloaded_bytes
