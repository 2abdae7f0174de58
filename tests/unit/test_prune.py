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


def test_every_prune_entry_says_why():
    assert all(reason and len(reason) > 10 for _, reason in PRUNE)
