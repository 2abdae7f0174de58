"""The embedded workload's shape: exactly the packages asked for, and Go files the compiler takes
(the integration test compiles them; these check the shape without a toolchain)."""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile

import pytest

from builder.bench import workload
from builder.errors import ConfigError

SHAPES = [(1, 1), (2, 2), (3, 4), (8, 8), (7, 50), (20, 100), (30, 100), (30, 30)]
_IMPORT = re.compile(r'^\t(?:(\w+) )?"([^"]+)"$')


def go_files(files: dict[str, bytes]) -> dict[str, str]:
    """Every .go file of the graph: module zips unpacked (module@version/path) plus work/."""
    out = {}
    for name, data in files.items():
        if name.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                out.update({n: zf.read(n).decode() for n in zf.namelist() if n.endswith(".go")})
        elif name.endswith(".go"):
            out[name] = data.decode()
    return out


def imports(source: str) -> list[tuple[str, str]]:
    """(name the file uses, path) of each import in the file's import block."""
    if single := re.search(r'^import (\w+ )?"([^"]+)"$', source, re.MULTILINE):
        return [((single.group(1) or "").strip() or single.group(2).rsplit("/", 1)[-1],
                 single.group(2))]
    block = source.split("import (\n", 1)[1].split("\n)", 1)[0] if "import (" in source else ""
    out = []
    for line in block.splitlines():
        if m := _IMPORT.match(line):
            out.append((m.group(1) or m.group(2).rsplit("/", 1)[-1], m.group(2)))
    return out


def packages_of(files: dict[str, bytes]) -> set[str]:
    """Import paths of the packages the module zips hold."""
    return {f"{n.split('@')[0]}/{n.split('/')[-2]}" for n in go_files(files)
            if "@" in n}


@pytest.mark.parametrize("modules, packages", SHAPES)
def test_exactly_the_packages_asked_for_spread_over_every_module(modules, packages):
    files = workload.module_graph(modules, packages)
    pkgs = packages_of(files)
    assert len(pkgs) == packages
    per_module = [sum(1 for p in pkgs if p.startswith(f"example.com/m{m:02d}/"))
                  for m in range(modules)]
    assert min(per_module) >= 1 and max(per_module) - min(per_module) <= 1, per_module
    main = files["work/main.go"].decode()
    assert {path for _, path in imports(main)} - {"fmt"} == pkgs  # the build compiles them all


@pytest.mark.parametrize("modules, packages", SHAPES)
def test_import_names_are_unique_in_every_file_and_resolve(modules, packages):
    files = workload.module_graph(modules, packages)
    pkgs = packages_of(files)
    for name, source in go_files(files).items():
        used = imports(source)
        names = [n for n, _ in used]
        assert len(names) == len(set(names)), f"{name}: import names {names}"
        for n, path in used:
            assert path in pkgs or "." not in path.split("/")[0], f"{name}: {path} is nowhere"
            if path in pkgs:
                assert f"{n}." in source.split("import (", 1)[1].split("\n)", 1)[1], \
                    f"{name}: {n} imported, not used"


def test_aliases_appear_only_where_two_imports_share_a_name():
    src = go_files(workload.module_graph(8, 8))["example.com/m00@v1.0.0/p0/p0.go"]
    assert imports(src)[-2:] == [("p0", "example.com/m02/p0"), ("d1_p0", "example.com/m03/p0")]
    assert "d1_p0.F0(2)" in src


def test_a_module_without_packages_is_refused():
    with pytest.raises(ConfigError, match="30 modules needs at least as many packages"):
        workload.module_graph(30, 10)
    with pytest.raises(ConfigError):
        workload.module_graph(0, 10)


def test_the_default_workload_is_byte_for_byte_the_one_earlier_results_measured():
    """Bench results are compared across gobuild versions (benchstat old new): the default
    workload must not change by accident. Change this digest only on purpose, and say so in
    the release notes, since it makes older results incomparable."""
    files = workload.module_graph()
    assert files == workload.module_graph()  # deterministic
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    assert h.hexdigest() == "37b620ea1db7989449e246e4e96cc07732455257212d102b2cd4d730a508a2fe"
    assert len(packages_of(files)) == 100


@pytest.mark.parametrize("size", list(workload.SIZES))
def test_each_size_is_a_graph_of_its_modules_and_packages(size):
    modules, packages = workload.SIZES[size]
    files = workload.module_graph(modules, packages)
    zips = [n for n in files if n.endswith(".zip")]
    assert len(zips) == modules and len(packages_of(files)) == packages
    assert workload.SIZES["large"][0] >= 1200  # the published comparison's graph size


def test_large_graphs_require_a_bounded_number_of_modules_and_every_module_is_required():
    modules, packages = workload.SIZES["large"]
    files = workload.module_graph(modules, packages)
    required_by_some = set()
    for name, data in files.items():
        if name.endswith(".mod") and name.startswith("proxy/"):
            reqs = re.findall(r"^\t(example\.com/m\d+) v1\.0\.0$", data.decode(), re.MULTILINE)
            assert len(reqs) <= workload.FANOUT, name
            required_by_some.update(reqs)
    first_layer = {f"example.com/m{m:02d}" for m in workload.layers(modules)[0]}
    assert required_by_some | first_layer == {f"example.com/m{m:02d}" for m in range(modules)}
    main = files["work/go.mod"].decode()
    assert main.count(" v1.0.0\n") == modules  # the main module lists the whole graph


@pytest.mark.parametrize("modules, packages", [(20, 100), (200, 600)])
def test_the_proxy_folder_follows_the_module_proxy_protocol_and_zip_rules(modules, packages):
    """The layout `go mod download` asks a GOPROXY for, and Go's module zip rules
    (golang.org/x/mod/zip): every file under module@version/, go.mod only at the top, no two
    paths equal under case folding, nothing but files."""
    files = workload.module_graph(modules, packages)
    for m in range(modules):
        mod = f"example.com/m{m:02d}"
        base = f"proxy/{mod}/@v/"
        assert files[base + "list"] == b"v1.0.0\n"
        info = json.loads(files[base + "v1.0.0.info"])
        assert info["Version"] == "v1.0.0" and info["Time"].endswith("Z")
        gomod = files[base + "v1.0.0.mod"]
        with zipfile.ZipFile(io.BytesIO(files[base + "v1.0.0.zip"])) as zf:
            names = zf.namelist()
            assert all(n.startswith(f"{mod}@v1.0.0/") for n in names)
            assert not any(n.endswith("/") for n in names)  # files only
            assert [n for n in names if n.rsplit("/", 1)[-1] == "go.mod"] == [f"{mod}@v1.0.0/go.mod"]
            assert zf.read(f"{mod}@v1.0.0/go.mod") == gomod  # the .mod the proxy serves
            assert len({n.casefold() for n in names}) == len(names)
            assert all(re.fullmatch(r"[A-Za-z0-9@./_-]+", n) for n in names)
