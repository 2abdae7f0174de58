"""What the slim variant leaves out of the Go tree: a named list, each entry with its reason.

Everything here is something that `go build` and `go test` (CGO_ENABLED=0) never read. The
integration tests build and test a module with the pruned tree to keep this list honest.
"""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path

# (pattern relative to GOROOT, reason). A pattern ending in "/" removes a directory and all
# below it; "**/" matches any depth.
PRUNE: tuple[tuple[str, str], ...] = (
    ("api/", "API compatibility lists, read only by the Go project's own tests"),
    ("doc/", "release notes and specs"),
    ("misc/", "editor, wasm and cgo test support files"),
    ("test/", "the Go project's compiler test suite"),
    ("lib/wasm/", "wasm_exec.js, for GOOS=js and wasip1 only"),
    ("lib/fips140/", "frozen FIPS 140 module snapshots, read only when GOFIPS140 names one"),
    ("bin/gofmt", "the formatter: go build and go test never call it (go fmt does)"),
    ("src/cmd/", "sources of the go command and tools; their binaries are in bin/ and pkg/tool/"),
    ("src/**/testdata/", "test fixtures of the standard library"),
    ("src/**/*_test.go", "tests of the standard library"),
    ("src/runtime/race/**.syso", "race detector runtime: -race needs cgo, which slim lacks"),
    ("src/crypto/internal/boring/syso/", "BoringCrypto objects: need cgo and a GOEXPERIMENT"),
    ("pkg/tool/*/addr2line", "debugging tool, never called by a build"),
    ("pkg/tool/*/buildid", "the go command reads build IDs itself"),
    ("pkg/tool/*/cgo", "slim builds with CGO_ENABLED=0"),
    ("pkg/tool/*/dist", "bootstraps the toolchain from source"),
    ("pkg/tool/*/distpack", "packs release archives"),
    ("pkg/tool/*/doc", "go doc: documentation browser"),
    ("pkg/tool/*/fix", "go fix: source rewriter for old APIs"),
    ("pkg/tool/*/nm", "symbol lister, never called by a build"),
    ("pkg/tool/*/objdump", "disassembler, never called by a build"),
    ("pkg/tool/*/pack", "the go command writes archives itself"),
    ("pkg/tool/*/pprof", "profile viewer; profiles are copied out and read elsewhere"),
    ("pkg/tool/*/test2json", "go test -json converts in-process"),
    ("pkg/tool/*/trace", "trace viewer; traces are read elsewhere"),
)

# The root of the wheel's own layout adds nothing Go reads either.
_KEEP_ALWAYS = ("VERSION", "go.env", "LICENSE")


def _matches(rel: str, is_dir: bool) -> bool:
    for pattern, _ in PRUNE:
        if pattern.endswith("/"):
            if not is_dir:
                continue
            pat = pattern[:-1]
        else:
            pat = pattern
        if fnmatch.fnmatchcase(rel, pat) or (
            "**/" in pat and fnmatch.fnmatchcase(rel, pat.replace("**/", ""))
        ):
            return True
    return False


def kept_files(goroot: Path, prune: bool) -> Iterator[str]:
    """Relative paths of the files that go into the image, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(goroot):
        rel_dir = os.path.relpath(dirpath, goroot)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames.sort()
        if prune:
            dirnames[:] = [d for d in dirnames if not _matches(rel_dir + d, True)]
        for name in sorted(filenames):
            rel = rel_dir + name
            if not prune or rel in _KEEP_ALWAYS or not _matches(rel, False):
                yield rel
