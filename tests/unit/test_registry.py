"""Pure parts of pushing and joining: which manifests a multi-arch tag keeps, and the one
rule for multi-arch tag names; and which local base stands in for which upstream image."""
from __future__ import annotations

import json

import pytest

from builder import base, build, registry
from builder.errors import RegistryError
from builder.matrix import Variant

INDEX = {
    "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
    "digest": "sha256:" + "f" * 64,
    "manifests": [
        {"digest": "sha256:" + "a" * 64, "platform": {"architecture": "amd64", "os": "linux"}},
        {"digest": "sha256:" + "b" * 64,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"digest": "sha256:" + "c" * 64, "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
    ],
}


def test_an_index_gives_its_image_manifests_by_platform():
    assert registry.index_manifests(INDEX) == {
        "linux/amd64": "sha256:" + "a" * 64, "linux/arm64": "sha256:" + "b" * 64}
    assert registry.index_manifests(None) == {}
    assert registry.platform_key({"os": "linux", "architecture": "arm", "variant": "v7"}) == "linux/arm/v7"


def test_a_tag_holding_one_image_is_refused_rather_than_replaced():
    single = {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
              "digest": "sha256:" + "d" * 64}
    with pytest.raises(RegistryError, match="single image"):
        registry.index_manifests(single)


def fake_registry(monkeypatch, tags: dict[str, dict]) -> list[list[str]]:
    """Only the subprocess is replaced (imagetools against a registry holding `tags`): the
    argument lists are what is checked."""
    calls = []

    class Proc:
        returncode, stdout, stderr = 0, "", ""

    def fake_run(argv, **kw):
        calls.append(argv)
        proc = Proc()
        if argv[3] == "inspect":
            if argv[-1] in tags:
                proc.stdout = json.dumps(tags[argv[-1]])
            else:
                proc.returncode, proc.stderr = 1, f"ERROR: {argv[-1]}: not found"
        return proc

    monkeypatch.setattr(registry.subprocess, "run", fake_run)
    return calls


def test_join_keeps_the_registry_s_other_platforms_and_names_them_by_digest(monkeypatch):
    repushed = "sha256:" + "9" * 64  # amd64's per-arch tag, pushed again since the index
    calls = fake_registry(monkeypatch, {
        "r:5000/ns/go:1.22.10-slim": INDEX, "r:5000/ns/go:1.22-slim": INDEX,
        "r:5000/ns/go:1.22.10-slim-amd64": {"digest": repushed}})
    new = "sha256:" + "e" * 64
    joined = registry.join("r:5000/ns/go", "1.22.10", "slim", {"linux/arm64": new})
    assert calls[-1] == registry.imagetools_argv(
        ["r:5000/ns/go:1.22.10-slim", "r:5000/ns/go:1.22-slim"],
        [f"r:5000/ns/go@{repushed}", f"r:5000/ns/go@{new}"])
    assert joined.kept == ("linux/amd64",)
    assert joined.manifests == {"linux/amd64": repushed, "linux/arm64": new}


def test_a_kept_32_bit_arm_platform_takes_its_own_repushed_per_arch_tag(monkeypatch):
    """The per-arch tag of linux/arm/v7 is go:1.22.10-slim-arm-v7 (the CPU variant after a
    dash, as image_tag names it): a re-push of it wins over the index's old digest."""
    old_v7, repushed = "sha256:" + "7" * 64, "sha256:" + "8" * 64
    index = {**INDEX, "manifests": [*INDEX["manifests"], {
        "digest": old_v7, "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}}]}
    calls = fake_registry(monkeypatch, {
        "r:5000/ns/go:1.22.10-slim": index, "r:5000/ns/go:1.22-slim": index,
        "r:5000/ns/go:1.22.10-slim-arm-v7": {"digest": repushed}})
    new = "sha256:" + "e" * 64
    joined = registry.join("r:5000/ns/go", "1.22.10", "slim", {"linux/arm64": new})
    assert joined.kept == ("linux/amd64", "linux/arm/v7")
    assert joined.manifests["linux/arm/v7"] == repushed
    assert f"r:5000/ns/go@{repushed}" in calls[-1] and f"r:5000/ns/go@{old_v7}" not in calls[-1]


def test_a_new_patch_pushed_for_one_platform_leaves_the_minor_tag_alone(monkeypatch):
    """1.22.11 pushed for amd64 only: 1.22-slim (amd64 and arm64 of 1.22.10) must not lose
    arm64; it moves once 1.22.11 lists both."""
    calls = fake_registry(monkeypatch, {"r:5000/ns/go:1.22-slim": INDEX})
    new = "sha256:" + "e" * 64
    joined = registry.join("r:5000/ns/go", "1.22.11", "slim", {"linux/amd64": new})
    assert joined.tags == ("r:5000/ns/go:1.22.11-slim",)
    assert calls[-1] == registry.imagetools_argv(["r:5000/ns/go:1.22.11-slim"],
                                                 [f"r:5000/ns/go@{new}"])
    both = {"linux/amd64": new, "linux/arm64": "sha256:" + "d" * 64}
    joined = registry.join("r:5000/ns/go", "1.22.11", "slim", both)
    assert joined.tags == ("r:5000/ns/go:1.22.11-slim", "r:5000/ns/go:1.22-slim")


def test_multiarch_tag_names_live_in_one_place():
    assert build.joined_tags("1.22.10", "slim", "r/go") == ["r/go:1.22.10-slim", "r/go:1.22-slim"]


BOOKWORM = Variant(name="bookworm", kind="debian", base="debian:bookworm-slim")


@pytest.mark.parametrize("labels, history, variant_base, used", [
    ({base.STANDS_FOR_LABEL: "debian:bookworm-slim"}, [], "debian:bookworm-slim", True),
    ({base.STANDS_FOR_LABEL: "debian:bookworm-slim"}, [], "docker.io/library/debian:bookworm-slim", True),
    ({base.STANDS_FOR_LABEL: "debian:bookworm-slim"}, [], "debian:bookworm", False),
    ({base.STANDS_FOR_LABEL: "debian:bookworm-slim"}, [], "ubuntu:24.04", False),
    ({}, [{"CreatedBy": base.BUILT_BY}], "debian:bookworm-slim", True),  # built before the label
    ({}, [{"CreatedBy": base.BUILT_BY}], "example.com/own/bookworm:1", False),
    ({}, [{"CreatedBy": "/bin/sh -c apt-get install"}], "debian:bookworm-slim", False),
])
def test_a_local_base_stands_in_only_for_the_image_it_was_built_for(labels, history,
                                                                  variant_base, used):
    suite = base.suite_of(Variant(name="v", kind="debian", base=variant_base))
    assert base.same_image_name(base.stands_for(labels, history, suite) or "", variant_base) is used


def test_pulled_bases_are_kept_apart_by_the_base_they_hold():
    assert base.upstream_tag("debian:bookworm-slim", "arm64") != base.upstream_tag("ubuntu:24.04", "arm64")
    assert base.upstream_tag("debian:bookworm-slim", "arm64").startswith("gobuild/base:upstream-")
