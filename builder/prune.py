"""What a variant leaves out of the Go tree: named groups, each with what it removes, why, and
what stops working without it (the README's table is made from the same words).

A variant lists the groups it prunes (`prune:` in the matrix); slim prunes them all. Everything
a group removes is something that `go build`, `go test` (with its `go vet` step) and `go vet`
of a module, CGO_ENABLED=0, for the image's own platform, never read. The smoke test proves
that, and for each group proves that what the README says stops working does stop.
"""
from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError


@dataclass(frozen=True, kw_only=True)
class Group:
    name: str
    removes: str  # what it removes, in a few words
    reason: str  # why build and test do not need it
    breaks: str  # what stops working in an image without it
    proof: str  # what the smoke test checks for it (the README's last column)
    # Patterns relative to GOROOT: one ending in "/" removes a directory and all below it;
    # "**/" matches any depth.
    patterns: tuple[str, ...] = ()


OTHER_PLATFORMS = "other-platforms"
SYMBOLS = "symbols"

GROUPS: tuple[Group, ...] = (
    Group(name="docs", proof='`doc/` and `api/` are absent', removes="`api/`, `doc/`, `misc/`",
          reason="API lists, release notes, specs, editor and wasm support files: read by people "
                 "and the Go project's own checks, never by a build",
          breaks="nothing a build needs; read the docs at go.dev",
          patterns=("api/", "doc/", "misc/")),
    Group(name="tests", proof='`go test fmt` reports no test files', removes="`test/`, `src/**/testdata/`, `src/**/*_test.go`",
          reason="the Go project's compiler tests and the standard library's own tests and fixtures",
          breaks="go test of standard library packages (they report no test files)",
          patterns=("test/", "src/**/testdata/", "src/**/*_test.go")),
    Group(name="generators", proof='no `_*` folder is left under `src/`', removes="`src/**/_*/` (generator programs in `_gen`, `_asm`, ... folders)",
          reason="the go command ignores folders whose name starts with _: they only regenerate "
                 "standard library sources",
          breaks="regenerating the standard library's generated files",
          patterns=("src/**/_*/",)),
    Group(name="cmd-source", proof='`go list cmd/go`: not in std', removes="`src/cmd/`, `src/internal/trace/traceviewer/`",
          reason="sources of the go command and its tools (their binaries are in bin/ and "
                 "pkg/tool/), and the trace viewer's web UI that only cmd/trace imports",
          breaks="go tool for a tool not in pkg/tool (Go 1.24+ builds those from src/cmd: "
                 "pprof, trace, doc, fix, ...), rebuilding the toolchain",
          patterns=("src/cmd/", "src/internal/trace/traceviewer/")),
    Group(name="tools", proof='`go fmt` fails for want of gofmt; `go tool nm`: no such tool', removes="`bin/gofmt` and `pkg/tool`'s addr2line, dist, distpack, doc, fix, "
                                "nm, objdump, pack, pprof, test2json, trace",
          reason="tools a build or test never calls (go test -json and the go command's "
                 "archives are done in-process; buildid stays: go build -x of Go 1.21-1.23 "
                 "needs it)",
          breaks="gofmt and go fmt, go doc, go fix, go tool pprof/trace/nm/objdump/addr2line",
          patterns=("bin/gofmt",) + tuple(f"pkg/tool/*/{t}" for t in (
              "addr2line", "dist", "distpack", "doc", "fix", "nm", "objdump", "pack",
              "pprof", "test2json", "trace"))),
    Group(name="cgo", proof='`go tool cgo`: no such tool', removes="`pkg/tool/*/cgo`, the race detector's .syso objects, BoringCrypto objects",
          reason="slim builds with CGO_ENABLED=0 and has no C compiler",
          breaks="CGO_ENABLED=1, go test -race, GOEXPERIMENT=boringcrypto",
          patterns=("pkg/tool/*/cgo", "src/runtime/race/**.syso",
                    "src/crypto/internal/boring/syso/")),
    Group(name="fips-snapshots", proof='`lib/fips140/` is absent', removes="`lib/fips140/`",
          reason="frozen FIPS 140 module snapshots, read only when GOFIPS140 names one",
          breaks="GOFIPS140=v1.0.0 (a frozen module); GOFIPS140=latest still works",
          patterns=("lib/fips140/",)),
    Group(name="cover", proof='`go tool cover` (what `-cover` runs): no such tool', removes="`pkg/tool/*/cover`, `pkg/tool/*/covdata`",
          reason="coverage instrumentation and its data tool",
          breaks="go test -cover, go build -cover, go tool covdata",
          patterns=("pkg/tool/*/cover", "pkg/tool/*/covdata")),
    Group(name="pgo", proof='no `preprofile` in `pkg/tool/`', removes="`pkg/tool/*/preprofile` (Go 1.23+)",
          reason="turns a CPU profile into the compiler's PGO input; builds without a profile "
                 "never call it",
          breaks="-pgo=FILE and a default.pgo in the main package (Go 1.23+; older releases "
                 "have no preprofile and keep PGO)",
          patterns=("pkg/tool/*/preprofile",)),
    Group(name=OTHER_PLATFORMS, proof='`GOOS=windows go build`: build constraints exclude all Go files',
          removes="src files that only other platforms build (by file name: `_windows.go`, "
                  "`_arm64.s`, ...; or by a //go:build line no build tag can make true for the "
                  "image's GOOS/GOARCH), `lib/wasm/`",
          reason="go build reads only the files of its own GOOS/GOARCH",
          breaks="cross-compiling to another GOOS or GOARCH from this image",
          patterns=("lib/wasm/",)),
    Group(name=SYMBOLS, proof="a rebuild of the module compiles nothing (the build cache still keys on the tools' build IDs); `go version -m` of the compiler reads its build info", removes="the symbol tables of `bin/go` and `pkg/tool/*` (binutils' strip of the target architecture)",
          reason="the tools carry no DWARF; their symbol tables are only for debuggers and "
                 "profilers of the tools themselves (panics still print file:line from the "
                 "runtime's own tables, and build IDs and go version -m still work)",
          breaks="symbolized perf or gdb sessions of the go command and the compiler; the tool "
                 "binaries differ from the release's bytes (go version -m still reads them)"),
)
GROUP_NAMES: tuple[str, ...] = tuple(g.name for g in GROUPS)
_BY_NAME = {g.name: g for g in GROUPS}
# The root of the release's own layout adds nothing Go reads either.
_KEEP_ALWAYS = ("VERSION", "go.env", "LICENSE")


def group(name: str) -> Group:
    return _BY_NAME[name]


# Raise when the way groups are applied changes (not their wording): every image that prunes
# is then rebuilt, since its input digest includes fingerprint().
RULES_VERSION = 2


def fingerprint(groups: tuple[str, ...]) -> str:
    """What decides the files of a pruned tree, for an image's input digest."""
    return json.dumps({"rules": RULES_VERSION, "groups": [[n, group(n).patterns] for n in groups],
                       "os": sorted(KNOWN_OS), "arch": sorted(KNOWN_ARCH), "unix": sorted(UNIX_OS),
                       "strip": strip_argv("strip", Path("in"), Path("out")) if SYMBOLS in groups else None},
                      sort_keys=True)


def readme_table() -> str:
    """The README's table of the groups (a unit test keeps the README's copy current)."""
    rows = ["| group | removes | what stops working without it | the smoke test proves |",
            "|---|---|---|---|"]
    rows += [f"| `{g.name}` | {g.removes} | {g.breaks} | {g.proof} |" for g in GROUPS]
    return "\n".join(rows) + "\n"


# GOOS and GOARCH values the go command knows in file names and build lines
# (go/build/syslist.go); "unix" is a build tag only, true for these GOOS.
KNOWN_OS = frozenset(
    ["aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos"])
KNOWN_ARCH = frozenset(
    ["386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le", "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm"])
UNIX_OS = frozenset(
    ["aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "linux", "netbsd", "openbsd", "solaris"])


def name_matches(name: str, goos: str, goarch: str) -> bool:
    """Whether the go command would read a file of this name for goos/goarch (its
    goodOSArchFile rule: a _GOOS, _GOARCH or _GOOS_GOARCH suffix, before any _test)."""
    stem = name.split(".", 1)[0]
    if "_" not in stem:
        return True
    parts = stem[stem.index("_"):].split("_")
    if parts[-1] == "test":
        parts = parts[:-1]
    if len(parts) >= 2 and parts[-2] in KNOWN_OS and parts[-1] in KNOWN_ARCH:
        return parts[-2] == goos and parts[-1] == goarch
    if parts and (parts[-1] in KNOWN_OS or parts[-1] in KNOWN_ARCH):
        return parts[-1] in (goos, goarch)
    return True


_TOKEN = re.compile(r"\s*(\|\||&&|!|\(|\)|[A-Za-z0-9_.]+)")
_MAX_FREE_TAGS = 10


def build_line(path: Path) -> str | None:
    """The //go:build expression of a .go or .s file, or None. Only the header counts: blank
    lines and // comments before the first other line (a /* comment ends the search: keep)."""
    try:
        with open(path, "rb") as fh:
            for raw in itertools.islice(fh, 200):
                line = raw.decode("utf-8", "replace").strip()
                if line.startswith("//go:build "):
                    return line[len("//go:build "):].strip()
                if line and not line.startswith("//"):
                    return None
    except OSError:
        return None
    return None


def can_hold(expr: str, goos: str, goarch: str) -> bool:
    """Whether some setting of the tags that are not GOOS/GOARCH (cgo, purego, race,
    goexperiment.*, go1.N, ...) makes a build line true for goos/goarch. Anything that does
    not parse counts as possible: a file is removed only when it surely cannot be built."""
    tokens = _TOKEN.findall(expr)
    if "".join(tokens) != re.sub(r"\s+", "", expr):
        return True
    fixed: dict[str, bool] = {}
    free: list[str] = []
    code: list[str] = []
    for tok in tokens:
        if tok in ("||", "&&", "!"):
            code.append({"||": " or ", "&&": " and ", "!": " not "}[tok])
        elif tok in ("(", ")"):
            code.append(tok)
        else:
            if tok in KNOWN_OS:
                fixed[tok] = tok == goos
            elif tok in KNOWN_ARCH:
                fixed[tok] = tok == goarch
            elif tok == "unix":
                fixed[tok] = goos in UNIX_OS
            elif tok not in free:
                free.append(tok)
            code.append(f"v[{tok!r}]")
    if len(free) > _MAX_FREE_TAGS:
        return True
    try:
        compiled = compile("".join(code).strip(), "<go:build>", "eval")
        for values in itertools.product((False, True), repeat=len(free)):
            if eval(compiled, {"__builtins__": {}}, {"v": {**fixed, **dict(zip(free, values))}}):
                return True
    except SyntaxError:
        return True
    return False


def for_other_platforms(goroot: Path, rel: str, goos: str, goarch: str) -> bool:
    """Whether a file under src/ is one only other platforms build."""
    if not rel.startswith("src/"):
        return False
    name = rel.rsplit("/", 1)[-1]
    if not name_matches(name, goos, goarch):
        return True
    if name.endswith((".go", ".s")):
        expr = build_line(goroot / rel)
        return expr is not None and not can_hold(expr, goos, goarch)
    return False


def _matches(patterns: tuple[str, ...], rel: str, is_dir: bool) -> bool:
    for pattern in patterns:
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


def kept_files(goroot: Path, groups: tuple[str, ...] = (), platform: str = "linux/amd64"
               ) -> Iterator[str]:
    """Relative paths of the files that go into the image, in a stable order."""
    patterns = tuple(p for name in groups for p in group(name).patterns)
    goos, goarch = platform.split("/")[:2]
    other = OTHER_PLATFORMS in groups
    for dirpath, dirnames, filenames in os.walk(goroot):
        rel_dir = os.path.relpath(dirpath, goroot)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames.sort()
        dirnames[:] = [d for d in dirnames if not _matches(patterns, rel_dir + d, True)]
        for name in sorted(filenames):
            rel = rel_dir + name
            if rel in _KEEP_ALWAYS or not _matches(patterns, rel, False) and not (
                    other and for_other_platforms(goroot, rel, goos, goarch)):
                yield rel


# --- symbols --------------------------------------------------------------------------------

# binutils' strip of the target's architecture (Debian: binutils-<triplet>). llvm-strip 14
# reads every architecture but rewrites the section name table of Go 1.21's tools so that
# `go version -m` can no longer read them; binutils' generic elf64-little target writes
# e_machine 0 (the kernel then refuses the binary).
STRIP_TRIPLETS: dict[str, str] = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu",
                                  "arm": "arm-linux-gnueabihf"}


def strip_tool(platform: str) -> str:
    goarch = platform.split("/")[1]
    triplet = STRIP_TRIPLETS.get(goarch)
    if triplet is None:
        raise BuildError(f"no strip tool known for {platform}: drop 'symbols' from the variant's "
                         "prune list")
    path = shutil.which(f"{triplet}-strip")
    if path is None:
        raise BuildError(f"{triplet}-strip not found, needed by the prune group 'symbols' for "
                         f"{platform}: apt-get install binutils-{triplet.replace('_', '-')} "
                         "(or make setup), or drop 'symbols' from the variant's prune list")
    return path


def is_tool_binary(rel: str) -> bool:
    return rel.startswith(("bin/", "pkg/tool/"))


def strip_argv(tool: str, src: Path, dst: Path) -> list[str]:
    """Drop the sections nothing loads (.symtab, .strtab); the go command's build ID note is
    kept by name, should a strip tool ever count notes as removable."""
    return [tool, "--strip-all", "--keep-section=.note.go.buildid", "-o", str(dst), str(src)]


def strip_into(src: Path, dst: Path, tool: str) -> None:
    """Write a copy of the ELF file src without its symbol table to dst (src is never touched:
    it is the verified tree in the cache)."""
    with open(src, "rb") as fh:
        if fh.read(4) != b"\x7fELF":
            shutil.copy2(src, dst)
            return
    proc = subprocess.run(strip_argv(tool, src, dst), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{Path(tool).name} failed on {src.name}: "
                         f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}: "
                         "drop 'symbols' from the variant's prune list")
    shutil.copystat(src, dst)
