"""gobuild images end to end: real buildx builds for both platforms and both variants, smoke
tests (arm64 under qemu), a push to a real local registry, the multi-arch tag, a pull back."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from .conftest import gobuild

GO = "1.22"


@pytest.fixture(scope="module")
def built(bases):
    proc = gobuild("images", "--go", GO, "--force", "--verify", "--json", timeout=3000)
    return proc, json.loads(proc.stdout)


def test_builds_both_platforms_and_variants_and_smoke_tests_each(built):
    proc, images = built
    assert {(i["platform"], i["variant"]) for i in images} == {
        ("linux/amd64", "bookworm"), ("linux/arm64", "bookworm"),
        ("linux/amd64", "slim"), ("linux/arm64", "slim"),
    }
    for i in images:
        assert set(i) >= {"id", "tag", "platform", "image_id", "size", "toolchain_sha256"}
        assert i["status"] == "built"
        assert i["tag"] == f"gobuild/go:{i['go_version']}-{i['variant']}-{i['platform'].split('/')[1]}"
    assert proc.stderr.count("gobuild: smoke test of") == 4
    assert "verified 4 images" in proc.stderr


def test_images_carry_labels_env_and_architecture(built, docker_client):
    _, images = built
    lock = json.loads((__import__("pathlib").Path(__file__).parents[2] / "images/lock.json").read_text())
    for i in images:
        attrs = docker_client.images.get(i["tag"]).attrs
        arch = i["platform"].split("/")[1]
        assert attrs["Architecture"] == arch
        cfg = attrs["Config"]
        labels = cfg["Labels"]
        assert labels["io.gobuild.toolchain.sha256"] == lock["go"][GO]["files"][arch]["sha256"]
        assert labels["org.opencontainers.image.version"] == i["go_version"]
        assert labels["org.opencontainers.image.created"].endswith("T00:00:00Z")
        env = dict(e.split("=", 1) for e in cfg["Env"])
        assert env["GOTOOLCHAIN"] == "local" and env["GOPATH"] == "/go"
        assert env["CGO_ENABLED"] == ("1" if i["variant"] == "bookworm" else "0")
        assert env["PATH"].startswith("/go/bin:/usr/local/go/bin:")
        assert cfg["WorkingDir"] == "/go"
        if i["variant"] == "slim":
            assert cfg["User"] == "1000:1000"


def test_a_second_run_rebuilds_nothing_and_json_filters_by_platform(built):
    start = time.monotonic()
    proc = gobuild("images", "--go", GO, "--platform", "linux/arm64", "--json")
    elapsed = time.monotonic() - start
    images = json.loads(proc.stdout)
    assert {i["platform"] for i in images} == {"linux/arm64"} and len(images) == 2
    assert {i["status"] for i in images} == {"up-to-date"}
    assert "downloaded 0 bytes" in proc.stderr
    assert elapsed < 30


@pytest.fixture
def registry_tags(registry, docker_client):
    """Remove the local tags that name the test registry (the images themselves stay)."""
    yield registry
    for img in docker_client.images.list():
        for tag in img.tags:
            if tag.startswith(registry + "/"):
                docker_client.images.remove(tag)


def test_push_join_and_pull_back_by_platform(built, registry_tags, docker_client):
    registry = registry_tags
    _, images = built
    ns = f"{registry}/gobuild"
    proc = gobuild("images", "--go", GO, "--push", "--registry", ns)
    version = images[0]["go_version"]
    for variant in ("bookworm", "slim"):
        assert f"pushed      {ns}/go:{version}-{variant}" in proc.stdout
        raw = subprocess.run(
            ["docker", "buildx", "imagetools", "inspect", "--raw", f"{ns}/go:{GO}-{variant}"],
            capture_output=True, text=True, check=True).stdout
        manifests = json.loads(raw)["manifests"]
        assert sorted(m["platform"]["architecture"] for m in manifests) == ["amd64", "arm64"]
    # Forget the local arm64 slim image, then pull it back by platform from the multi-arch tag.
    tag = f"gobuild/go:{version}-slim-arm64"
    image_id = docker_client.images.get(tag).id
    docker_client.images.remove(tag)
    pulled = json.loads(gobuild("pull", "--registry", ns, "--go", GO, "--variant", "slim",
                                "--platform", "linux/arm64", "--json").stdout)
    assert [p["tag"] for p in pulled] == [tag]
    img = docker_client.images.get(tag)
    assert img.attrs["Architecture"] == "arm64" and img.id == image_id


def test_pull_refuses_an_image_whose_toolchain_differs_from_the_lock(built, registry_tags, project):
    registry = registry_tags
    lock = project / "images" / "lock.json"
    data = json.loads(lock.read_text())
    data["go"][GO]["files"]["arm64"]["sha256"] = "0" * 64
    lock.write_text(json.dumps(data))
    ns = f"{registry}/gobuild"
    gobuild("images", "--go", GO, "--variant", "slim", "--push", "--registry", ns)
    proc = gobuild("pull", "--registry", ns, "--go", GO, "--variant", "slim", "--platform",
                   "linux/arm64", cwd=project, check=False)
    assert proc.returncode == 7
    last = proc.stderr.strip().splitlines()[-1]  # progress lines come before the one-line error
    assert last.startswith("Error: ") and "the lock says 0000" in last
