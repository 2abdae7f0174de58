"""Locked-down measured runs, proven from inside: the lockcheck probe (built in the bench's
preparation like the other probes) tries each forbidden thing in a container made by the
bench's own spec (including writing to the read-only bench volume: the runner probe and the
workload), and a compile comparison shows the lockdown costs no more than noise: the bench's
own compile configuration (go build -a of the workload) on the smallest workload, RUNS runs per
arm interleaved, and Mann-Whitney's U test (scipy, as benchstat judges) finds no difference at
alpha 0.05."""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import pytest

from builder import engine
from builder.bench import runner
from builder.bench.options import BenchOptions
from builder.bench.stats import median_ci

IMAGE = "gobuild/go:1.22.10-bookworm-amd64"  # root in the image: the lockdown must change that
# per arm: 6 against 6 still lets Mann-Whitney reach p = 0.002 (exact) for a real shift, and
# keeps the test to about 12 runs of ~12 s, within CI's 25 minutes (10 per arm took 289 s)
RUNS = 6
ALPHA = 0.05


@pytest.fixture(scope="module")
def prepared(docker_client, tmp_path_factory):
    if engine.image_labels(docker_client, IMAGE) is None:
        pytest.fail(f"{IMAGE} is not built: run 'gobuild images --go 1.22 --variant bookworm "
                    "--platform linux/amd64'")
    # 2 CPUs, GOMAXPROCS=2: go build -a of the workload's std dependencies twice as fast, to keep
    # RUNS runs per arm near 90 s on a quiet 2-core machine
    opts = BenchOptions(images=(IMAGE,), cpus=2.0, memory=1 << 30, cpuset=None,
                        suites=("compile",), runs=RUNS, warmup=0, gomaxprocs=(2,), workload=None,
                        workload_modules=1, workload_packages=1, compile_target="workload",
                        bench_package="./benchpkg", output=tmp_path_factory.mktemp("lockdown"),
                        seed=1)
    run_id = engine.new_run_id()
    bench = runner.Bench(docker_client, opts, run_id, engine.arch(docker_client), log=lambda _: None)
    try:
        yield bench, bench.prepare(IMAGE, 0)
    finally:
        engine.remove_labelled(docker_client, run_id)
        label = f"{engine.RUN_LABEL}={run_id}"
        assert docker_client.containers.list(all=True, filters={"label": label}) == []
        assert docker_client.volumes.list(filters={"label": label}) == []


def lockcheck(docker_client, bench, spec: engine.Spec) -> tuple[dict, dict]:
    """The probe's verdicts and the container's HostConfig as the engine reports it."""
    with engine.Container(docker_client, spec, bench.run_id) as ctr:
        done = ctr.run()
        host = docker_client.api.inspect_container(ctr.id)["HostConfig"]
        mounts = docker_client.api.inspect_container(ctr.id)["Mounts"]
    line = runner._line(done.output, "GOBUILD-LOCKDOWN")
    assert line is not None, done.output
    return line, {**host, "Mounts": mounts}


def test_a_measured_run_can_do_none_of_the_forbidden_things(docker_client, prepared):
    bench, target = prepared
    argv = [f"{runner.MOUNT}/bin/lockcheck", "-fork", "200"]
    spec = bench.spec(target, argv, role="run")  # exactly what a measured run gets
    spec = replace(spec, limits=replace(spec.limits, pids=64))  # a limit small enough to reach
    seen, host = lockcheck(docker_client, bench, spec)
    assert seen["uid"] == 65534 and seen["gid"] == 65534
    assert seen["interfaces"] == ["lo"]
    assert "network is unreachable" in seen["connect_error"]
    assert "read-only file system" in seen["write_root_error"]
    assert seen["write_tmp_error"] == ""  # the scratch tmpfs works
    # the bench volume is read-only: the measuring probe and the workload stay as prepared
    assert "read-only file system" in seen["write_probe_error"]
    assert "read-only file system" in seen["write_work_error"]
    zero = "0000000000000000"
    assert {seen["caps"][k] for k in ("CapPrm", "CapEff", "CapBnd", "CapAmb")} == {zero}
    assert seen["caps"]["NoNewPrivs"] == "1"
    assert "operation not permitted" in seen["chroot_error"]
    assert "operation not permitted" in seen["setuid_error"]
    assert "resource temporarily unavailable" in seen["fork_error"]
    assert 0 < seen["fork_started"] < 64
    # and the engine says the same from outside: nothing mounted but the bench volume
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"] and host["PidsLimit"] == 64
    assert host["NetworkMode"] == "none" and list(host["Tmpfs"]) == ["/tmp"]
    assert [(m["Type"], m["Destination"], m["RW"]) for m in host["Mounts"]] == [
        ("volume", runner.MOUNT, False)]


def test_the_probe_sees_what_an_open_container_may_do(docker_client, prepared):
    """The same probe in the preparation's (not locked-down) container: each check can fail."""
    bench, target = prepared
    spec = bench.spec(target, [f"{runner.MOUNT}/bin/lockcheck", "-fork", "20"], role="prepare",
                      limits=False, user="0")
    seen, _ = lockcheck(docker_client, bench, spec)
    assert seen["uid"] == 0 and seen["write_root_error"] == "" and seen["chroot_error"] == ""
    assert seen["write_probe_error"] == seen["write_work_error"] == ""  # the volume is rw here
    assert seen["caps"]["CapEff"] != "0000000000000000" and seen["caps"]["NoNewPrivs"] == "0"
    assert seen["fork_started"] == 20


def test_the_lockdown_does_not_move_the_compile_median_beyond_noise(docker_client, prepared,
                                                                    monkeypatch):
    from scipy.stats import mannwhitneyu

    bench, target = prepared
    cfg = runner.configs(bench.opts, [target])[0]  # the bench's compile configuration
    assert cfg.suite == "compile" and cfg.argv[:3] == ("go", "build", "-a"), cfg
    walls: dict[str, list[float]] = {"locked": [], "open": []}
    start = time.monotonic()
    for _ in range(RUNS):  # interleaved, so that a change of the host's load hits both arms
        for arm, xs in walls.items():
            with monkeypatch.context() as patch:
                if arm == "open":  # the bench's spec without the lockdown
                    patch.setattr(engine, "locked_down", lambda spec, **_: spec)
                sample, _ = bench.sample(cfg)
            assert not sample.failed, sample.error
            xs.append(sample.values["wall_ns"] / 1e9)
    u = mannwhitneyu(walls["locked"], walls["open"], alternative="two-sided")
    report = json.dumps({
        "argv": cfg.argv, "runs_per_arm": RUNS, "took_s": round(time.monotonic() - start, 1),
        "median_s": {arm: statistics.median(xs) for arm, xs in walls.items()},
        "ci95_s": {arm: median_ci(sorted(xs)) for arm, xs in walls.items()},
        "mann_whitney_u": u.statistic, "p": u.pvalue, "walls_s": walls})
    Path(bench.opts.output, "lockdown-noise.json").write_text(report)
    print(report)
    assert u.pvalue >= ALPHA, f"the lockdown changes the compile time beyond noise: {report}"
