"""The slim variant's userland, made from files only: nothing of it runs while an image is built.

Debian's busybox-static for the target architecture and the (architecture independent) CA
certificates are unpacked with `mmdebstrap --variant=extract`: apt fetches and verifies them
against the archive's signed Release file, and no maintainer script runs, so no emulator is
needed for a foreign architecture. The applet links are read from busybox's own applet table
(never by running it), and the build context gets a root file system tree with the right modes,
so that the slim Dockerfile is COPY only and builds on a host with no emulator registered.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError
from .fsutil import atomic_write_text

PACKAGES = ("busybox-static", "ca-certificates")
BUSYBOX = "busybox"
CA_BUNDLE = "ca-certificates.crt"
APPLETS = "applets"
# The fixed time of every entry of the context's root file system tree: with the same inputs,
# `COPY rootfs/ /` gives the same layer.
MTIME = 0
ROOTFS = "rootfs"  # root-owned: /bin, /etc/ssl, /tmp, /home
GOPHER = "gopher"  # copied with --chown to the image's user: /go/src, /go/bin, /home/gopher
_APPLET_RE = re.compile(r"^[a-z0-9\[][a-z0-9_.\[\]-]{0,31}$")


@dataclass(frozen=True, kw_only=True)
class Userland:
    """A platform's unpacked userland in the cache: busybox, the CA bundle, the applet names."""

    folder: Path
    applets: tuple[str, ...]
    digest: str  # sha256 over busybox and the CA bundle: part of each slim image's input digest

    @property
    def busybox(self) -> Path:
        return self.folder / BUSYBOX

    @property
    def ca_bundle(self) -> Path:
        return self.folder / CA_BUNDLE


def extract_argv(suite: str, debian_arch: str, out: Path, mirror: str) -> list[str]:
    return [
        "mmdebstrap", "--variant=extract", f"--architectures={debian_arch}",
        f"--include={','.join(PACKAGES)}", "--format=directory", "--skip=check/empty",
        "--aptopt=Acquire::Retries \"3\"", suite, str(out), mirror,
    ]


def applet_names(busybox: bytes) -> tuple[str, ...]:
    """The applet names busybox was built with, read from its applet table (a sorted run of
    NUL-terminated names starting "[", "[[", ended by an empty name), without running it."""
    start = busybox.find(b"[\x00[[\x00")
    if start < 0:
        raise BuildError("no applet table found in busybox: the package's busybox is not the "
                         "static busybox gobuild knows; report it with the package version")
    names, at = [], start
    while True:
        end = busybox.index(b"\x00", at)
        if end == at:
            break
        names.append(busybox[at:end].decode("ascii", "replace"))
        at = end + 1
    if (len(names) < 50 or names != sorted(names) or "sh" not in names
            or not all(_APPLET_RE.match(n) for n in names)):
        raise BuildError("busybox's applet table does not read as a sorted list of names with sh: "
                         "report it with the package version")
    return tuple(n for n in names if n != BUSYBOX)


def ca_bundle(certs: Path) -> str:
    """The bundle update-ca-certificates writes with Debian's default configuration (every
    certificate the package ships, in name order), made without running it."""
    parts = []
    for crt in sorted(certs.rglob("*.crt"), key=lambda p: p.relative_to(certs).as_posix()):
        text = crt.read_text(encoding="ascii")
        parts.append(text if text.endswith("\n") else text + "\n")
    if len(parts) < 50:
        raise BuildError(f"only {len(parts)} certificates in {certs}: the ca-certificates package "
                         "did not unpack as expected")
    return "".join(parts)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for name in (BUSYBOX, CA_BUNDLE):
        h.update(f"{name}\n".encode())
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def _load(folder: Path) -> Userland:
    applets = tuple((folder / APPLETS).read_text(encoding="ascii").split())
    return Userland(folder=folder, applets=applets, digest=_digest(folder))


def ensure(cache_root: Path, suite: str, debian_arch: str, mirror: str) -> Userland:
    """The userland of a Debian suite and architecture: from the cache, else unpacked from the
    archive into it (once; remove the folder to fetch a newer one)."""
    folder = cache_root / "userland" / f"{suite}-{debian_arch}"
    if (folder / APPLETS).is_file():
        return _load(folder)
    if not shutil.which("mmdebstrap"):
        raise BuildError("mmdebstrap is not installed, needed for the slim userland: "
                         "apt-get install mmdebstrap arch-test (or make setup)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"gobuild: unpacking {', '.join(PACKAGES)} for {suite}/{debian_arch} (mmdebstrap "
          "--variant=extract, nothing run)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="gobuild-userland-", dir=folder.parent) as tmp:
        tree = Path(tmp) / "tree"
        proc = subprocess.run(extract_argv(suite, debian_arch, tree, mirror),
                              stdout=sys.stderr, stderr=sys.stderr, check=False)
        if proc.returncode != 0:
            raise BuildError(f"mmdebstrap could not unpack {', '.join(PACKAGES)} for "
                             f"{suite}/{debian_arch} (exit {proc.returncode}): see its output above")
        staged = Path(tmp) / "out"
        staged.mkdir()
        busybox = tree / "bin" / BUSYBOX
        if not busybox.is_file():
            busybox = tree / "usr" / "bin" / BUSYBOX
        shutil.copyfile(busybox, staged / BUSYBOX)
        (staged / CA_BUNDLE).write_text(ca_bundle(tree / "usr/share/ca-certificates"),
                                        encoding="ascii")
        names = applet_names((staged / BUSYBOX).read_bytes())
        (staged / APPLETS).write_text("\n".join(names) + "\n", encoding="ascii")
        try:
            os.rename(staged, folder)
        except OSError:  # another run got there first: theirs is as good
            pass
    return _load(folder)


def write_tree(context: Path, land: Userland, passwd: str, group: str) -> None:
    """The context's rootfs/ and gopher/ trees (see ROOTFS, GOPHER), every entry with a fixed
    mtime and its image mode; ownership comes from the Dockerfile's COPY --chown."""
    root, own = context / ROOTFS, context / GOPHER
    for folder, mode in ((root / "bin", 0o755), (root / "etc/ssl/certs", 0o755),
                         (root / "tmp", 0o1777), (root / "home", 0o755),
                         (own / "go/src", 0o755), (own / "go/bin", 0o755),
                         (own / "home/gopher", 0o755)):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(mode)  # mkdir's mode goes through the umask, and never sets the sticky bit
    shutil.copyfile(land.busybox, root / "bin" / BUSYBOX)
    (root / "bin" / BUSYBOX).chmod(0o755)
    for name in land.applets:
        (root / "bin" / name).symlink_to(BUSYBOX)
    shutil.copyfile(land.ca_bundle, root / "etc/ssl/certs" / CA_BUNDLE)
    atomic_write_text(root / "etc/passwd", passwd)
    atomic_write_text(root / "etc/group", group)
    for path in (root / "etc/ssl/certs" / CA_BUNDLE, root / "etc/passwd", root / "etc/group"):
        path.chmod(0o644)
    for top in (root, own):
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)
        os.utime(top, (MTIME, MTIME))
