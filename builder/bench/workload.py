"""The embedded workload: a synthetic Go module graph served through a file:// GOPROXY, so that
module download, `go mod graph` and `go list -m all` do real work with no network.

Layout inside the bench volume (mounted at /gobuild):
    work/                  the main module example.com/workload (main.go, benchpkg/)
    proxy/<module>/@v/     list, v1.0.0.info, v1.0.0.mod, v1.0.0.zip for every module
    probe/                 the probe programs (runner, sched, memstats), built in the container
Everything is generated deterministically, so two runs bench the same code.

Sizes (`--workload-size`): small is the default shape that earlier results measured; large
approaches the module count of the published comparison of Go environments (about 1,200
modules), so that `go list -deps`, `go mod graph` and `go list -m all` work on a graph of
realistic size. Each module requires at most FANOUT modules of the next layer (as real modules
require a handful each, not hundreds), so a large graph's edges grow with its modules, not
with their square.
"""
from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

VERSION = "v1.0.0"
STAMP = (2024, 1, 1, 0, 0, 0)
PROBE_DIR = Path(__file__).resolve().parent / "probe"
GO_DIRECTIVE = "go 1.21"
FANOUT = 8  # modules of the next layer each module requires (all of them in layers this small)
# name -> (modules, packages); the times each takes are in the README's bench section
SIZES: dict[str, tuple[int, int]] = {"small": (20, 100), "medium": (200, 600), "large": (1200, 2400)}


def _module(i: int) -> str:
    return f"example.com/m{i:02d}"


def requirements(layer: list[int], next_layer: list[int], module: int) -> list[int]:
    """The modules of the next layer that a module requires: all of them up to FANOUT, else a
    window of FANOUT that starts further along for each module, so that every module of the
    next layer is required by some module of this one."""
    if len(next_layer) <= FANOUT:
        return list(next_layer)
    start = layer.index(module) * FANOUT
    return [next_layer[(start + j) % len(next_layer)] for j in range(FANOUT)]


def layers(modules: int, depth: int = 4) -> list[list[int]]:
    """Module indices by layer; layer 0 is required by the main module."""
    per = max(1, -(-modules // depth))
    return [list(range(s, min(s + per, modules))) for s in range(0, modules, per)]


def _import_names(imports: list[str]) -> list[tuple[str, str]]:
    """(name the file uses, import line) per import; a package name met twice in one file
    (two modules' p0) gets an alias, as Go rejects the second otherwise."""
    seen = {"fmt", "sort", "strings"}
    out = []
    for j, path in enumerate(imports):
        name = path.rsplit("/", 1)[1]
        if name in seen:
            name = f"d{j}_{name}"
            out.append((name, f'\t{name} "{path}"'))
        else:
            out.append((name, f'\t"{path}"'))
        seen.add(name)
    return out


def _package_source(name: str, imports: list[str], seed: int) -> str:
    named = _import_names(imports)
    lines = [f"package {name}", "", "import ("]
    lines += [f'\t"{p}"' for p in ("fmt", "sort", "strings")] + [line for _, line in named]
    lines += [")", ""]
    lines += [
        "// Item is a small record the generated functions sort and format.",
        "type Item struct {",
        "\tKey   string",
        "\tValue int",
        "}",
        "",
        "// Set is a generic container, so that the compiler instantiates generics too.",
        "type Set[T comparable] struct{ m map[T]struct{} }",
        "",
        "func (s *Set[T]) Add(v T) {",
        "\tif s.m == nil {",
        "\t\ts.m = map[T]struct{}{}",
        "\t}",
        "\ts.m[v] = struct{}{}",
        "}",
        "",
        "func (s *Set[T]) Len() int { return len(s.m) }",
        "",
    ]
    for f in range(12):
        k = seed * 31 + f
        lines += [
            f"// F{f} mixes arithmetic, strings, maps and sorting.",
            f"func F{f}(n int) string {{",
            "\titems := make([]Item, 0, n)",
            "\tvar set Set[string]",
            "\tfor i := 0; i < n; i++ {",
            f"\t\tkey := fmt.Sprintf(\"k%d-%d\", i%{k % 7 + 3}, i*{k % 11 + 1})",
            "\t\tset.Add(key)",
            f"\t\titems = append(items, Item{{Key: key, Value: (i*{k % 13 + 2}) ^ {k}}})",
            "\t}",
            "\tsort.Slice(items, func(a, b int) bool { return items[a].Value < items[b].Value })",
            "\tvar b strings.Builder",
            "\tfor _, it := range items {",
            "\t\tswitch {",
            f"\t\tcase it.Value%{k % 5 + 2} == 0:",
            "\t\t\tb.WriteString(strings.ToUpper(it.Key))",
            "\t\tdefault:",
            "\t\t\tb.WriteString(it.Key)",
            "\t\t}",
            "\t}",
            "\treturn fmt.Sprint(set.Len(), len(b.String()))",
            "}",
            "",
        ]
    calls = " + ".join([f"{n}.F0(2)" for n, _ in named] or ['""'])
    lines += ["// Chain reaches into the packages this one imports.", "func Chain() string {",
              f"\treturn F1(3) + {calls}", "}", ""]
    return "\n".join(lines)


def package_counts(modules: int, packages: int) -> list[int]:
    """Packages per module: exactly `packages` in all, spread evenly, the first modules taking
    one more when they do not divide (20 modules, 100 packages: 5 each)."""
    if modules < 1 or packages < modules:
        from ..errors import ConfigError

        raise ConfigError(
            f"a workload of {modules} modules needs at least as many packages (got {packages}): "
            "every module holds at least one package"
        )
    per, extra = divmod(packages, modules)
    return [per + (1 if m < extra else 0) for m in range(modules)]


def module_graph(modules: int = 20, packages: int = 100) -> dict[str, bytes]:
    """Files of the synthetic graph (paths relative to /gobuild): `modules` modules in up to 4
    layers, `packages` packages in all; each module requires up to FANOUT modules of the next
    layer, each package imports one package of each of (up to) two of them, and the main module
    imports every package."""
    counts = package_counts(modules, packages)
    by_layer = layers(modules)
    layer_of = {m: li for li, ms in enumerate(by_layer) for m in ms}
    files: dict[str, bytes] = {}
    for m in range(modules):
        li = layer_of[m]
        deps = requirements(by_layer[li], by_layer[li + 1], m) if li + 1 < len(by_layer) else []
        mod = _module(m)
        gomod = f"module {mod}\n\n{GO_DIRECTIVE}\n"
        if deps:
            gomod += "\nrequire (\n" + "".join(f"\t{_module(d)} {VERSION}\n" for d in deps) + ")\n"
        zbuf = io.BytesIO()
        with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
            def add(name: str, data: str, mod: str = mod) -> None:
                info = zipfile.ZipInfo(f"{mod}@{VERSION}/{name}", date_time=STAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)

            add("go.mod", gomod)
            for p in range(counts[m]):
                imports = [f"{_module(d)}/p{(p + j) % counts[d]}" for j, d in enumerate(deps[:2])]
                add(f"p{p}/p{p}.go", _package_source(f"p{p}", imports, m * 100 + p))
        base = f"proxy/{mod}/@v/"
        files[base + "list"] = f"{VERSION}\n".encode()
        files[base + f"{VERSION}.info"] = json.dumps(
            {"Version": VERSION, "Time": "2024-01-01T00:00:00Z"}).encode()
        files[base + f"{VERSION}.mod"] = gomod.encode()
        files[base + f"{VERSION}.zip"] = zbuf.getvalue()
    # The main module imports every package, so a build compiles the whole graph; go.mod
    # lists every module, as 'go mod tidy' would, and module requirements give the depth.
    pkgs = [f"{_module(m)}/p{p}" for m in range(modules) for p in range(counts[m])]
    files["work/go.mod"] = (
        f"module example.com/workload\n\n{GO_DIRECTIVE}\n\nrequire (\n"
        + "".join(f"\t{_module(m)} {VERSION}\n" for m in range(modules)) + ")\n"
    ).encode()
    aliased = "\n".join(f'\tw{i} "{p}"' for i, p in enumerate(pkgs))
    uses = "\n".join(f"\tfmt.Println(w{i}.Chain())" for i in range(len(pkgs)))
    files["work/main.go"] = (
        f"package main\n\nimport (\n\t\"fmt\"\n\n{aliased}\n)\n\nfunc main() {{\n{uses}\n}}\n"
    ).encode()
    files["work/benchpkg/bench.go"] = BENCH_GO.encode()
    files["work/benchpkg/bench_test.go"] = BENCH_TEST_GO.encode()
    return files


BENCH_GO = """// Package benchpkg is the embedded workload of the gotest suite.
package benchpkg

import (
	"encoding/json"
	"sort"
	"strings"
)

type Record struct {
	Name  string            `json:"name"`
	Score int               `json:"score"`
	Tags  map[string]string `json:"tags"`
}

func Records(n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Name: strings.Repeat("x", i%17+1), Score: (i * 7919) % 1009,
			Tags: map[string]string{"i": strings.Repeat("t", i%5)}}
	}
	return out
}

func SortByScore(rs []Record) { sort.Slice(rs, func(a, b int) bool { return rs[a].Score < rs[b].Score }) }

func Encode(rs []Record) ([]byte, error) { return json.Marshal(rs) }

func Join(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString("go")
	}
	return b.String()
}
"""

BENCH_TEST_GO = """package benchpkg

import "testing"

func TestEncode(t *testing.T) {
	if _, err := Encode(Records(10)); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkSort(b *testing.B) {
	for i := 0; i < b.N; i++ {
		rs := Records(1000)
		SortByScore(rs)
	}
}

func BenchmarkJSON(b *testing.B) {
	rs := Records(200)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Encode(rs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMap(b *testing.B) {
	for i := 0; i < b.N; i++ {
		m := make(map[int]int)
		for j := 0; j < 1000; j++ {
			m[j] = j
		}
	}
}

func BenchmarkJoin(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = Join(1000)
	}
}
"""


def probe_files() -> dict[str, bytes]:
    out = {}
    for path in sorted(PROBE_DIR.rglob("*")):
        if path.is_file() and (path.suffix == ".go" or path.name == "go.mod"):
            out["probe/" + path.relative_to(PROBE_DIR).as_posix()] = path.read_bytes()
    return out


def user_workload(path: Path) -> dict[str, bytes]:
    """A user's module, copied under work/ (without .git and vendor caches)."""
    if not (path / "go.mod").is_file():
        from ..errors import ConfigError

        raise ConfigError(f"--workload {path}: no go.mod there; point at a Go module's root")
    out = {}
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if f.is_file() and ".git" not in rel.parts and not f.is_symlink():
            out["work/" + rel.as_posix()] = f.read_bytes()
    return out


def tarball(files: dict[str, bytes], uid: int = 0) -> bytes:
    """A tar of the files (for put_archive), owned by uid, with fixed times."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        dirs = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, 0o777, uid, uid, 1704067200
                    tf.addfile(info)
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o666, uid, uid, 1704067200
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
