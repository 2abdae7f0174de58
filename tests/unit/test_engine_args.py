"""Command lines and API arguments, built by pure functions (no daemon needed)."""
import dataclasses
import os
from pathlib import Path

from builder import base, build, engine, registry
from builder.lock import load_lock
from builder.matrix import Selection, load_matrix, select
from builder.render import environment, render_cell


def test_create_kwargs_apply_limits_labels_and_no_network():
    spec = engine.Spec(image="img", command=("go", "version"), role="run", platform="linux/arm64",
                       limits=engine.Limits(cpus=0.5, memory=2 * 2**30, cpuset="0-1"),
                       volumes={"vol": "/gobuild"})
    labels = engine.labels("abc")
    kw = engine.create_kwargs(spec, name="n", labels=labels)
    assert kw["labels"][engine.RUN_LABEL] == "abc"
    host, pid, ticks = kw["labels"][engine.OWNER_LABEL].split(":")
    assert (host, int(pid)) == (os.uname().nodename, os.getpid()) and ticks.isdigit()
    assert kw["network_mode"] == "none" and kw["command"] == ["go", "version"]
    assert kw["nano_cpus"] == 500_000_000
    assert kw["mem_limit"] == kw["memswap_limit"] == 2 * 2**30
    assert kw["cpuset_cpus"] == "0-1" and kw["pids_limit"] == 4096
    assert kw["platform"] == "linux/arm64"
    assert kw["volumes"] == {"vol": {"bind": "/gobuild", "mode": "rw"}}
    plain = engine.create_kwargs(engine.Spec(image="img", command=("sh",), role="x", network=True,
                                             limits=engine.Limits(pids=None)), name="n", labels={})
    assert plain["network_mode"] == "bridge"
    assert not {"nano_cpus", "mem_limit", "memswap_limit", "cpuset_cpus", "pids_limit"} & set(plain)


def test_oom_is_any_sign_not_one_flag():
    assert engine.oom_reasons() == ()
    assert engine.oom_reasons(oom_killed=True) == ("State.OOMKilled",)
    assert engine.oom_reasons(oom_events=1) == ("1 engine oom event(s)",)
    assert engine.oom_reasons(counter_delta=2) == ("cgroup oom_kill counter +2",)
    limit = 64 * 2**20
    assert engine.oom_reasons(exit_code=137, peak=limit - 4096, limit=limit)
    assert not engine.oom_reasons(exit_code=137, peak=limit // 2, limit=limit)  # a plain kill
    assert not engine.oom_reasons(exit_code=1, peak=limit, limit=limit)  # at the limit, not killed


def test_only_what_a_dead_gobuild_left_is_stale(monkeypatch):
    me = engine.labels("run1")
    now = float(me[engine.CREATED_LABEL]) + 10
    assert engine.owner_alive(me[engine.OWNER_LABEL]) is True
    assert not engine.is_stale(me, True, now, None)  # this very process: alive
    host, pid, ticks = me[engine.OWNER_LABEL].split(":")
    dead = {**me, engine.OWNER_LABEL: f"{host}:{pid}:{int(ticks) + 1}"}  # the pid, reused
    assert engine.owner_alive(dead[engine.OWNER_LABEL]) is False
    assert engine.is_stale(dead, True, now, None)
    elsewhere = {**me, engine.OWNER_LABEL: f"other-host:{pid}:{ticks}"}
    assert not engine.is_stale(elsewhere, True, now, None)  # cannot tell: kept
    assert engine.is_stale(elsewhere, True, now + 7200, older_than=3600)  # unless old
    assert not engine.is_stale(me, True, now + 7200, older_than=3600)  # alive here: never
    no_proc = {**me, engine.OWNER_LABEL: f"{host}:{pid}:?"}  # written where /proc was hidden
    assert engine.owner_alive(no_proc[engine.OWNER_LABEL]) is True
    assert not engine.is_stale(no_proc, True, now, None)
    legacy = {engine.RUN_LABEL: "old"}
    assert engine.is_stale(legacy, False, now, None) and not engine.is_stale(legacy, True, now, None)


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
    digest = build.input_digest(ctx, art, "sha256:1")
    same = render_cell(environment(), cell, lock)  # rendered anew: equal inputs, equal digest
    assert same is not ctx and build.input_digest(same, art, "sha256:1") == digest
    assert build.input_digest(ctx, art, "sha256:2") != digest  # another base image
    other = dataclasses.replace(art, sha256="0" * 64)
    assert build.input_digest(ctx, other, "sha256:1") != digest  # another toolchain
    edited = dataclasses.replace(ctx, files={**ctx.files, "Dockerfile": ctx.files["Dockerfile"] + "\n"})
    assert build.input_digest(edited, art, "sha256:1") != digest  # another Dockerfile


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
