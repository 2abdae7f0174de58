from pathlib import Path

import pytest

from builder.errors import ConfigError
from builder.matrix import Selection, load_matrix, parse_matrix, select

GOOD = """
go: ["1.22", "1.23.4"]
platforms: [linux/amd64, linux/arm64]
variants:
  bookworm: {kind: debian, base: "debian:bookworm-slim", packages: [git, gcc]}
  slim: {kind: slim}
"""


def parse(text: str):
    return parse_matrix(text, Path("m.yaml"))


def test_cells_have_stable_identifiers():
    m = parse(GOOD)
    ids = [c.id for c in m.cells()]
    assert ids[:2] == ["go1.22-bookworm-linux-amd64", "go1.22-bookworm-linux-arm64"]
    assert "go1.23.4-slim-linux-arm64" in ids
    assert len(ids) == 8


def test_the_project_matrix_parses(root):
    m = load_matrix(root / "images" / "matrix.yaml")
    assert {"1.21", "1.22", "1.23"} <= set(m.go)
    assert m.platforms == ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6")
    assert [v.name for v in m.variants] == ["bookworm", "slim"]
    bookworm = m.variants[0]
    assert bookworm.cgo and {"ca-certificates", "git", "gcc", "libc6-dev"} <= set(bookworm.packages)
    assert not m.variants[1].cgo


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD.replace("platforms:", "platfroms:"), "unknown key 'platfroms' (did you mean 'platforms'?)"),
        (GOOD.replace("kind: slim", "knd: slim"), "unknown key 'knd' (did you mean 'kind'?)"),
        (GOOD.replace("linux/arm64]", "linux/sparc64]"), "unknown platform 'linux/sparc64'"),
        (GOOD.replace('"1.22"', '"1.22\\nRUN rm -rf /"'), "invalid Go version"),
        (GOOD.replace('"1.22"', "1.20"), "must be quoted"),
        (GOOD.replace('"1.23.4"', '"1.22"'), "duplicate go version '1.22'"),
        (GOOD.replace('"1.23.4"', '"1.22.3"'), "same minor release"),
        (GOOD.replace("[linux/amd64, linux/arm64]", "[linux/amd64, linux/amd64]"), "duplicate platform"),
        (GOOD.replace("kind: slim", "kind: alpine"), "is not a variant kind"),
        (GOOD.replace("[git, gcc]", "['git; rm -rf /']"), "Debian package names"),
        (GOOD.replace('"debian:bookworm-slim"', '"debian:bookworm\\nRUN x"'), "invalid image reference"),
        ("go: [", "not valid YAML"),
        ("- 1", "must be a mapping"),
    ],
)
def test_bad_matrices_are_one_line_errors(text, message):
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert message in err.value.message
    assert "\n" not in err.value.message
    assert err.value.exit_code == 2


def test_selectors_with_globs():
    m = parse(GOOD)
    cells = select(m, Selection(go=("1.2*",), platforms=("linux/arm64",), variants=("slim",)))
    assert [c.id for c in cells] == ["go1.22-slim-linux-arm64", "go1.23.4-slim-linux-arm64"]


@pytest.mark.parametrize(
    "selection, message",
    [
        (Selection(variants=("slimm",)), "did you mean 'slim'?"),
        (Selection(go=("1.19",)), "matches no Go version"),
        (Selection(platforms=("linux/sparc64",)), "unknown platform"),
    ],
)
def test_selectors_that_match_nothing_are_errors(selection, message):
    with pytest.raises(ConfigError) as err:
        select(parse(GOOD), selection)
    assert message in err.value.message


def test_latest_selects_the_newest_version():
    cells = select(parse(GOOD), Selection(go=("latest",), variants=("slim",)))
    assert {c.go for c in cells} == {"1.23.4"}


def test_one_architecture_table_for_machines_go_and_wheels():
    from builder.matrix import GOARCHES, PLATFORMS, goarch, machine_name

    assert GOARCHES == tuple(dict.fromkeys(p.split("/")[1] for p in PLATFORMS))
    assert [goarch(m) for m in ("x86_64", "aarch64", "AMD64", "arm64\n", "armv7l", "armv6l")] == [
        "amd64", "arm64", "amd64", "arm64", "arm", "arm"]
    assert goarch("riscv64") == "riscv64"  # unknown machines come back as given, for messages
    assert [machine_name(a) for a in GOARCHES] == ["x86_64", "aarch64", "armv7l"]
    assert all(goarch(machine_name(a)) == a for a in GOARCHES)
