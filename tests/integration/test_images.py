"""gobuild images end to end: real buildx builds for both platforms and both variants, smoke
tests (arm64 under qemu), a push to a real local registry, the multi-arch tag, a pull back."""
from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from .conftest import GOBUILD, ROOT, gobuild

GO = "1.22"
# The 64-bit platforms (the matrix also has 32-bit ARM, built and tested in test_arm32.py).
BOTH = ("--platform", "linux/amd64", "--platform", "linux/arm64")


QEMU_AARCH64 = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
SLIM_ARM64 = "1.22.10-slim-arm64"


@contextlib.contextmanager
def no_arm64_emulator():
    """binfmt's qemu-aarch64 entry disabled for the block (only that entry, and enabled again
    however the block ends: other tests on this machine need it)."""
    assert QEMU_AARCH64.exists(), "no qemu-aarch64 binfmt entry to disable: run make setup"
    assert QEMU_AARCH64.read_text().splitlines()[0] == "enabled"
    QEMU_AARCH64.write_text("0")
    try:
        yield
    finally:
        QEMU_AARCH64.write_text("1")


def arm64_runs() -> bool:
    """Whether an arm64 binary runs here now (the slim image's busybox: about a second)."""
    proc = subprocess.run(["docker", "run", "--rm", "--pull=never", "--platform", "linux/arm64",
                           "--network=none", "--entrypoint", "/bin/busybox",
                           f"gobuild/go:{SLIM_ARM64}", "true"], capture_output=True, check=False)
    return proc.returncode == 0


@pytest.fixture(scope="module")
def built(bases):
    """Every Go 1.22 image of the 64-bit platforms built anew and smoke-tested (32-bit ARM is
    tests/integration/test_arm32.py's). Slim linux/arm64 is built with the arm64 emulator
    disabled (slim is files only), then smoke-tested under emulation."""
    with no_arm64_emulator():
        start = time.monotonic()
        no_emu = gobuild("images", "--go", GO, "--variant", "slim", "--platform", "linux/arm64",
                         "--force", "--json", timeout=600)
        no_emu_took = time.monotonic() - start
        ran_while_off = arm64_runs()
    rest = [gobuild("images", "--go", GO, "--variant", "bookworm", "--force", "--verify", "--json",
                    "--platform", "linux/amd64", "--platform", "linux/arm64", timeout=3000),
            gobuild("images", "--go", GO, "--variant", "slim", "--platform", "linux/amd64",
                    "--force", "--verify", "--json", timeout=1200),
            gobuild("images", "--go", GO, "--variant", "slim", "--platform", "linux/arm64",
                    "--verify", "--json", timeout=1800)]
    images = [i for proc in rest for i in json.loads(proc.stdout)]
    return {"no_emulator": json.loads(no_emu.stdout)[0], "no_emulator_took": no_emu_took,
            "ran_while_off": ran_while_off, "images": images,
            "stderr": "".join(proc.stderr for proc in rest)}


def test_builds_both_platforms_and_variants_and_smoke_tests_each(built):
    images = built["images"]
    assert {(i["platform"], i["variant"]) for i in images} == {
        ("linux/amd64", "bookworm"), ("linux/arm64", "bookworm"),
        ("linux/amd64", "slim"), ("linux/arm64", "slim"),
    }
    for i in images:
        assert set(i) >= {"id", "tag", "platform", "image_id", "size", "toolchain_sha256"}
        assert i["status"] == ("up-to-date" if i["tag"].endswith(SLIM_ARM64) else "built")
        assert i["tag"] == f"gobuild/go:{i['go_version']}-{i['variant']}-{i['platform'].split('/')[1]}"
    started = re.findall(r"^gobuild: smoke test of (\S+)$", built["stderr"], re.MULTILINE)
    passed = re.findall(r"^gobuild: smoke test of (\S+) passed \((?:emulated, )?\d+ s\): "
                        r"go version go\S+ linux/(\w+)(?:, GOARM=\d)?$", built["stderr"], re.MULTILINE)
    assert sorted(started) == sorted(i["tag"] for i in images)
    assert sorted(passed) == sorted((i["tag"], i["platform"].split("/")[1]) for i in images)
    assert len(re.findall(r"verified \d+ images", built["stderr"])) == 3


def test_slim_arm64_builds_with_no_emulator_then_passes_its_smoke_test_under_one(built):
    """With binfmt's qemu-aarch64 entry disabled (an arm64 binary did not run meanwhile) the
    slim arm64 image builds; the smoke test of the fixture then ran that very image."""
    assert built["ran_while_off"] is False
    first = built["no_emulator"]
    assert first["status"] == "built" and first["platform"] == "linux/arm64"
    smoked = next(i for i in built["images"] if i["tag"] == first["tag"])
    assert smoked["image_id"] == first["image_id"]
    print(f"slim linux/arm64 built with no emulator in {built['no_emulator_took']:.1f} s")
    assert arm64_runs()  # and the entry is back


def test_slim_dockerfiles_have_no_run_and_no_base():
    for dockerfile in sorted((ROOT / "images").glob("go*-slim-linux-*/Dockerfile")):
        lines = dockerfile.read_text().splitlines()
        assert not [x for x in lines if x.lstrip().upper().startswith("RUN")], dockerfile
        assert [x for x in lines if x.startswith("FROM ")] == ["FROM scratch"], dockerfile


def test_images_carry_labels_env_and_architecture(built, docker_client):
    images = built["images"]
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
    images = built["images"]
    ns = f"{registry}/gobuild"
    proc = gobuild("images", "--go", GO, *BOTH, "--push", "--registry", ns)
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
    gobuild("images", "--go", GO, "--variant", "slim", *BOTH, "--push", "--registry", ns)
    proc = gobuild("pull", "--registry", ns, "--go", GO, "--variant", "slim", "--platform",
                   "linux/arm64", cwd=project, check=False)
    assert proc.returncode == 7
    last = proc.stderr.strip().splitlines()[-1]  # progress lines come before the one-line error
    assert last.startswith("Error: ") and "the lock says 0000" in last


# --- partial pushes, per-runner pushes and joins ------------------------------------------------

@pytest.fixture(scope="module")
def slim(docker_client):
    """The Go 1.22 slim images of both platforms (built if missing, else found up to date;
    slim needs no Debian base)."""
    return json.loads(gobuild("images", "--go", GO, "--variant", "slim", *BOTH, "--json").stdout)


def listed(ref: str) -> dict[str, str] | None:
    """architecture -> digest of a multi-arch tag in the registry, or None when it is absent."""
    proc = subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", ref],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        assert "not found" in proc.stderr, proc.stderr
        return None
    return {m["platform"]["architecture"]: m["digest"] for m in json.loads(proc.stdout)["manifests"]}


def push(ns: str, platform: str, *extra: str) -> subprocess.CompletedProcess:
    return gobuild("images", "--go", GO, "--variant", "slim", "--platform", platform,
                   "--push", "--registry", ns, *extra)


def test_pushing_one_platform_at_a_time_keeps_the_other_in_the_multiarch_tag(slim, registry_tags):
    ns = f"{registry_tags}/partial"
    version = slim[0]["go_version"]
    push(ns, "linux/amd64")
    assert set(listed(f"{ns}/go:{GO}-slim")) == {"amd64"}
    proc = push(ns, "linux/arm64")
    both = listed(f"{ns}/go:{version}-slim")
    assert set(both) == {"amd64", "arm64"}
    assert "kept from the registry: linux/amd64" in proc.stderr
    assert listed(f"{ns}/go:{GO}-slim") == both
    push(ns, "linux/amd64")  # again: still both, and still one amd64
    assert listed(f"{ns}/go:{GO}-slim") == both


def test_no_join_pushes_digests_and_join_makes_the_same_multiarch_tag(slim, registry_tags):
    ns = f"{registry_tags}/perrunner"
    version = slim[0]["go_version"]
    first = json.loads(push(ns, "linux/amd64", "--no-join", "--json").stdout)
    assert [i["remote"] for i in first] == [f"{ns}/go:{version}-slim-amd64"]
    assert first[0]["digest"].startswith("sha256:")
    assert listed(f"{ns}/go:{GO}-slim") is None  # nothing joined
    # arm64 is not in the registry yet: join refuses, and creates no tag naming a missing image
    early = gobuild("join", "--registry", ns, "--go", GO, "--variant", "slim", *BOTH, check=False)
    assert early.returncode == 7, early.stderr
    assert f"{ns}/go:{version}-slim-arm64 not in the registry" in early.stderr.strip().splitlines()[-1]
    assert listed(f"{ns}/go:{GO}-slim") is None
    second = json.loads(push(ns, "linux/arm64", "--no-join", "--json").stdout)
    joined = json.loads(gobuild("join", "--registry", ns, "--go", GO, "--variant", "slim",
                                *BOTH, "--json").stdout)
    assert [j["tags"] for j in joined] == [[f"{ns}/go:{version}-slim", f"{ns}/go:{GO}-slim"]]
    want = {"amd64": first[0]["digest"], "arm64": second[0]["digest"]}
    assert listed(f"{ns}/go:{version}-slim") == want == listed(f"{ns}/go:{GO}-slim")
    # the same as pushing with the join, into another namespace
    together = f"{registry_tags}/together"
    gobuild("images", "--go", GO, "--variant", "slim", *BOTH, "--push", "--registry", together)
    assert listed(f"{together}/go:{GO}-slim") == want


# --- a variant's own base ----------------------------------------------------------------------

def test_a_variant_naming_another_base_does_not_get_the_local_debian_base(bases, docker_client):
    from builder import base
    from builder.matrix import Variant

    arch = docker_client.info()["Architecture"].replace("x86_64", "amd64").replace("aarch64", "arm64")
    local = base.base_tag("bookworm", arch)
    other = f"gobuild-test/otherbase:bookworm-slim-{uuid.uuid4().hex[:8]}"
    docker_client.images.get(local).tag(other)  # a cheap stand-in for another upstream image
    try:
        own = Variant(name="own", kind="debian", base=other)
        assert base.choose(docker_client, own, arch) == other
        debian = Variant(name="bookworm", kind="debian", base="debian:bookworm-slim")
        assert base.choose(docker_client, debian, arch) == local
    finally:
        docker_client.images.remove(other)


# --- SIGTERM during --verify -------------------------------------------------------------------

def test_sigterm_during_verify_removes_the_smoke_containers(slim, docker_client):
    arch = docker_client.info()["Architecture"].replace("x86_64", "amd64").replace("aarch64", "arm64")
    proc = subprocess.Popen([GOBUILD, "images", "--go", GO, "--variant", "slim", "--platform",
                             f"linux/{arch}", "--verify"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    run_id, containers = None, []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not containers and proc.poll() is None:
            found = [re.search(r"smoke tests: run (\w+)", line) for line in list(lines)]
            run_id = next((m.group(1) for m in found if m), None)
            if run_id:
                containers = docker_client.containers.list(
                    all=True, filters={"label": f"io.gobuild.run={run_id}"})
            time.sleep(0.2)
        assert containers, f"no smoke container seen: {''.join(lines)[-2000:]}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 130
        reader.join(10)
        assert "interrupted" in lines[-1]
        left = docker_client.containers.list(all=True, filters={"label": f"io.gobuild.run={run_id}"})
        assert left == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for ctr in containers:  # ours, by id, if the test failed half-way
            with contextlib.suppress(Exception):
                docker_client.containers.get(ctr.id).remove(force=True, v=True)
