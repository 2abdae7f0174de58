"""The go.dev code path against a local stand-in in the go.dev/dl layout: lock from its index,
download and verify its tarball, build an image; and a tampered tarball stops everything."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from builder import prune, toolchains
from builder.lock import load_lock
from builder.matrix import Selection, load_matrix, select
from tests.standins import GoDev, Served

from .conftest import ROOT, gobuild

MATRIX = """go: ["1.22"]
platforms: [linux/amd64]
variants:
  standin:
    kind: slim
    base: debian:bookworm-slim
"""


@pytest.fixture(scope="module")
def real_tarball(tmp_path_factory) -> bytes:
    """go1.22.x.linux-amd64.tar.gz in the official layout, made from the real (pruned) tree."""
    lock = load_lock(ROOT / "images" / "lock.json")
    cell = select(load_matrix(ROOT / "images" / "matrix.yaml"),
                  Selection(go=("1.22",), platforms=("linux/amd64",), variants=("slim",)))[0]
    cache = toolchains.Cache(root=toolchains.cache_dir())
    tree = toolchains.unpack(cache, lock.artifact(cell), lock.release(cell).version)
    out = tmp_path_factory.mktemp("tarball") / "go.tar.gz"
    with tarfile.open(out, "w:gz", compresslevel=1) as tf:
        for rel in prune.kept_files(tree, cell.variant.prune, cell.platform):
            tf.add(tree / rel, arcname=f"go/{rel}")
    return lock.release(cell).version, out.read_bytes()


@pytest.fixture
def standin(real_tarball):
    version, data = real_tarball
    with Served(GoDev({version: {"amd64": data}})) as served:
        yield served, version


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "matrix.yaml").write_text(MATRIX)
    return tmp_path


def cache_files(root: Path) -> list[str]:
    blobs = root / "gobuild" / "blobs"
    return sorted(p.name for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []


def test_lock_download_and_build_from_a_godev_layout(standin, workdir, docker_client, bases):
    served, version = standin
    env = {"XDG_CACHE_HOME": str(workdir / "cache")}
    gobuild("lock", "--source", "mirror", "--mirror", served.url, cwd=workdir)
    lock = json.loads((workdir / "images" / "lock.json").read_text())
    assert lock["go"]["1.22"]["version"] == version
    assert lock["go"]["1.22"]["files"]["amd64"]["url"] == f"{served.url}go{version}.linux-amd64.tar.gz"
    tag = f"gobuild/go:{version}-standin-amd64"
    try:
        images = json.loads(gobuild("images", "--verify", "--json", cwd=workdir, env=env).stdout)
        assert [i["tag"] for i in images] == [tag]
        assert docker_client.images.get(tag).labels["io.gobuild.toolchain.source"] == "mirror"
        served.godev.requests.clear()
        again = gobuild("images", "--json", cwd=workdir, env=env)
        assert json.loads(again.stdout)[0]["status"] == "up-to-date"
        assert served.godev.requests == []  # a warm run asks the source for nothing
    finally:
        docker_client.images.remove(tag, force=True)


def test_a_tampered_tarball_stops_the_build(standin, workdir, docker_client, bases):
    served, version = standin
    gobuild("lock", "--source", "mirror", "--mirror", served.url, cwd=workdir)
    served.godev.tamper.add(f"go{version}.linux-amd64.tar.gz")
    tag = f"gobuild/go:{version}-standin-amd64"
    proc = gobuild("images", cwd=workdir, env={"XDG_CACHE_HOME": str(workdir / "cache")}, check=False)
    assert proc.returncode == 4
    assert f"sha256 mismatch for go{version}.linux-amd64.tar.gz" in proc.stderr
    assert "expected" in proc.stderr and "got" in proc.stderr
    assert cache_files(workdir / "cache") == []
    import docker.errors
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)
