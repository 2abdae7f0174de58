"""What makes the Go layer the same bytes in every clean build.

BuildKit's `COPY go /usr/local/go` gives the parent folders it creates (/usr, /usr/local) the
time of the build, so the layer differs from build to build whatever the files' times. A
`COPY goroot/ /` of a context tree in which EVERY entry, folders included, has a fixed time
gives the same layer each time (checked on engine 26: ../shared/ENVIRONMENT.md, "Reproducible
layers"). So the build context holds the tree as goroot/usr/local/go, and every folder and
every file that is not a hard link into the toolchain cache gets the release's date. Hard
links keep the archive's own times (already fixed), and the cache is never touched.
"""
from __future__ import annotations

import calendar
import os
import stat
import time
from pathlib import Path

from .lock import Release

LAYER_ROOT = "goroot"  # the context folder copied to / by the template's COPY goroot/ /
GOROOT = "usr/local/go"


def source_date_epoch(release: Release) -> int:
    """The release's date (midnight UTC) as SOURCE_DATE_EPOCH; 0 when the source gives none."""
    if not release.released:
        return 0
    return calendar.timegm(time.strptime(release.released, "%Y-%m-%d"))


def file_mode(mode: int) -> int:
    """0755 for a file anyone may run (any exec bit), else 0644 (pure)."""
    return 0o755 if mode & 0o111 else 0o644


def go_layer(folder: Path, epoch: int) -> Path:
    """Move the context's go/ to goroot/usr/local/go and give every entry of goroot/ the time
    epoch (hard-linked files excepted: they keep the archive's times) and a fixed mode: folders
    0755, files 0755 or 0644 by their exec bit. COPY goroot/ / puts the folders' metadata onto
    the base's own /usr and /usr/local, so a build host's umask (027: /usr 0750) would lock every
    non-root user out of the image, and change the layer's digest. Returns goroot/."""
    root = folder / LAYER_ROOT
    (root / GOROOT).parent.mkdir(parents=True)
    os.rename(folder / "go", root / GOROOT)
    for here, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(here, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != file_mode(st.st_mode):
                os.chmod(path, file_mode(st.st_mode))  # a hard link's cache twin gets it too: harmless
            if st.st_nlink == 1:  # a copy made for this context (a stripped tool)
                os.utime(path, (epoch, epoch), follow_symlinks=False)
        for name in dirs:
            if not os.path.islink(os.path.join(here, name)):
                os.chmod(os.path.join(here, name), 0o755)
            os.utime(os.path.join(here, name), (epoch, epoch), follow_symlinks=False)
    os.chmod(root, 0o755)
    os.utime(root, (epoch, epoch))
    return root
