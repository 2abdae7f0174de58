"""Faults mid-flight, with real parts: a full disk (a small tmpfs as the cache), a connection
that drops (the local go.dev stand-in closing mid-body), a bench container that hangs (a real
container past a short --run-timeout), a registry that goes away during a push (the real
docker-registry process stopped by its pid), and an engine that stops during a build and a
bench (the second engine of tests/second_engine.py, never the main one).

Each test leaves no containers, volumes, tags, mounts or temp files behind, and says so.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from builder import toolchains
from builder.errors import ConfigError, SourceError
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
    with pytest.raises(ConfigError) as err:
        toolchains.fetch(cache, art)
    message = err.value.message
    assert "\n" not in message and "no space left in the cache" in message and "XDG_CACHE_HOME" in message
    assert cache_files(cache.root) == []  # neither a blob nor a .partial
    written = served.served.get(f"/dl/{BIG_NAME}", 0)
    if lock_size == "true":
        assert written == 0  # refused before downloading
    else:
        assert written > 1 << 20  # it did fill the disk first


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
