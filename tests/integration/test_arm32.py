"""32-bit Raspberry Pi images end to end: the slim linux/arm/v7 and linux/arm/v6 images of the
project's Go 1.22, whose toolchain gobuild built on the host from the release's source (the PyPI
wheels have none), built with buildx (no emulator needed: slim is files only), checked for their architecture,
CPU variant, labels and the built toolchain's sha256. Their smoke tests under qemu-arm are the
acceptance commands in the README (minutes each; not yet run to the end on this machine).

The bookworm linux/arm/v7 image needs an armhf Debian base (minutes under qemu): it is built by
hand for the acceptance command, not here.
"""
from __future__ import annotations

import json

import pytest

from builder import crossbuild, engine, toolchains
from builder.lock import Lock, load_lock, write_lock
from builder.matrix import load_matrix

from .conftest import ROOT, gobuild

GO = "1.22"
PLATFORMS = {"linux/arm/v7": ("v7", 7), "linux/arm/v6": ("v6", 6)}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with the 32-bit ARM platforms and the project's Go 1.22 release, whose arm
    toolchain is the project lock's when it has one, else built here the way 'gobuild lock'
    builds it (once: later runs find it in the shared cache under its inputs)."""
    matrix = load_matrix(ROOT / "images" / "matrix.yaml")
    lock = load_lock(ROOT / "images" / "lock.json")
    release = crossbuild.complete({GO: lock.go[GO]}, arches=("arm",),
                                  cache=toolchains.Cache(root=toolchains.cache_dir()),
                                  host_arch=engine.host_arch())[GO]
    folder = tmp_path_factory.mktemp("arm32") / "images"
    folder.mkdir()
    text = (ROOT / "images" / "matrix.yaml").read_text()
    platforms = "platforms:\n" + "".join(f"  - {p}\n" for p in matrix.platforms)
    assert platforms in text, "the project matrix lists its platforms one a line"
    arm = "platforms:\n" + "".join(f"  - {p}\n" for p in PLATFORMS)
    (folder / "matrix.yaml").write_text(text.replace(platforms, arm))
    write_lock(Lock(go={GO: release}, path=folder / "lock.json"))
    return folder.parent


@pytest.fixture(scope="module")
def lock_arm(project):
    entry = json.loads((project / "images" / "lock.json").read_text())["go"][GO]
    return entry["version"], entry["files"]["arm"]


@pytest.fixture(scope="module")
def arm_images(docker_client, project):
    args = ["images", "--go", GO, "--variant", "slim", "--json"]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    built = gobuild(*args, cwd=project, timeout=2400)
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
