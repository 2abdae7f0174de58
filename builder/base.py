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
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors

from .errors import EngineError
from .matrix import Variant
from .toolchains import sha256_file

BASE_REPO = "gobuild/base"
BASE_PACKAGES = ("ca-certificates", "git", "gcc", "libc6-dev", "busybox-static")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITES = ("bookworm", "trixie")
EPOCH = "1970-01-01T00:00:00Z"


def base_tag(suite: str, arch: str) -> str:
    return f"{BASE_REPO}:{suite}-{arch}"


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
        "mmdebstrap", "--variant=minbase", f"--architectures={arch}",
        f"--include={','.join(packages)}", "--format=tar",
        "--aptopt=Acquire::Retries \"3\"",
        "--customize-hook=rm -rf \"$1\"/var/cache/apt/* \"$1\"/var/lib/apt/lists/*",
        suite, str(out), mirror,
    ]


def load_rootfs(c: docker.DockerClient, rootfs: Path, ref: str, arch: str, work: Path) -> str:
    """Load a root file system tarball as a one-layer image of the given architecture.

    'docker import --platform' records the engine's own architecture on engine 20.10, so the
    image is written in the docker-archive format (manifest, config, layer) and loaded; the
    config names the architecture and a fixed creation date, as reproducible builders do.
    """
    diff_id = "sha256:" + sha256_file(rootfs)
    config = {
        "architecture": arch, "os": "linux", "created": EPOCH,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["bash"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": "gobuild base (mmdebstrap)"}],
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
        c.images.load(fh)
    return c.images.get(ref).id


def build(c: docker.DockerClient, suite: str, arch: str, mirror: str = DEBIAN_MIRROR) -> str:
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
        return load_rootfs(c, out, base_tag(suite, arch), arch, Path(tmp))


def _has_platform_image(c: docker.DockerClient, ref: str, arch: str) -> bool:
    try:
        return c.images.get(ref).attrs.get("Architecture") == arch
    except docker.errors.ImageNotFound:
        return False


def choose(c: docker.DockerClient, variant: Variant, arch: str) -> str:
    """The FROM image for a variant on an arch: a local gobuild base, else the variant's base
    (pulled for that platform if the engine lacks it)."""
    local = base_tag(suite_of(variant), arch)
    if _has_platform_image(c, local, arch):
        return local
    if _has_platform_image(c, variant.base, arch):
        return variant.base
    # One tag holds one platform in the engine's store, so keep each arch's pull apart.
    pulled = f"{BASE_REPO}:upstream-{suite_of(variant)}-{arch}"
    if _has_platform_image(c, pulled, arch):
        return pulled
    try:
        image = c.images.pull(variant.base, platform=f"linux/{arch}")
        image.tag(pulled)
    except docker.errors.APIError:
        raise EngineError(
            f"cannot pull {variant.base} for linux/{arch} (no registry reachable?): "
            f"run 'gobuild base --platform linux/{arch}' to build it from the Debian archive"
        ) from None
    return pulled
