"""32-bit Raspberry Pi images end to end: the project's slim linux/arm/v7 and linux/arm/v6
images of Go 1.22, whose toolchain the project lock records as built on the host from the
release's source (the PyPI wheels have none). `gobuild images` builds them with buildx (no
emulator needed: slim is files only; on a machine without the cached archive it first builds
the toolchain again from the lock's inputs and refuses it unless its sha256 is the lock's).
Checked: architecture and CPU variant, labels, the built toolchain's sha256, and under
qemu-arm what the board would see: `go version` says linux/arm and `go env GOARM` the variant.

The full smoke test (`images --verify`: a module built, tested and vetted) takes minutes per
image under qemu-arm: it is the acceptance command in the README, run by hand, not here (CI's
time). The bookworm linux/arm/v7 image needs an armhf Debian base (minutes under qemu): also
built by hand for the acceptance command.
"""
from __future__ import annotations

import json

import pytest

from builder import toolchains

from .conftest import ROOT, gobuild

GO = "1.22"
PLATFORMS = {"linux/arm/v7": ("v7", 7), "linux/arm/v6": ("v6", 6)}


@pytest.fixture(scope="module")
def lock_arm():
    entry = json.loads((ROOT / "images" / "lock.json").read_text())["go"][GO]
    return entry["version"], entry["files"]["arm"]


@pytest.fixture(scope="module")
def arm_images(docker_client):
    args = ["images", "--go", GO, "--variant", "slim", "--json"]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    built = gobuild(*args, timeout=2400)
    return built, {i["platform"]: i for i in json.loads(built.stdout)}


def test_the_lock_records_the_arm_toolchain_as_built_with_its_inputs(lock_arm):
    version, art = lock_arm
    assert art["source"] == "built" and art["filename"] == f"go{version}.linux-arm.tar.gz"
    inputs = art["built_from"]
    assert (inputs["goarch"], inputs["goarm"], inputs["recipe"]) == ("arm", 6, "make.bash -distpack")
    assert len(inputs["source_sha256"]) == 64 and len(inputs["host_sha256"]) == 64


def test_v7_and_v6_build_with_the_variant_in_their_tags(arm_images, lock_arm):
    _, images = arm_images
    version, _ = lock_arm
    assert set(images) == set(PLATFORMS)
    for platform, (variant, _) in PLATFORMS.items():
        assert images[platform]["tag"] == f"gobuild/go:{version}-slim-arm-{variant}"


def test_images_are_32_bit_arm_of_their_variant_and_labelled_built(arm_images, lock_arm,
                                                                    docker_client):
    _, images = arm_images
    _, art = lock_arm
    for platform, (variant, _) in PLATFORMS.items():
        attrs = docker_client.images.get(images[platform]["tag"]).attrs
        assert (attrs["Architecture"], attrs.get("Variant")) == ("arm", variant)
        labels = attrs["Config"]["Labels"]
        assert labels["io.gobuild.toolchain.source"] == "built"
        assert labels["io.gobuild.toolchain.sha256"] == art["sha256"]
        assert images[platform]["toolchain_sha256"] == art["sha256"]


def test_the_cached_built_archive_is_the_one_the_lock_names(arm_images, lock_arm):
    _, art = lock_arm
    blob = toolchains.Cache(root=toolchains.cache_dir()).blob(art["sha256"])
    assert blob.is_file(), "gobuild images should have built or found the arm toolchain"
    assert toolchains.sha256_file(blob) == art["sha256"]


def test_under_qemu_arm_go_says_linux_arm_and_goarm_is_the_variant(arm_images, lock_arm,
                                                                  docker_client):
    """What a board would print, run emulated (seconds: the go command starts, nothing builds).
    GOARM comes from the image's go.env: the environment sets none."""
    _, images = arm_images
    version, _ = lock_arm
    script = "go version && go env GOARCH GOARM && grep -c '^GOARM=' \"$(go env GOROOT)/go.env\""
    for platform, (_, goarm) in PLATFORMS.items():
        out = docker_client.containers.run(images[platform]["tag"], ["sh", "-c", script],
                                           platform=platform, network_disabled=True,
                                           remove=True).decode()
        assert out.split("\n") == [f"go version go{version} linux/arm", "arm", str(goarm), "1", ""], \
            (platform, out)
