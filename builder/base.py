"""Base images for the Debian-based variants, built from the Debian archive when no registry
is reachable (``gobuild base``), and the choice of base for each build.

A locally built base already holds what both variants need (ca-certificates, git, gcc,
libc6-dev for cgo; busybox-static for the slim variant), so a build FROM it runs no package
manager, and a cross build runs almost nothing under emulation.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from .errors import EngineError
from .matrix import Variant, debian_arch, image_platform, platform_tag
from .toolchains import sha256_file

BASE_REPO = "gobuild/base"
BASE_PACKAGES = ("ca-certificates", "git", "gcc", "libc6-dev", "busybox-static")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITES = ("bookworm", "trixie")
EPOCH = "1970-01-01T00:00:00Z"
# The upstream image a local base stands in for (debian:bookworm-slim): a variant whose matrix
# names another base never gets this one.
STANDS_FOR_LABEL = "io.gobuild.base.for"
BUILT_BY = "gobuild base (mmdebstrap)"


def tag_platform(arch: str) -> str:
    """The platform of an arch tag (base tags name platforms so): "arm-v7" -> "linux/arm/v7"."""
    return "linux/" + arch.replace("-", "/")


def base_tag(suite: str, arch: str) -> str:
    return f"{BASE_REPO}:{suite}-{arch}"


def upstream_of(suite: str) -> str:
    """The image a gobuild base of this suite replaces."""
    return f"debian:{suite}-slim"


def suite_of(variant: Variant) -> str:
    """The Debian suite a variant's base names (debian:bookworm-slim -> bookworm)."""
    tag = variant.base.split("@")[0].rsplit(":", 1)[-1]
    for suite in SUITES:
        if tag.startswith(suite):
            return suite
    return "bookworm"


def mmdebstrap_argv(suite: str, arch: str, packages: tuple[str, ...], out: Path,
                    mirror: str) -> list[str]:
    return [
        "mmdebstrap", "--variant=minbase", f"--architectures={debian_arch(tag_platform(arch))}",
        f"--include={','.join(packages)}", "--format=tar",
        "--aptopt=Acquire::Retries \"3\"",
        "--customize-hook=rm -rf \"$1\"/var/cache/apt/* \"$1\"/var/lib/apt/lists/*",
        suite, str(out), mirror,
    ]


def load_rootfs(client: docker.DockerClient, rootfs: Path, ref: str, arch: str, work: Path,
                labels: dict[str, str] | None = None) -> str:
    """Load a root file system tarball as a one-layer image of the given architecture.

    'docker import --platform' records the engine's own architecture on engine 20.10, so the
    image is written in the docker-archive format (manifest, config, layer) and loaded; the
    config names the architecture and a fixed creation date, as reproducible builders do.
    """
    diff_id = "sha256:" + sha256_file(rootfs)
    config = {
        "architecture": arch.split("-")[0], "os": "linux", "created": EPOCH,
        **({"variant": arch.split("-")[1]} if "-" in arch else {}),
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["bash"], "Labels": dict(labels or {})},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": BUILT_BY}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id[7:] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]).encode()
    archive = work / "image.tar"
    with tarfile.open(archive, "w") as tf:
        for name, data in ((config_name, config_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        tf.add(rootfs, arcname=layer_name)
    with open(archive, "rb") as fh:
        client.images.load(fh)
    return client.images.get(ref).id


def build(client: docker.DockerClient, suite: str, arch: str, mirror: str = DEBIAN_MIRROR) -> str:
    """Build gobuild/base:<suite>-<arch> with mmdebstrap and import it; return its image id."""
    if not shutil.which("mmdebstrap"):
        raise EngineError("mmdebstrap is not installed: apt-get install mmdebstrap (or make setup)")
    with tempfile.TemporaryDirectory(prefix="gobuild-base-") as tmp:
        out = Path(tmp) / "rootfs.tar"
        argv = mmdebstrap_argv(suite, arch, BASE_PACKAGES, out, mirror)
        print(f"gobuild: building {base_tag(suite, arch)} from {mirror} (mmdebstrap)",
              file=sys.stderr)
        proc = subprocess.run(argv, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if proc.returncode != 0:
            raise EngineError(
                f"mmdebstrap failed for {suite}/{arch} (exit {proc.returncode}): "
                "see its output above; foreign architectures need qemu (make setup)"
            )
        return load_rootfs(client, out, base_tag(suite, arch), arch, Path(tmp),
                           labels={STANDS_FOR_LABEL: upstream_of(suite)})


@dataclass(frozen=True, kw_only=True)
class BaseImage:
    ref: str
    image_id: str
    built: bool  # False: it existed and --force was not given


def build_bases(client: docker.DockerClient, platforms: tuple[str, ...], suite: str,
                mirror: str = DEBIAN_MIRROR, force: bool = False) -> Iterator[BaseImage]:
    """Build the base of each platform that lacks one (every one with force), one at a time,
    yielding each as it is done."""
    for platform in platforms:
        arch = platform_tag(platform)  # "arm64"; "arm-v7": v7 and v6 bases differ
        ref = base_tag(suite, arch)
        if not force:
            try:
                yield BaseImage(ref=ref, image_id=client.images.get(ref).id, built=False)
                continue
            except docker.errors.ImageNotFound:
                pass
        yield BaseImage(ref=ref, image_id=build(client, suite, arch, mirror), built=True)


def _platform_image(client: docker.DockerClient, ref: str, arch: str):
    """The engine's image ref when it holds that image for arch, else None."""
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    platform = image_platform(image.attrs.get("Architecture", ""), image.attrs.get("Variant"))
    return image if platform_tag(platform) == arch else None  # arch is a tag: "arm64", "arm-v7"


def _has_platform_image(client: docker.DockerClient, ref: str, arch: str) -> bool:
    return _platform_image(client, ref, arch) is not None


def stands_for(labels: dict[str, str], history: list[dict], suite: str) -> str | None:
    """The upstream image a local base was built to replace, from its labels (or None).

    Bases built before the label existed are recognised by the history entry gobuild writes
    (docker history): every one of them stood in for debian:<suite>-slim."""
    if STANDS_FOR_LABEL in labels:
        return labels[STANDS_FOR_LABEL]
    if any(h.get("CreatedBy") == BUILT_BY for h in history):
        return upstream_of(suite)
    return None


def same_image_name(a: str, b: str) -> bool:
    """debian:bookworm-slim and docker.io/library/debian:bookworm-slim name one image."""
    def norm(ref: str) -> str:
        for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
            if ref.startswith(prefix):
                return ref[len(prefix):]
        return ref

    return norm(a) == norm(b)


def choose(client: docker.DockerClient, variant: Variant, arch: str) -> str:
    """The FROM image for a variant on an arch: the local gobuild base when it was built for the
    very base the variant names, else the variant's base (pulled for that platform if the
    engine lacks it)."""
    suite = suite_of(variant)
    local = base_tag(suite, arch)
    image = _platform_image(client, local, arch)
    if image is not None:
        labels = image.labels or {}
        history = [] if STANDS_FOR_LABEL in labels else image.history()
        if same_image_name(stands_for(labels, history, suite) or "", variant.base):
            return local
    if _has_platform_image(client, variant.base, arch):
        return variant.base
    # One tag holds one platform in the engine's store, so keep each arch's pull apart; the tag
    # names the base it holds, so that two variants with different bases never share one.
    pulled = upstream_tag(variant.base, arch)
    if _has_platform_image(client, pulled, arch):
        return pulled
    try:
        image = client.images.pull(variant.base, platform=tag_platform(arch))
        image.tag(pulled)
    except docker.errors.APIError:
        fix = (f"run 'gobuild base --platform {tag_platform(arch)}' to build it from the Debian archive"
               if same_image_name(variant.base, upstream_of(suite)) else
               f"load {variant.base} for {tag_platform(arch)} into the engine (docker pull or docker load)")
        raise EngineError(
            f"cannot pull {variant.base} for {tag_platform(arch)} (no registry reachable?): {fix}"
        ) from None
    return pulled


def upstream_tag(base: str, arch: str) -> str:
    """The local tag a pulled variant base is kept under: debian:bookworm-slim, arm64 ->
    gobuild/base:upstream-debian_bookworm-slim-arm64."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", base)[:110]
    return f"{BASE_REPO}:upstream-{name}-{arch}"
