"""Faults mid-flight, with real parts: a full disk (a small tmpfs as the cache), a connection
that drops (the local go.dev stand-in closing mid-body), a registry that goes away during a push
(the real docker-registry process stopped by its pid), a bench container that hangs (a real
container past a short --run-timeout) and an engine that stops during a bench and during a
build (the second engine of tests/second_engine.py, never the main one). The hung run and the
engine stopping share one bench, so that its preparation (most of this file's time) runs once.

A push that fails half-way runs through the real images flow (pipeline.build_images) over an
existing multi-arch tag. Each test leaves no containers, volumes, tags, mounts or temp files
behind, and says so.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from builder import toolchains
from builder.errors import ChecksumError, NoSpaceError, SourceError
from builder.lock import Artifact
from tests.standins import GoDev, Served

BIG = os.urandom(3 << 20)  # 3 MiB that do not compress: bigger than the 2 MiB tmpfs
BIG_NAME = "go1.22.10.linux-amd64.tar.gz"


def artifact(url: str, size: int = len(BIG)) -> Artifact:
    return Artifact(url=url, sha256=hashlib.sha256(BIG).hexdigest(), filename=BIG_NAME,
                    size=size, format="tar.gz")


@pytest.fixture
def served():
    with Served(GoDev(releases={"1.22.10": {"amd64": BIG}})) as site:
        yield site


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, unmounted afterwards (and checked to be)."""
    mount = tmp_path / "cache"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert not os.path.ismount(mount)


def cache_files(root: Path) -> list[str]:
    """What the cache holds besides its lock files (flock targets, empty)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and "locks" not in p.parts)


@pytest.mark.parametrize("lock_size", ["true", "understated"])
def test_a_full_disk_leaves_no_cache_entry(served, small_disk, lock_size):
    """The lock's size says the file cannot fit: refused before a byte is written. The lock
    understates it: the disk fills mid-download, and the partial file is removed."""
    cache = toolchains.Cache(root=small_disk / "gobuild")
    art = artifact(served.url + BIG_NAME, len(BIG) if lock_size == "true" else 1000)
    with pytest.raises(NoSpaceError) as err:  # the machine's class (11), not bad input (2)
        toolchains.fetch(cache, art)
    message = err.value.message
    assert err.value.exit_code == 11
    assert "\n" not in message and "no space left in the cache" in message and "XDG_CACHE_HOME" in message
    assert cache_files(cache.root) == []  # neither a blob nor a .partial
    written = served.served.get(f"/dl/{BIG_NAME}", 0)
    if lock_size == "true":
        assert written == 0  # refused before downloading
    else:
        assert written > 1 << 20  # it did fill the disk first


def test_a_full_disk_keeps_the_partial_file_an_earlier_run_kept(served, small_disk):
    """An earlier run broke off and promised to keep its bytes: a full disk now refuses the
    download with exit 11 naming what is kept, and the kept bytes are still there."""
    cache = toolchains.Cache(root=small_disk / "gobuild")
    art = artifact(served.url + BIG_NAME)
    part = cache.blob(art.sha256).with_name(art.sha256 + ".partial")
    part.parent.mkdir(parents=True)
    part.write_bytes(BIG[:100_000])
    with pytest.raises(NoSpaceError) as err:
        toolchains.fetch(cache, art)
    assert "100000 bytes kept for the next run" in err.value.message
    assert part.read_bytes() == BIG[:100_000]
    assert served.served.get(f"/dl/{BIG_NAME}", 0) == 0


def test_a_dropped_connection_is_resumed_with_range(served, tmp_path, monkeypatch):
    monkeypatch.setattr(toolchains, "BACKOFF_S", 0.05)
    served.drop[BIG_NAME] = 2  # two answers break off half-way, the third is whole
    cache = toolchains.Cache(root=tmp_path / "gobuild")
    path, n = toolchains.fetch(cache, artifact(served.url + BIG_NAME))
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(BIG).digest()
    asked = [rng for p, rng in served.ranges if p.endswith(BIG_NAME)]
    half, quarter = len(BIG) // 2, len(BIG) // 2 + (len(BIG) - len(BIG) // 2) // 2
    assert asked == [None, f"bytes={half}-", f"bytes={quarter}-"]
    assert n == len(BIG) and served.served[f"/dl/{BIG_NAME}"] == len(BIG)  # nothing fetched twice
    assert cache_files(cache.root) == [f"blobs/sha256/{artifact('x').sha256}"]


def test_a_connection_that_keeps_dropping_is_a_clear_error_then_resumes(served, tmp_path, monkeypatch):
    monkeypatch.setattr(toolchains, "BACKOFF_S", 0.05)
    served.drop[BIG_NAME] = 100
    cache = toolchains.Cache(root=tmp_path / "gobuild")
    art = artifact(served.url + BIG_NAME)
    with pytest.raises(SourceError) as err:
        toolchains.fetch(cache, art)
    message = err.value.message
    assert "\n" not in message and f"broke off {toolchains.ATTEMPTS} times" in message
    assert "run again to resume" in message
    assert len([p for p, _ in served.ranges if p.endswith(BIG_NAME)]) == toolchains.ATTEMPTS
    partial = cache.blob(art.sha256).with_name(art.sha256 + ".partial")
    kept = partial.stat().st_size
    assert 0 < kept < len(BIG) and not cache.blob(art.sha256).exists()  # no corrupt entry
    served.drop.clear()
    path, n = toolchains.fetch(cache, art)  # the next run resumes what was kept
    assert served.ranges[-1] == (f"/dl/{BIG_NAME}", f"bytes={kept}-")
    assert n == len(BIG) - kept and path.read_bytes() == BIG and not partial.exists()


def test_a_server_that_ignores_range_is_read_again_from_the_start(served, tmp_path, monkeypatch):
    """The first answer breaks off; the server answers the resume with 200 and the whole file:
    the partial file is started again, not appended to (which would splice two copies)."""
    monkeypatch.setattr(toolchains, "BACKOFF_S", 0.05)
    served.drop[BIG_NAME] = 1
    served.ignore_range.add(BIG_NAME)
    cache = toolchains.Cache(root=tmp_path / "gobuild")
    path, _ = toolchains.fetch(cache, artifact(served.url + BIG_NAME))
    assert path.read_bytes() == BIG
    assert [r for p, r in served.ranges if p.endswith(BIG_NAME)] == [None, f"bytes={len(BIG) // 2}-"]
    assert served.served[f"/dl/{BIG_NAME}"] == len(BIG) // 2 + len(BIG)
    assert cache_files(cache.root) == [f"blobs/sha256/{artifact('x').sha256}"]


def test_a_server_that_ignores_range_and_keeps_dropping_says_it_cannot_resume(served, tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(toolchains, "BACKOFF_S", 0.05)
    served.drop[BIG_NAME] = 100
    served.ignore_range.add(BIG_NAME)
    cache = toolchains.Cache(root=tmp_path / "gobuild")
    with pytest.raises(SourceError) as err:
        toolchains.fetch(cache, artifact(served.url + BIG_NAME))
    message = err.value.message
    assert "\n" not in message and "does not resume" in message and "run again to resume" not in message


def test_a_range_at_the_wrong_offset_is_not_appended(served, tmp_path, monkeypatch):
    """A 206 whose Content-Range does not start where the partial file ends: asked again
    without Range, and the file is right (not a tampering error blaming the lock)."""
    monkeypatch.setattr(toolchains, "BACKOFF_S", 0.05)
    served.drop[BIG_NAME] = 1
    served.wrong_range[BIG_NAME] = 1000
    cache = toolchains.Cache(root=tmp_path / "gobuild")
    path, _ = toolchains.fetch(cache, artifact(served.url + BIG_NAME))
    assert path.read_bytes() == BIG
    assert [r for p, r in served.ranges if p.endswith(BIG_NAME)] == [None, f"bytes={len(BIG) // 2}-", None]


@pytest.mark.parametrize("validator", ["etag", "last-modified"])
def test_a_file_changed_on_the_server_between_runs_is_never_spliced(served, tmp_path, monkeypatch,
                                                                   validator):
    """A run breaks off and keeps its bytes; the server's file then changes. The next run sends
    If-Range with what the first answer said (ETag, else Last-Modified), gets the whole new
    file, and reports ITS sha256: the two files were not spliced."""
    monkeypatch.setattr(toolchains, "BACKOFF_S", 0.05)
    served.drop[BIG_NAME] = 100
    first = '"v1"' if validator == "etag" else "Tue, 03 Dec 2024 18:00:00 GMT"
    if validator == "etag":
        served.etags[BIG_NAME] = first
    cache = toolchains.Cache(root=tmp_path / "gobuild")
    art = artifact(served.url + BIG_NAME)
    with pytest.raises(SourceError):
        toolchains.fetch(cache, art)
    other = os.urandom(len(BIG))
    served.godev.releases["1.22.10"]["amd64"] = other
    if validator == "etag":
        served.etags[BIG_NAME] = '"v2"'
    else:
        served.last_modified[BIG_NAME] = "Sat, 07 Dec 2024 09:00:00 GMT"
    served.drop.clear()
    with pytest.raises(ChecksumError) as err:
        toolchains.fetch(cache, art)
    assert served.if_ranges[-1] == (f"/dl/{BIG_NAME}", first)
    assert f"got {hashlib.sha256(other).hexdigest()}" in err.value.message
    assert cache_files(cache.root) == []  # no blob, no partial, no validator


def test_a_416_to_a_whole_file_request_is_a_clear_error(served, tmp_path):
    served.refuse[BIG_NAME] = 416
    cache = toolchains.Cache(root=tmp_path / "gobuild")
    with pytest.raises(SourceError) as err:  # exit 3, not 70 (FileNotFoundError)
        toolchains.fetch(cache, artifact(served.url + BIG_NAME))
    assert "HTTP 416" in err.value.message and "\n" not in err.value.message
    assert cache_files(cache.root) == []


HANG_IMAGE = "gobuild/go:1.27.3-slim-amd64"  # already built (native here: no emulation)


def gobuild_labelled(docker_client) -> list:
    """Every container, volume and network that any gobuild run labelled and left."""
    label = {"label": "io.gobuild.run"}
    return (docker_client.containers.list(all=True, filters=label)
            + docker_client.volumes.list(filters=label) + docker_client.networks.list(filters=label))


class Registry:
    """A docker-registry process of this test's own (the session's `registry` fixture is shared
    and must stay up), stopped and started again by its pid, on one port and one storage."""

    def __init__(self, folder: Path):
        import shutil

        from tests.integration.conftest import _free_port

        self.exe = shutil.which("docker-registry")
        assert self.exe, "docker-registry is not installed: run 'make setup'"
        self.folder, self.port = folder, _free_port()
        self.config = folder / "config.yml"
        self.config.write_text(json.dumps({
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
            "http": {"addr": f"127.0.0.1:{self.port}"}}))
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        import time
        import urllib.request

        self.proc = subprocess.Popen([self.exe, "serve", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("docker-registry did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def tags(self, repo: str) -> list[str]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/{repo}/tags/list", timeout=5) as r:
                return sorted(json.load(r).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise


@pytest.fixture
def own_registry(tmp_path):
    reg = Registry(tmp_path)
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def tiny_images(docker_client, tmp_path):
    """Two one-file images (linux/amd64 and linux/arm64, FROM scratch: nothing runs), in the
    per-arch tag scheme; removed afterwards with every tag this test gave them."""
    import io
    import tarfile

    from builder.build import Built

    built = []
    for arch in ("amd64", "arm64"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for name, data in (("Dockerfile", b"FROM scratch\nCOPY f /f\n"), ("f", arch.encode() * 4096)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        buf.seek(0)
        tag = f"gobuild-faults/go:1.0.0-tiny-{arch}"
        image, _ = docker_client.images.build(fileobj=buf, custom_context=True, tag=tag,
                                              platform=f"linux/{arch}", rm=True)
        built.append(Built(id=f"go1.0-tiny-linux-{arch}", tag=tag, platform=f"linux/{arch}",
                           image_id=image.id, size=0, toolchain_sha256="0" * 64,
                           go_version="1.0.0", variant="tiny", status="built"))
    try:
        yield built
    finally:
        for b in built:
            for ref in docker_client.images.get(b.image_id).tags:
                docker_client.images.remove(ref, noprune=False)
        assert not [t for i in docker_client.images.list() for t in i.tags if "1.0.0-tiny" in t]


def test_a_registry_gone_mid_push_retries_then_fails_with_one_line(docker_client, own_registry,
                                                                    tiny_images, monkeypatch):
    """registry.push: the registry stops after the first image is pushed: the second push is
    tried PUSH_ATTEMPTS times, then fails with one line, and the failed push's local tag is
    gone. (That the images flow then joins nothing is the next test's, through the pipeline.)"""
    from builder import registry
    from builder.errors import RegistryError

    monkeypatch.setattr(registry, "PUSH_BACKOFF_S", 0.2)
    real = registry._push_once
    attempts: list[str] = []

    def stop_before_the_second(client, ref):  # the registry goes away between the two pushes
        attempts.append(ref)
        if ref.endswith("-arm64"):
            own_registry.stop()
        return real(client, ref)

    monkeypatch.setattr(registry, "_push_once", stop_before_the_second)
    name = f"{own_registry.host}/faults"
    with pytest.raises(RegistryError) as err:
        registry.push(docker_client, tiny_images, name)
    assert "\n" not in err.value.message and "-arm64" in err.value.message
    assert f"({registry.PUSH_ATTEMPTS} attempts)" in err.value.message
    assert [a.rsplit("-", 1)[1] for a in attempts] == ["amd64"] + ["arm64"] * registry.PUSH_ATTEMPTS
    local = [t for i in docker_client.images.list(name=f"{name}/go") for t in i.tags
             if t.startswith(f"{name}/")]
    assert local == [f"{name}/go:1.0.0-tiny-amd64"]  # the pushed one; the failed one's tag is gone
    own_registry.start()  # same storage: what the registry holds now
    assert own_registry.tags("faults/go") == ["1.0.0-tiny-amd64"]  # only what was pushed


def manifest_exists(reg: Registry, repo: str, digest: str) -> bool:
    """GET /v2/<repo>/manifests/<digest> answers 200 (the registry still holds it)."""
    import urllib.error
    import urllib.request

    accept = ("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
              "application/vnd.docker.distribution.manifest.list.v2+json, "
              "application/vnd.docker.distribution.manifest.v2+json")
    request = urllib.request.Request(f"http://{reg.host}/v2/{repo}/manifests/{digest}",
                                     headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status == 200
    except urllib.error.HTTPError:
        return False


def test_images_push_failing_half_way_leaves_the_old_multi_arch_tag_whole(docker_client, own_registry,
                                                                         tiny_images, monkeypatch):
    """The real images flow (pipeline.build_images with Publish) over an existing multi-arch
    tag: an earlier release's go:1.22.10-slim (two tiny images, pushed and joined) is in the
    registry; the next `images --push` of the go1.22 slim cells (already built here: nothing is
    rebuilt) pushes amd64, then the registry goes away for arm64. The run fails with one line
    and joins nothing: 1.22.10-slim and 1.22-slim still name the old index, and the registry
    still holds the index and each manifest it lists, although the amd64 per-arch tag moved."""
    from builder import pipeline, registry
    from builder.build import Built
    from builder.errors import RegistryError
    from builder.inputs import Inputs
    from builder.matrix import Selection

    inputs = Inputs.resolve(cwd=Path(__file__).resolve().parents[2],
                            selection=Selection(go=("1.22",), variants=("slim",)))
    cells, lock = inputs.cells(), inputs.lock()
    name = f"{own_registry.host}/faults"
    earlier = []
    for tiny in tiny_images:  # the earlier release, under the tags this release uses
        arch = tiny.platform.split("/")[1]
        tag = f"gobuild-faults/go:1.22.10-slim-{arch}"
        docker_client.images.get(tiny.image_id).tag(tag)
        earlier.append(Built(id=f"go1.22-slim-linux-{arch}", tag=tag, platform=tiny.platform,
                             image_id=tiny.image_id, size=0, toolchain_sha256="0" * 64,
                             go_version="1.22.10", variant="slim", status="built"))
    registry.join_pushed(name, registry.push(docker_client, earlier, name), cells)
    old = registry.describe(f"{name}/go:1.22.10-slim")
    old_digests = {m["digest"] for m in old["manifests"]}
    old_amd64 = registry.describe(f"{name}/go:1.22.10-slim-amd64")["digest"]

    monkeypatch.setattr(registry, "PUSH_BACKOFF_S", 0.2)
    real = registry._push_once
    arm64_attempts = []

    def gone_for_every_arm64_attempt(client, ref):
        """Down for each arm64 attempt, back as soon as the last one failed: a pipeline that
        joined what it had pushed would find the registry up and move the tags."""
        if not ref.endswith("-arm64"):
            return real(client, ref)
        arm64_attempts.append(ref)
        own_registry.stop()
        try:
            return real(client, ref)
        finally:
            if len(arm64_attempts) == registry.PUSH_ATTEMPTS:
                own_registry.start()

    monkeypatch.setattr(registry, "_push_once", gone_for_every_arm64_attempt)
    try:
        with pytest.raises(RegistryError) as err:
            pipeline.build_images(cells, lock, inputs.templates, client=docker_client,
                                  publish=pipeline.Publish(registry=name), log=lambda m: None)
        assert "\n" not in err.value.message and "-arm64" in err.value.message
        assert len(arm64_attempts) == registry.PUSH_ATTEMPTS and own_registry.proc.poll() is None
        # same storage, up again: what a user pulling the tags gets now
        assert registry.describe(f"{name}/go:1.22.10-slim-amd64")["digest"] != old_amd64  # pushed
        for tag in ("1.22.10-slim", "1.22-slim"):
            index = registry.describe(f"{name}/go:{tag}")
            assert index["digest"] == old["digest"], tag  # not re-joined
            assert {m["digest"] for m in index["manifests"]} == old_digests
        assert all(manifest_exists(own_registry, "faults/go", d) for d in old_digests | {old["digest"]})
    finally:  # the remote names this test gave the project's own images (never the images),
        # and the tiny images' references by digest (their tag moved: the fixture removes tags)
        for image in docker_client.images.list(name="gobuild/go"):
            for ref in image.tags:
                if ref.startswith(f"{name}/"):
                    docker_client.images.remove(ref, noprune=True)
        for tiny in tiny_images:
            for ref in docker_client.images.get(tiny.image_id).attrs.get("RepoDigests") or []:
                if ref.startswith(f"{name}/"):
                    docker_client.images.remove(ref, noprune=True)
    assert not [i for i in docker_client.images.list(name="gobuild/go")
                if any(t.startswith(f"{name}/") for t in i.tags + (i.attrs.get("RepoDigests") or []))]


def test_a_registry_back_within_the_retries_gets_the_push_and_the_join(docker_client, own_registry,
                                                                      tiny_images, monkeypatch):
    import threading

    from builder import registry

    monkeypatch.setattr(registry, "PUSH_BACKOFF_S", 1.0)
    real = registry._push_once
    attempts: list[str] = []

    def bounce(client, ref):  # stopped for the arm64 push's first attempt, back 0.5 s later
        attempts.append(ref)
        if ref.endswith("-arm64") and attempts.count(ref) == 1:
            own_registry.stop()
            threading.Timer(0.5, own_registry.start).start()
        return real(client, ref)

    monkeypatch.setattr(registry, "_push_once", bounce)
    name = f"{own_registry.host}/faults"
    pushed = registry.push(docker_client, tiny_images, name)
    joined = registry.join_pushed(name, pushed)
    assert len([a for a in attempts if a.endswith("-arm64")]) >= 2  # it did retry
    assert set(joined[0].manifests) == {"linux/amd64", "linux/arm64"}
    assert own_registry.tags("faults/go") == ["1.0-tiny", "1.0.0-tiny", "1.0.0-tiny-amd64",
                                              "1.0.0-tiny-arm64"]
    index = registry.describe(f"{name}/go:1.0.0-tiny")
    assert {m["digest"] for m in index["manifests"]} == {p.digest for p in pushed}


SLOW_THEN_HANG = """package slow

import (
	"flag"
	"testing"
	"time"
)

// The gotest suite's run (the one that asks for a CPU profile) never returns; the memory
// suite's go-test-binary phase (-test.benchtime 200x, no profile) returns at once. Measured runs
// are fresh locked-down containers with the workload read-only: nothing could count them.
func BenchmarkSlow(b *testing.B) {
	if f := flag.Lookup("test.cpuprofile"); f != nil && f.Value.String() != "" {
		time.Sleep(time.Hour)
	}
	for i := 0; i < b.N; i++ {
	}
}
"""


def test_bench_faults_a_hung_run_then_the_engine_stopping(tmp_path, second_engine):
    """One bench on the second engine (never the main one; one preparation for both faults),
    suites gotest and memory. The workload's benchmark never returns in the gotest run, and
    returns at once in the memory suite's runs:
    - each round's gotest run is killed at --run-timeout and recorded as a failed run with the
      reason, the memory runs' samples beside it;
    - the engine then stops during the third round: gobuild exits 5 with one line of the
      engine's class, and results.json keeps the two rounds it measured;
    - once the engine is back, 'gobuild bench --cleanup' removes what the run left there."""
    import time

    module = tmp_path / "slow"
    module.mkdir()
    (module / "go.mod").write_text("module example.com/slow\n\ngo 1.21\n")
    (module / "slow.go").write_text("package slow\n")
    (module / "slow_test.go").write_text(SLOW_THEN_HANG)
    out = tmp_path / "results"
    exe = str(Path(os.sys.executable).parent / "gobuild")
    with contextlib.nullcontext(second_engine) as second:  # the session's (conftest.py), started once
        second.load(HANG_IMAGE)
        env = second.env()
        proc = subprocess.Popen(
            [exe, "bench", "--image", HANG_IMAGE, "--workload", str(module), "--suite", "gotest",
             "--suite", "memory", "--runs", "3", "--warmup", "0", "--run-timeout", "8s", "--cpus", "1",
             "--memory", "1g", "--output", str(out), "-q"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def rounds_done() -> int:  # results.json is rewritten after each measured round
            try:
                return json.loads((out / "results.json").read_text())["rounds_done"]
            except (OSError, ValueError, KeyError):
                return 0

        try:
            deadline = time.monotonic() + 420  # the preparation (probes built cold) and round 1
            while rounds_done() < 2:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the measured rounds did not end in time"
                if rounds_done() == 1 and deadline - time.monotonic() > 150:
                    # round 2: the hung run killed at --run-timeout (8 s), four quick runs, each
                    # container's start and removal; a run the timeout misses hangs for an hour
                    deadline = time.monotonic() + 150
                time.sleep(0.2)
            second.stop()
            _, stderr = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 5, stderr
        last = stderr.strip().splitlines()[-1]
        # one line of the engine's class: "stopped answering" (the usual case), or what a
        # shutting-down engine still says ("refused to create a container: ... database not open")
        assert last.startswith("Error: the ") and "engine" in last, stderr
        assert "Traceback" not in stderr
        data = json.loads((out / "results.json").read_text())
        assert data["status"] == "failed" and data["rounds_done"] >= 2 and data["error"]
        records = [r for recs in data["suites"].values() for r in recs]
        samples = [s for r in records for s in r["samples"]]
        failed = [f for r in records for f in r["failed"]]
        assert len(samples) >= 4  # the memory runs of the first round at least are kept
        assert len(failed) >= 2 and all(f["error"].startswith("timed out: killed after --run-timeout")
                                        for f in failed)

        second.start()
        client = second.client()
        left = gobuild_labelled(client)
        cleaned = subprocess.run([exe, "bench", "--cleanup"], env=env, capture_output=True,
                                 text=True, timeout=300, check=False)
        assert cleaned.returncode == 0, cleaned.stderr
        assert gobuild_labelled(client) == []  # what counts: nothing labelled is left
        assert left != [], "the stopped run left nothing for --cleanup: the test saw no cleanup"


def test_an_engine_stopping_during_a_build_leaves_no_tag(tmp_path, second_engine):
    """The second engine stops while buildx builds a cell there: gobuild exits 5 with one line
    naming the engine and the cell, and once the engine is back it holds no tag of that image
    and no container or volume of gobuild. It runs in a copy of the project (renders there, not
    in the shared tree) with the toolchain cache of this test (XDG_CACHE_HOME: the verified
    archive is copied in from the user's cache when it is there, else downloaded)."""
    import shutil
    import time

    from builder.inputs import Inputs
    from builder.matrix import Selection

    tag = "gobuild/go:1.22.10-bookworm-amd64"
    root = Path(__file__).resolve().parents[2]
    project = tmp_path / "project"
    shutil.copytree(root / "images", project / "images", ignore=shutil.ignore_patterns("go*-*"))
    shutil.copytree(root / "templates", project / "templates")
    cache = toolchains.Cache(root=tmp_path / "cache" / "gobuild")
    art = Inputs.resolve(cwd=root, selection=Selection(go=("1.22",))).lock().go["1.22"].files["amd64"]
    if toolchains.Cache(root=toolchains.cache_dir()).blob(art.sha256).exists():
        cache.blob(art.sha256).parent.mkdir(parents=True)
        shutil.copy(toolchains.Cache(root=toolchains.cache_dir()).blob(art.sha256), cache.blob(art.sha256))
    with contextlib.nullcontext(second_engine) as second:  # the session's (conftest.py), started once
        second.load("gobuild/base:bookworm-amd64")
        env = {**second.env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}
        proc = subprocess.Popen(
            [str(Path(os.sys.executable).parent / "gobuild"), "images", "--go", "1.22",
             "--platform", "linux/amd64", "--variant", "bookworm"],
            cwd=project, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = []
        try:
            for line in proc.stderr:  # buildx's plain progress: stop once it sends the context
                seen.append(line)
                if "load build context" in line:
                    break
            time.sleep(1)
            second.stop()
            rest = proc.stderr.read()
            proc.wait(300)
        finally:
            if proc.poll() is None:
                proc.kill()
        stderr = "".join(seen) + rest
        assert proc.returncode == 5, stderr  # the engine's class, not a failed build's (6)
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("Error: the engine stopped answering while go1.22-bookworm"), stderr
        assert "Traceback" not in stderr

        second.start()
        client = second.client()
        assert not [t for i in client.images.list() for t in i.tags if t == tag]
        assert client.containers.list(all=True) == [] and gobuild_labelled(client) == []
