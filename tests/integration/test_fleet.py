"""Fleets against two real engines: this machine's and a second dockerd in a network namespace
of its own (tests/second_engine.py), reached over TCP on a veth link the test makes and cuts.

One bench covers the merge and the faults at once (a bench's preparation is most of its time):
local + second + a host nobody answers at; the second's link is cut after its first measured
round. Then: images routed by declared platform, and doctor --host. The second engine is the
session's (conftest.py `second_engine`, shared with test_faults.py), and the image benched is
the one test_faults.py loads there too: one engine start and one `docker load` for both files."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import pytest

from builder import engine
from builder.bench import benchfmt
from builder.matrix import goarch

from .conftest import GOBUILD, ROOT, gobuild

NATIVE = goarch(os.uname().machine)
RUNS = 4  # the cut comes after the second's first round: three runs left to fail
GO = "1.27"  # test_faults.py's image: loaded into the shared second engine once


@pytest.fixture(scope="module")
def slim_image(docker_client, bases):
    """A slim image of this machine's platform: the one already built on a warm machine (any
    image of the tag will do for a bench), built only when it is missing."""
    lock = json.loads((ROOT / "images" / "lock.json").read_text())
    tag = f"gobuild/go:{lock['go'][GO]['version']}-slim-{NATIVE}"
    if not docker_client.images.list(tag):
        gobuild("images", "--go", GO, "--variant", "slim", "--platform", f"linux/{NATIVE}")
    return tag


@pytest.fixture
def second(second_engine):
    return second_engine


def labelled(client, run_id: str) -> list:
    label = f"io.gobuild.run={run_id}"
    return (client.containers.list(all=True, filters={"label": label})
            + client.volumes.list(filters={"label": label})
            + client.networks.list(filters={"label": label}))


def test_two_engine_bench_merges_and_survives_a_cut_link(second, slim_image, docker_client, tmp_path):
    second.load(slim_image)
    assert second.client().images.get(slim_image)
    out = tmp_path / "fleet"
    nobody = f"tcp://{second.host_addr}:9"  # this machine's end of the veth: nothing listens there
    proc = subprocess.Popen(
        [GOBUILD, "bench", "--host", "local", "--host", f"label=second,url={second.host},timeout=10",
         "--host", f"gone={nobody}", "--image", slim_image, "--suite", "sched", "--runs", str(RUNS),
         "--warmup", "0", "--cpus", "1", "--memory", "1g", "--modules", "2", "--packages", "2",
         "--output", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_round = out / "hosts" / "second" / "results.json"
    try:
        deadline = time.monotonic() + 400
        while not first_round.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not first_round.exists():
            proc.kill()
            pytest.fail(f"no measured round on the second host: {proc.communicate(timeout=60)[1][-3000:]}")
        second.cut_link()
        _, stderr = proc.communicate(timeout=400)
    finally:
        second.restore_link()
        if proc.poll() is None:  # a timeout above: the bench must not go on against the main engine
            proc.kill()
            proc.wait(60)
            for run in out.glob("hosts/*/results.json"):
                with contextlib.suppress(ValueError, KeyError, OSError):
                    engine.remove_labelled(docker_client, json.loads(run.read_text())["run_id"])
    assert proc.returncode == 10, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Error: partial results: host second lost") and "gone unreachable" in last
    assert "Traceback" not in stderr

    data = json.loads((out / "results.json").read_text())
    assert data["status"] == "partial"
    hosts = {h["label"]: h for h in data["hosts"]}
    assert {k: h["status"] for k, h in hosts.items()} == {"local": "complete", "second": "lost",
                                                         "gone": "unreachable"}
    assert hosts["second"]["endpoint"] == second.host and hosts["local"]["arch"] == NATIVE
    assert hosts["second"]["engine"].startswith("Docker ") and hosts["second"]["cpu_model"]
    records = {r["host"]: r for r in data["suites"]["sched"]}
    assert len(records["local"]["samples"]) == RUNS and records["local"]["failed"] == []
    kept, failed = records["second"]["samples"], records["second"]["failed"]
    assert kept and len(kept) + len(failed) == RUNS and failed
    assert all(f["error"].startswith("host second lost") for f in failed)

    parsed = benchfmt.parse((out / "bench.txt").read_text())
    per_host = {h: [r for r in parsed if r.config.get("host") == h] for h in ("local", "second")}
    assert len(per_host["local"]) == RUNS and len(per_host["second"]) == len(kept)
    report = (out / "report.md").read_text()
    assert f"linux/{NATIVE} @ local" in report and f"linux/{NATIVE} @ second" in report
    assert "| second | " + second.host in report and "| gone | " + nobody in report

    # nothing left: the live host cleaned up at once, the lost one once it is back
    run_id = data["run_id"]
    assert labelled(docker_client, run_id) == []
    cleanup = gobuild("bench", "--cleanup", "--host", f"second={second.host}")
    assert cleanup.returncode == 0
    assert labelled(second.client(), run_id) == []
    assert second.client().containers.list(all=True) == []


def test_each_platform_is_built_on_the_host_that_declared_it(second, bases, docker_client):
    main_arm64 = "gobuild/go:1.21.13-slim-arm64"
    before = docker_client.images.get(main_arm64).id if docker_client.images.list(main_arm64) else None
    proc = gobuild("images", "--host", "local", "--host", f"label=board,platforms=linux/arm64,url={second.host}",
                   "--go", "1.21", "--variant", "slim", "--platform", "linux/amd64",
                   "--platform", "linux/arm64", "--json", timeout=900)
    data = json.loads(proc.stdout)
    assert {(r["platform"], r["host"], r["native"]) for r in data["routes"]} == {
        ("linux/amd64", "local", True), ("linux/arm64", "board", True)}
    assert {(i["platform"], i["host"]) for i in data["images"]} == {("linux/amd64", "local"),
                                                                   ("linux/arm64", "board")}
    board = second.client()
    assert board.images.get(main_arm64).attrs["Architecture"] == "arm64"
    assert [t for i in board.images.list() for t in i.tags if t.endswith("-slim-amd64")
            and t.startswith("gobuild/go:1.21")] == []  # the amd64 build did not go there
    if before is not None:  # the arm64 build did not touch this engine's arm64 image
        assert docker_client.images.get(main_arm64).id == before
    board.images.remove(main_arm64, force=True)


def test_doctor_reports_each_host(second):
    proc = gobuild("doctor", "--host", "local", "--host", f"second={second.host}")
    lines = proc.stdout.splitlines()
    line = next(ln for ln in lines if ln.startswith("ok      host second "))
    assert f"{second.host}: Docker " in line and f"linux/{NATIVE}" in line and "CPUs" in line
    assert "cgroup v" in line and "GiB" in line
    assert any(ln.startswith("ok      host second buildx") and "BuildKit" in ln for ln in lines)
    gone = gobuild("doctor", "--host", f"gone=tcp://{second.host_addr}:9", check=False)
    assert gone.returncode == 5 and "MISSING host gone" in gone.stdout


def test_run_on_the_host_given(second, slim_image, tmp_path):
    """gobuild run --host: the container runs on that engine (its cache volumes are made
    there), with this machine's folder mounted (the engine is on this machine)."""
    second.load(slim_image)
    (tmp_path / "hello.txt").write_text("from this machine\n")
    version = slim_image.split(":")[1].split("-")[0]
    done = gobuild("run", "--matrix", str(ROOT / "images" / "matrix.yaml"), "--host",
                   f"second=unix://{second.socket}", "--go", version.rsplit(".", 1)[0], "--variant", "slim",
                   "--platform", f"linux/{NATIVE}", "--no-build", "--network", "none", "--",
                   "sh", "-c", "cat hello.txt && go version", cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "from this machine" in done.stdout and f"go{version}" in done.stdout
    made_there = [v.name for v in second.client().volumes.list() if "gobuild" in v.name]
    assert made_there, "the run's cache volumes are not on the second engine"
    far = gobuild("run", "--host", f"far=tcp://{second.addr}:2375", "--", "true", cwd=tmp_path, check=False)
    assert far.returncode == 2 and "needs the engine on this machine" in far.stderr
