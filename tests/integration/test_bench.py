"""gobuild bench against the real engine with real cgroup limits: limits read back, outputs
valid, OOM recorded, emulation marked, and no container left behind, even after Ctrl-C."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from builder.bench import benchfmt

from .conftest import GOBUILD, ROOT, gobuild

SLIM_AMD64 = ("--go", "1.22", "--variant", "slim", "--platform", "linux/amd64")


@pytest.fixture(scope="module")
def default_image(bases):
    """The bench's default image: the newest Go of the matrix, slim, host platform."""
    gobuild("images", "--go", "latest", "--variant", "slim", "--platform", "linux/amd64")
    gobuild("images", *SLIM_AMD64)


def leftovers(docker_client, run_id: str) -> list:
    label = f"io.gobuild.run={run_id}"
    return (docker_client.containers.list(all=True, filters={"label": label})
            + docker_client.volumes.list(filters={"label": label}))


def run_id_of(stderr: str) -> str:
    return re.search(r"bench: run id ([0-9a-f]+)", stderr).group(1)


def test_default_bench_reads_back_the_limits_and_writes_valid_outputs(default_image, tmp_path, docker_client):
    out = tmp_path / "res"
    proc = gobuild("bench", "--cpus", "0.5", "--memory", "2g", "--runs", "1", "--warmup", "0",
                   "--suite", "tooling", "--suite", "sched", "--suite", "memstats", "--suite", "gotest",
                   "--output", str(out))
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "gobuild.bench/v1"
    assert results["limits"]["requested"]["cpus"] == 0.5
    assert results["limits"]["effective"]["cpus"] == 0.5
    assert results["limits"]["effective"]["memory"] == 2 * 2**30
    lock = json.loads((ROOT / "images" / "lock.json").read_text())
    newest = max(lock["go"], key=lambda v: tuple(map(int, v.split("."))))
    assert results["targets"][0]["image"] == f"gobuild/go:{lock['go'][newest]['version']}-slim-amd64"
    assert results["targets"][0]["emulated"] is False
    assert set(results["suites"]) == {"tooling", "sched", "memstats", "gotest"}
    tooling = results["suites"]["tooling"]
    assert {r["name"] for r in tooling} == {"GoTooling/cmd=go-list-deps", "GoTooling/cmd=go-mod-graph",
                                           "GoTooling/cmd=go-list-m-all"}
    assert all(len(r["samples"]) == 1 and r["samples"][0]["wall_ns"] > 0 for r in tooling)
    parsed = benchfmt.parse((out / "bench.txt").read_text())
    names = {r.name for r in parsed}
    assert "BenchmarkGoroutineCreate-1" in names and any(n.startswith("BenchmarkJSON") for n in names)
    assert parsed[0].config["cpus"] == "0.5" and parsed[0].config["memory"] == "2g"
    assert parsed[0].config["emulated"] == "false"
    assert (out / "report.md").read_text().startswith("# gobuild bench")
    profiles = results["suites"]["gotest"][0]["profiles"]
    assert any(p.endswith("cpu.pprof") for p in profiles) and any(p.endswith("mem.pprof") for p in profiles)
    assert all((out / "profiles" / p).stat().st_size > 0 for p in profiles)
    assert "GoTooling/cmd=go-list-deps-1" in proc.stdout  # the summary table
    assert leftovers(docker_client, run_id_of(proc.stderr)) == []


def test_out_of_memory_is_a_failed_run_and_the_rest_completes(default_image, tmp_path, docker_client):
    out = tmp_path / "oom"
    proc = gobuild("bench", *SLIM_AMD64, "--memory", "64m", "--runs", "1", "--warmup", "0",
                   "--suite", "compile", "--suite", "tooling", "--output", str(out), check=False)
    assert proc.returncode == 8
    assert "OOM-killed" in proc.stderr.strip().splitlines()[-1]
    results = json.loads((out / "results.json").read_text())
    compile_ = results["suites"]["compile"][0]
    assert compile_["samples"] == [] and compile_["failed"][0]["oom"] is True
    assert all(len(r["samples"]) == 1 for r in results["suites"]["tooling"])
    assert results["oom"] is True
    assert leftovers(docker_client, run_id_of(proc.stderr)) == []


def test_an_arm64_bench_on_an_amd64_engine_is_marked_emulated(bases, tmp_path, docker_client):
    gobuild("images", "--go", "1.22", "--variant", "slim", "--platform", "linux/arm64")
    out = tmp_path / "emu"
    gobuild("bench", "--go", "1.22", "--variant", "slim", "--platform", "linux/arm64", "--runs", "1",
            "--warmup", "0", "--suite", "tooling", "--output", str(out))
    results = json.loads((out / "results.json").read_text())
    assert results["targets"][0]["emulated"] is True
    assert all(r["emulated"] for r in results["suites"]["tooling"])
    assert any("ran under emulation" in w for w in results["warnings"])
    assert "emulated: true" in (out / "bench.txt").read_text()
    assert "say nothing about that hardware" in (out / "report.md").read_text()


def _running(docker_client, run_id: str, measuring: bool) -> bool:
    for ctr in docker_client.containers.list(filters={"label": f"io.gobuild.run={run_id}",
                                                      "status": "running"}):
        cmd = ctr.attrs["Config"]["Cmd"] or []
        if not measuring or cmd[:2] == ["/gobuild/bin/runner", "-quiet"]:  # a measured run
            return True
    return False


@pytest.mark.parametrize("presses, measuring", [(1, False), (2, False), (1, True), (2, True)])
def test_ctrl_c_leaves_no_container_with_the_run_label(default_image, tmp_path, docker_client,
                                                      presses, measuring):
    proc = subprocess.Popen(
        [GOBUILD, "bench", *SLIM_AMD64, "--suite", "compile", "--runs", "3", "--output", str(tmp_path / "x")],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    try:
        run_id = None
        for line in proc.stderr:
            if m := re.search(r"run id ([0-9a-f]+)", line):
                run_id = m.group(1)
                break
        assert run_id, "bench did not print its run id"
        deadline = time.monotonic() + 300
        while not _running(docker_client, run_id, measuring):
            assert time.monotonic() < deadline, "no container of the run started"
            time.sleep(0.1)
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        proc.wait(120)
        assert proc.returncode == 130, proc.stderr.read()[-2000:]
        assert leftovers(docker_client, run_id) == []
        assert not (tmp_path / "x" / "results.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        if run_id:  # leave nothing behind even when an assertion above failed
            from builder import engine
            engine.remove_labelled(docker_client, run_id)
