"""reproducible.go_layer under a strict umask: the Go layer's folders and files get fixed modes
(COPY goroot/ / puts the folders' metadata onto the base's /usr and /usr/local)."""
from __future__ import annotations

import os
import stat

from builder import reproducible

EPOCH = 1733184000  # 2024-12-03


def test_modes_are_fixed_whatever_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        go = tmp_path / "go"
        (go / "bin").mkdir(parents=True)
        (go / "bin" / "go").write_bytes(b"\x7fELF")
        (go / "bin" / "go").chmod(0o750)
        (go / "VERSION").write_text("go1.22.10\n")  # 0640 under this umask
        root = reproducible.go_layer(tmp_path, EPOCH)
    finally:
        os.umask(old)
    modes = {p.relative_to(root).as_posix(): stat.S_IMODE(p.lstat().st_mode)
             for p in [root, *root.rglob("*")]}
    assert modes == {".": 0o755, "usr": 0o755, "usr/local": 0o755, "usr/local/go": 0o755,
                     "usr/local/go/bin": 0o755, "usr/local/go/bin/go": 0o755,
                     "usr/local/go/VERSION": 0o644}
    assert {int(p.lstat().st_mtime) for p in [root, *root.rglob("*")]} == {EPOCH}
