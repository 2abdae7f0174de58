"""Command lines and API arguments, built by pure functions (no daemon needed)."""
from pathlib import Path

from builder import base, build, engine, registry
from builder.lock import load_lock
from builder.matrix import Selection, load_matrix, select
from builder.render import environment, render_cell


def test_container_kwargs_apply_limits_label_and_no_network():
    kw = engine.container_kwargs(image="img", command=["go", "version"], run_id="abc", name="n",
                                 platform="linux/arm64", nano_cpus=500_000_000,
                                 mem_limit=2 * 2**30, cpuset_cpus="0-1")
    assert kw["labels"] == {engine.RUN_LABEL: "abc"}
    assert kw["network_mode"] == "none"
    assert kw["nano_cpus"] == 500_000_000
    assert kw["mem_limit"] == kw["memswap_limit"] == 2 * 2**30
    assert kw["cpuset_cpus"] == "0-1" and kw["pids_limit"] == 4096
    assert kw["platform"] == "linux/arm64"


def test_buildx_argv_is_one_platform_loaded_into_the_engine():
    argv = build.buildx_argv(Path("/ctx"), "gobuild/go:1.22.10-slim-arm64", "linux/arm64",
                             "gobuild/base:bookworm-arm64", "d" * 64)
    assert argv[:5] == ["docker", "buildx", "build", "--load", "--progress=plain"]
    assert argv[argv.index("--platform") + 1] == "linux/arm64"
    assert "BASE=gobuild/base:bookworm-arm64" in argv
    assert f"{build.INPUT_LABEL}={'d' * 64}" in argv
    assert argv[-1] == "/ctx"


def test_tags_are_stable_and_documented(root):
    lock = load_lock(root / "images" / "lock.json")
    cell = select(load_matrix(root / "images" / "matrix.yaml"),
                  Selection(go=("1.22",), platforms=("linux/arm64",), variants=("slim",)))[0]
    rel = lock.release(cell)
    assert build.image_tag(rel, cell) == f"gobuild/go:{rel.version}-slim-arm64"
    assert build.multiarch_tags(rel, cell, "localhost:5000/x/go") == [
        f"localhost:5000/x/go:{rel.version}-slim", "localhost:5000/x/go:1.22-slim"]
    ctx = render_cell(environment(), cell, lock)
    art = lock.artifact(cell)
    assert build.input_digest(ctx, art, "sha256:1") == build.input_digest(ctx, art, "sha256:1")
    assert build.input_digest(ctx, art, "sha256:1") != build.input_digest(ctx, art, "sha256:2")


def test_imagetools_and_registry_references():
    assert registry.imagetools_argv(["r/go:1-slim"], ["r/go:1-slim-amd64", "r/go:1-slim-arm64"]) == [
        "docker", "buildx", "imagetools", "create", "--tag", "r/go:1-slim",
        "r/go:1-slim-amd64", "r/go:1-slim-arm64"]
    assert registry.repository("localhost:5000/gobuild") == "localhost:5000/gobuild/go"
    assert registry.repository("ghcr.io/acme/") == "ghcr.io/acme/go"


def test_mmdebstrap_argv_builds_the_base_with_everything_both_variants_need():
    argv = base.mmdebstrap_argv("bookworm", "arm64", base.BASE_PACKAGES, Path("/t/r.tar"),
                                base.DEBIAN_MIRROR)
    assert "--architectures=arm64" in argv and "--variant=minbase" in argv
    assert "--include=ca-certificates,git,gcc,libc6-dev,busybox-static" in argv
    assert argv[-3:] == ["bookworm", "/t/r.tar", base.DEBIAN_MIRROR]
