"""`gobuild ci matrix`: the selected cells as the JSON strategy.matrix takes, one entry per
platform with its runner label; and what pull --digest and join --digests accept."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder import ci, pipeline, registry
from builder.errors import ConfigError, RegistryError
from builder.inputs import Inputs
from builder.matrix import Selection

ROOT = Path(__file__).resolve().parents[2]


def inputs(**selection) -> Inputs:
    """The project's own matrix and lock, wherever pytest was started."""
    return Inputs.resolve(selection=Selection(**selection), cwd=ROOT)


def cells(**selection):
    return inputs(**selection).cells()


def test_one_entry_per_platform_on_its_native_runner_with_its_cells():
    """The 32-bit ARM platforms have no native runner: they are emulated on the amd64 one;
    arm/v6 has slim cells only (no Debian variant)."""
    result = ci.strategy_matrix(cells(go=("1.22",)))
    assert result == {"include": [
        {"platform": "linux/amd64", "arch": "amd64", "runner": "ubuntu-24.04", "emulated": False,
         "cells": ["go1.22-bookworm-linux-amd64", "go1.22-slim-linux-amd64"]},
        {"platform": "linux/arm64", "arch": "arm64", "runner": "ubuntu-24.04-arm",
         "emulated": False, "cells": ["go1.22-bookworm-linux-arm64", "go1.22-slim-linux-arm64"]},
        {"platform": "linux/arm/v7", "arch": "arm-v7", "runner": "ubuntu-24.04", "emulated": True,
         "cells": ["go1.22-bookworm-linux-arm-v7", "go1.22-slim-linux-arm-v7"]},
        {"platform": "linux/arm/v6", "arch": "arm-v6", "runner": "ubuntu-24.04", "emulated": True,
         "cells": ["go1.22-slim-linux-arm-v6"]},
    ]}


def test_selectors_narrow_the_entries_and_the_cells():
    result = ci.strategy_matrix(cells(platforms=("linux/arm64",), variants=("slim",)))
    [entry] = result["include"]
    assert entry["runner"] == "ubuntu-24.04-arm"
    assert entry["cells"] == [f"go{v}-slim-linux-arm64" for v in ("1.21", "1.22", "1.23", "1.26", "1.27")]


def test_runner_labels_can_be_overridden_and_emulate_puts_everything_on_amd64():
    labels = ci.runner_labels(["linux/arm64=self-hosted-arm", "linux/amd64=big-x86"])
    assert labels == {"linux/amd64": "big-x86", "linux/arm64": "self-hosted-arm"}
    result = ci.strategy_matrix(cells(go=("latest",), variants=("slim",)), runners=labels,
                                emulate=True)
    assert [(e["platform"], e["runner"], e["emulated"]) for e in result["include"]] == [
        ("linux/amd64", "big-x86", False), ("linux/arm64", "big-x86", True),
        ("linux/arm/v7", "big-x86", True), ("linux/arm/v6", "big-x86", True)]


@pytest.mark.parametrize("text, needle", [
    ("linux/arm64", "is not PLATFORM=LABEL"),
    ("linux/arm65=x", "did you mean 'linux/arm64'?"),
    ("linux/arm64=two words", "a runner label is"),
    ("linux/arm64=${{ secrets.X }}", "a runner label is"),
])
def test_bad_runner_overrides_are_one_line_config_errors(text, needle):
    with pytest.raises(ConfigError, match=None) as info:
        ci.runner_labels([text])
    assert needle in info.value.message and "\n" not in info.value.message


def test_the_command_prints_one_line_of_json_that_fromjson_reads(cli):
    result = cli("ci", "matrix", "--go", "latest", "--json")
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1  # one line: what "echo matrix=... >> $GITHUB_OUTPUT" needs
    assert json.loads(result.output) == ci.strategy_matrix(cells(go=("latest",)))
    text = cli("ci", "matrix", "--go", "latest", "--variant", "slim").output
    assert text.splitlines() == ["linux/amd64  ubuntu-24.04: go1.27-slim-linux-amd64",
                                 "linux/arm64  ubuntu-24.04-arm: go1.27-slim-linux-arm64",
                                 "linux/arm/v7 emulated on ubuntu-24.04: go1.27-slim-linux-arm-v7",
                                 "linux/arm/v6 emulated on ubuntu-24.04: go1.27-slim-linux-arm-v6"]
    assert "Examples" in cli("ci", "matrix", "--help").output
    assert "Examples" in cli("ci", "--help").output


def test_a_bad_runner_is_exit_2_from_the_command(cli):
    result = cli("ci", "matrix", "--runner", "linux/arm64")
    assert result.exit_code == 2 and "is not PLATFORM=LABEL" in result.output


# --- pull --digest and join --digests, before anything reaches the registry -----------------

DIGEST = "sha256:" + "a" * 64


def test_pull_digest_must_be_a_sha256_and_pin_one_version_and_variant():
    lock = inputs().lock()
    with pytest.raises(ConfigError, match="is not sha256:<64 hex digits>"):
        pipeline.pull(cells(go=("1.22",), variants=("slim",)), lock, "r:5000/ns", digest="latest")
    with pytest.raises(ConfigError, match="--digest pins one image, but the selectors match 2"):
        pipeline.pull(cells(go=("1.22",)), lock, "r:5000/ns", digest=DIGEST)


def test_pull_digest_pulls_each_platform_s_manifest_of_the_pinned_index(monkeypatch):
    """The engine and the registry are replaced (unit test of the arguments): an index digest
    is pulled once per selected platform, by that platform's manifest digest in the index
    (one engine keeps one image per repo@digest), never by the moving tag. The two 32-bit ARM
    platforms share an architecture and are told apart by the index entry's variant."""
    per_platform = {"linux/amd64": "sha256:" + "1" * 64, "linux/arm64": "sha256:" + "2" * 64,
                    "linux/arm/v7": "sha256:" + "3" * 64, "linux/arm/v6": "sha256:" + "4" * 64}

    def entry(platform, digest):
        os_name, arch, *variant = platform.split("/")
        return {"digest": digest, "platform": {"os": os_name, "architecture": arch,
                                               **({"variant": variant[0]} if variant else {})}}

    index = {"digest": DIGEST, "manifests": [entry(p, d) for p, d in per_platform.items()]}
    monkeypatch.setattr(registry, "describe", lambda ref: index if ref.endswith(DIGEST) else None)
    selected = inputs(go=("1.22",), variants=("slim",))
    lock = selected.lock()
    pulls = []

    class Image:
        def __init__(self, arch, sha, variant=None):
            self.labels = {"io.gobuild.toolchain.sha256": sha}
            self.attrs = {"Architecture": arch, **({"Variant": variant} if variant else {})}
            self.id = "sha256:" + "c" * 64
            self.tags = []

        def tag(self, name):
            self.tags.append(name)

    served = {}  # platform -> the platform the engine's pulled image is of (else itself)

    class Images:
        def pull(self, ref, platform):
            pulls.append((ref, platform))
            _, arch, *variant = served.get(platform, platform).split("/")
            return Image(arch, lock.go["1.22"].files[arch].sha256, *variant)

    class Client:
        images = Images()

    out = pipeline.pull(selected.cells(), lock, "r:5000/ns", client=Client(), digest=DIGEST)
    assert pulls == [(f"r:5000/ns/go@{d}", p) for p, d in per_platform.items()]
    assert [p["digest"] for p in out] == [DIGEST] * 4
    assert [p["tag"] for p in out] == [f"gobuild/go:{lock.go['1.22'].version}-slim-{a}"
                                       for a in ("amd64", "arm64", "arm-v7", "arm-v6")]
    # An arm/v7 image where arm/v6 was asked for (same architecture, same toolchain) is refused.
    served["linux/arm/v6"] = "linux/arm/v7"
    with pytest.raises(RegistryError, match="for linux/arm/v6 pulled a arm/v7 image"):
        pipeline.pull(selected.cells(), lock, "r:5000/ns", client=Client(), digest=DIGEST)
    served.clear()
    index["manifests"].pop()  # arm/v6's: arm/v7's, the same architecture, does not stand in
    with pytest.raises(RegistryError, match="lists no linux/arm/v6 image"):
        pipeline.pull(selected.cells(), lock, "r:5000/ns", client=Client(), digest=DIGEST)
    with pytest.raises(RegistryError, match="is not in the registry"):
        pipeline.pull(selected.cells(), lock, "r:5000/ns", client=Client(),
                      digest="sha256:" + "9" * 64)


def digests_entry(cell_id, remote, digest=DIGEST):
    return {"id": cell_id, "remote": remote, "digest": digest, "platform": "linux/amd64"}


def test_join_digests_takes_the_selected_cells_and_refuses_another_registry(tmp_path):
    selected = inputs(go=("1.22",), variants=("slim",))
    lock = selected.lock()
    version = lock.go["1.22"].version
    good = digests_entry("go1.22-slim-linux-amd64", f"r:5000/ns/go:{version}-slim-amd64")
    other_cell = digests_entry("go1.27-slim-linux-amd64", "r:5000/ns/go:1.27.3-slim-amd64")
    not_pushed = {"id": "go1.22-slim-linux-arm64", "tag": "gobuild/go:x"}
    pushed = registry.pushed_from_digests([good, other_cell, not_pushed], selected.cells(), lock,
                                          "r:5000/ns", "f.json")
    assert [(p.id, p.digest, p.go_version) for p in pushed] == [("go1.22-slim-linux-amd64", DIGEST, version)]
    with pytest.raises(ConfigError, match="expected r:5000/other/go"):
        registry.pushed_from_digests([good], selected.cells(), lock, "r:5000/other", "f.json")
    with pytest.raises(ConfigError, match="with a sha256 digest"):
        registry.pushed_from_digests([{**good, "digest": "sha256:short"}], selected.cells(), lock,
                                     "r:5000/ns", "f.json")
    bad = tmp_path / "digests.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read digests file"):
        pipeline.join(selected.cells(), lock, "r:5000/ns", digests=[bad])
    bad.write_text(json.dumps([other_cell]))
    with pytest.raises(ConfigError, match="name no pushed image of the selected cells"):
        pipeline.join(selected.cells(), lock, "r:5000/ns", digests=[bad])


@pytest.mark.parametrize("text", ["no-equals", "=value", "key=", "bad key=x", "k=two\nlines"])
def test_annotations_are_key_value_on_one_line(text):
    with pytest.raises(ConfigError, match="is not KEY=VALUE on one line"):
        registry.parse_annotation(text)


def test_index_annotations_name_version_and_description_and_extra_wins():
    [cell] = cells(go=("1.22",), variants=("bookworm",), platforms=("linux/amd64",))
    got = registry.index_annotations("1.22.10", cell.variant,
                                     {"org.opencontainers.image.source": "https://example.test/x"})
    assert got == {
        "org.opencontainers.image.version": "1.22.10",
        "org.opencontainers.image.description":
            f"Go 1.22.10 (bookworm): {cell.variant.description}",
        "org.opencontainers.image.source": "https://example.test/x",
    }
    argv = registry.imagetools_argv(["r/go:1.22.10-bookworm"], ["r/go@" + DIGEST], got)
    assert argv[argv.index("--annotation") + 1].startswith("index:org.opencontainers.image.")
    assert argv.count("--annotation") == 3 and argv[-1] == "r/go@" + DIGEST


# --- index annotations: asked for only when imagetools can write them ------------------------

OCI = "application/vnd.oci.image.manifest.v1+json"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def fake_registry(monkeypatch, media_types: dict[str, str], raw_out: str = "{}", raw_rc: int = 0):
    """describe() and the docker CLI replaced (unit test of the arguments): the per-arch
    sources have the given media types, no multi-arch tag exists yet; returns the argv list."""
    calls = []

    def describe(ref):
        digest = ref.rpartition("@")[2]
        return {"mediaType": media_types[digest], "digest": digest} if "@" in ref else None

    def imagetools(argv):
        calls.append(argv)
        out = raw_out if "--raw" in argv else ""
        return subprocess.CompletedProcess(argv, raw_rc if "--raw" in argv else 0, out, "boom")

    monkeypatch.setattr(registry, "describe", describe)
    monkeypatch.setattr(registry, "_imagetools", imagetools)
    return calls


AMD, ARM = "sha256:" + "1" * 64, "sha256:" + "2" * 64
WANTED = {"org.opencontainers.image.version": "1.22.10", "org.opencontainers.image.source": "s"}


def test_join_asks_for_annotations_only_when_every_source_is_oci(monkeypatch, capsys):
    calls = fake_registry(monkeypatch, {AMD: OCI, ARM: DOCKER_V2})
    joined = registry.join("r:5000/ns/go", "1.22.10", "slim",
                           {"linux/amd64": AMD, "linux/arm64": ARM}, WANTED)
    [create] = [argv for argv in calls if "create" in argv]
    assert "--annotation" not in create and joined.annotations == {}
    warning = capsys.readouterr().err.splitlines()[-1]
    assert f"r:5000/ns/go@{ARM} is a {DOCKER_V2}" in warning
    assert "containerd-snapshotter" in warning

    calls = fake_registry(monkeypatch, {AMD: OCI, ARM: OCI})
    joined = registry.join("r:5000/ns/go", "1.22.10", "slim",
                           {"linux/amd64": AMD, "linux/arm64": ARM}, WANTED)
    [create] = [argv for argv in calls if "create" in argv]
    assert create.count("--annotation") == 2 and joined.annotations == WANTED
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("raw_out, raw_rc", [("not json", 0), ("", 1), ("[1]", 0)])
def test_an_index_that_cannot_be_read_back_reports_no_annotations(monkeypatch, capsys,
                                                                   raw_out, raw_rc):
    fake_registry(monkeypatch, {}, raw_out, raw_rc)
    assert registry.kept_annotations("r:5000/ns/go:1.22.10-slim", WANTED) == {}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read r:5000/ns/go:1.22.10-slim back" in err


def test_the_annotations_the_index_carries_are_reported(monkeypatch, capsys):
    index = {"mediaType": "application/vnd.oci.image.index.v1+json", "annotations": WANTED}
    fake_registry(monkeypatch, {}, json.dumps(index))
    assert registry.kept_annotations("r:5000/ns/go:1.22.10-slim", WANTED) == WANTED
    assert capsys.readouterr().err == ""


def test_pull_of_a_per_arch_digest_needs_exactly_one_platform_before_pulling(monkeypatch):
    monkeypatch.setattr(registry, "describe", lambda ref: {"mediaType": DOCKER_V2, "digest": DIGEST})
    pulls = []

    class Images:
        def pull(self, ref, platform):
            pulls.append(ref)
            raise AssertionError("pulled before the platforms were checked")

    class Client:
        images = Images()

    selected = inputs(go=("1.22",), variants=("slim",))
    with pytest.raises(ConfigError) as info:
        pipeline.pull(selected.cells(), selected.lock(), "r:5000/ns", client=Client(),
                      digest=DIGEST)
    assert ("names one platform's image, but 4 platforms are selected (linux/amd64, "
            "linux/arm/v6, linux/arm/v7, linux/arm64)") in info.value.message
    assert "select its --platform" in info.value.message and "\n" not in info.value.message
    assert pulls == []
