"""gobuild bench against the real engine with real cgroup limits: limits read back, outputs
valid, OOM recorded, emulation marked, and no container left behind, even after Ctrl-C."""
from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import threading
import time

import pytest

from builder import engine
from builder.bench import benchfmt, workload
from builder.matrix import goarch

from .conftest import GOBUILD, ROOT, gobuild

# The engine's own platform runs natively; the other one is emulated (arm64 hosts exist too).
NATIVE = goarch(os.uname().machine)
FOREIGN = "arm64" if NATIVE == "amd64" else "amd64"
SLIM_NATIVE = ("--go", "1.22", "--variant", "slim", "--platform", f"linux/{NATIVE}")


@pytest.fixture(scope="module")
def default_image(bases):
    """The bench's default image: the newest Go of the matrix, slim, host platform."""
    gobuild("images", "--go", "latest", "--variant", "slim", "--platform", f"linux/{NATIVE}")
    gobuild("images", *SLIM_NATIVE)


def leftovers(docker_client, run_id: str) -> list:
    label = f"io.gobuild.run={run_id}"
    return (docker_client.containers.list(all=True, filters={"label": label})
            + docker_client.volumes.list(filters={"label": label})
            + docker_client.networks.list(filters={"label": label}))


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
    assert results["targets"][0]["image"] == f"gobuild/go:{lock['go'][newest]['version']}-slim-{NATIVE}"
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
    proc = gobuild("bench", *SLIM_NATIVE, "--memory", "64m", "--runs", "1", "--warmup", "0",
                   "--suite", "compile", "--suite", "tooling", "--output", str(out), check=False)
    assert proc.returncode == 8
    assert "OOM-killed" in proc.stderr.strip().splitlines()[-1]
    results = json.loads((out / "results.json").read_text())
    compile_ = results["suites"]["compile"][0]
    assert compile_["samples"] == [] and compile_["failed"][0]["oom"] is True
    assert compile_["failed"][0]["oom_reasons"]  # which signs said so
    assert all(len(r["samples"]) == 1 for r in results["suites"]["tooling"])
    assert results["oom"] is True
    assert leftovers(docker_client, run_id_of(proc.stderr)) == []


def test_a_bench_of_the_other_architecture_is_marked_emulated(bases, tmp_path, docker_client):
    gobuild("images", "--go", "1.22", "--variant", "slim", "--platform", f"linux/{FOREIGN}")
    out = tmp_path / "emu"
    gobuild("bench", "--go", "1.22", "--variant", "slim", "--platform", f"linux/{FOREIGN}", "--runs", "1",
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
    warmup = "0" if measuring else "1"  # a measured run, not a warm-up one, when measuring
    proc = subprocess.Popen(
        [GOBUILD, "bench", *SLIM_NATIVE, "--suite", "compile", "--runs", "3", "--warmup", warmup,
         "--output", str(tmp_path / "x")],
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
        assert not (tmp_path / "x" / "results.json").exists()  # nothing measured yet
    finally:
        if proc.poll() is None:
            proc.kill()
        if run_id:  # leave nothing behind even when an assertion above failed
            engine.remove_labelled(docker_client, run_id)


MODULE = {
    "go.mod": "module example.com/mine\n\ngo 1.21\n",
    "mine.go": "package mine\n\nfunc Double(x int) int { return 2 * x }\n",
    "mine_test.go": """package mine

import "testing"

func TestDouble(t *testing.T) {
\tif Double(2) != 4 {
\t\tt.Fatal("bad")
\t}
}

func BenchmarkDouble(b *testing.B) {
\tfor i := 0; i < b.N; i++ {
\t\t_ = Double(i)
\t}
}

func BenchmarkBroken(b *testing.B) { b.Fatal("this benchmark always fails") }
""",
}


def test_own_workload_pinned_to_a_cpu_compile_memory_and_a_failing_gotest(default_image, tmp_path):
    """--workload and --cpuset, a successful compile with the process peak beside the cgroup's,
    every memory phase, and a go test whose benchmark fails recorded as a failed run (exit 8)
    with everything else kept."""
    mod = tmp_path / "mine"
    mod.mkdir()
    for name, text in MODULE.items():
        (mod / name).write_text(text)
    out = tmp_path / "own"
    proc = gobuild("bench", *SLIM_NATIVE, "--workload", str(mod), "--cpuset", "0", "--cpus", "1",
                   "--runs", "1", "--warmup", "0", "--suite", "compile", "--suite", "memory",
                   "--suite", "gotest", "--output", str(out), check=False)
    assert proc.returncode == 8, proc.stderr[-2000:]
    # the broken benchmark fails twice: in the gotest suite and in the memory suite's test binary
    assert "2 measured run(s) failed" in proc.stderr.strip().splitlines()[-1]
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "complete" and results["options"]["workload"] == str(mod)
    assert results["limits"]["effective"]["cpuset"] == "0"
    assert results["limits"]["effective"]["swap"] == 0
    sample = results["suites"]["compile"][0]["samples"][0]
    assert sample["exit_code"] == 0 and sample["wall_ns"] > 0
    assert 0 < sample["peak_rss_bytes"] and 0 < sample["cgroup_peak_bytes"] <= 2 * 2**30
    phases = {r["name"].split("=")[1]: r for r in results["suites"]["memory"]}
    assert set(phases) == {"go-env", "go-list-m-all", "go-build", "go-test-binary"}
    assert all(len(r["samples"]) == 1 and r["samples"][0]["peak_rss_bytes"] > 0
               for name, r in phases.items() if name != "go-test-binary")
    assert phases["go-test-binary"]["failed"][0]["oom"] is False
    gotest = results["suites"]["gotest"][0]
    assert gotest["samples"] == [] and "this benchmark always fails" in gotest["failed"][0]["error"]
    assert "peak-RSS-bytes" in (out / "bench.txt").read_text()
    assert "cgroup-peak-bytes" in (out / "bench.txt").read_text()


def _wait_for(predicate, what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_signal_after_a_measured_round_keeps_what_was_measured(default_image, tmp_path, docker_client):
    out = tmp_path / "partial"
    proc = subprocess.Popen(
        [GOBUILD, "bench", *SLIM_NATIVE, "--suite", "tooling", "--runs", "50", "--warmup", "0",
         "--output", str(out)], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    run_id = None
    try:
        run_id = run_id_of(proc.stderr.readline() + proc.stderr.readline())
        _wait_for(lambda: (out / "results.json").exists(), "the first round's results")
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        assert proc.returncode == 130
        results = json.loads((out / "results.json").read_text())
        assert results["status"] == "interrupted" and results["rounds_done"] >= 1
        assert all(len(r["samples"]) == results["rounds_done"] for r in results["suites"]["tooling"])
        assert benchfmt.parse((out / "bench.txt").read_text())
        assert leftovers(docker_client, run_id) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        if run_id:
            engine.remove_labelled(docker_client, run_id)


def test_cleanup_removes_what_dead_runs_left_and_spares_a_running_bench(default_image, tmp_path,
                                                                         docker_client):
    ref = docker_client.images.list(name="gobuild/go")[0].tags[0]
    # What a crashed gobuild left: a container, a volume and a network whose owner process is gone.
    dead = {**engine.labels("deadbeef0000"),
            engine.OWNER_LABEL: f"{os.uname().nodename}:{os.getpid()}:0"}
    left_ctr = docker_client.containers.create(ref, ["true"], labels=dead,
                                               name=f"gobuild-test-dead-{os.getpid()}")
    left_vol = docker_client.volumes.create(name=f"gobuild-test-dead-{os.getpid()}", labels=dead)
    left_net = docker_client.networks.create(f"gobuild-test-dead-{os.getpid()}", labels=dead,
                                             internal=True)
    proc = subprocess.Popen(
        [GOBUILD, "bench", *SLIM_NATIVE, "--suite", "tooling", "--runs", "2", "--warmup", "0",
         "--output", str(tmp_path / "alive")], cwd=ROOT, stderr=subprocess.PIPE, text=True,
        env=os.environ.copy())
    run_id = None
    try:
        run_id = run_id_of(proc.stderr.readline() + proc.stderr.readline())
        _wait_for(lambda: _running(docker_client, run_id, measuring=False), "a container of the bench")
        cleaned = gobuild("bench", "--cleanup")
        assert f"container {left_ctr.name}" in cleaned.stdout
        assert f"volume {left_vol.name}" in cleaned.stdout
        assert f"network {left_net.name}" in cleaned.stdout
        assert run_id not in cleaned.stdout  # nothing of the running bench
        rest = proc.stderr.read()
        assert proc.wait(600) == 0, rest[-2000:]
        assert json.loads((tmp_path / "alive" / "results.json").read_text())["status"] == "complete"
        assert leftovers(docker_client, "deadbeef0000") == []
    finally:
        if proc.poll() is None:
            proc.kill()
        if run_id:
            engine.remove_labelled(docker_client, run_id)
        engine.remove_labelled(docker_client, "deadbeef0000")



class Terminal:
    """A pseudo-terminal for a process's stderr, read as it is drawn."""

    def __init__(self) -> None:
        self.primary, self.secondary = pty.openpty()
        self.drawn = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.primary, 65536)
            except OSError:  # EIO: the process side is closed
                return
            if not chunk:
                return
            self.drawn.extend(chunk)

    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.drawn.decode(errors="replace"))

    def close(self) -> None:
        self.reader.join(10)
        os.close(self.primary)


@pytest.fixture(scope="module")
def moddownload_run(default_image, tmp_path_factory, docker_client) -> dict:
    """One bench of the moddownload suite, observed from outside while it runs: stderr on a
    pseudo-terminal (the live display), stdout a pipe (--json). While the proxy serves, a probe
    of our own joins the run's network. --wait-quiet 8 with a threshold of 0 (no load is below
    it) gives up after 8 s with a warning, and keeps the network up long enough for the probe."""
    out = tmp_path_factory.mktemp("moddownload") / "res"
    term = Terminal()
    proc = subprocess.Popen(
        [GOBUILD, "bench", *SLIM_NATIVE, "--suite", "moddownload", "--runs", "2", "--warmup", "0",
         "--wait-quiet", "8", "--quiet-load", "0", "--json", "--output", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=term.secondary, text=True,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160"})
    os.close(term.secondary)
    run_id, seen = None, {}
    try:
        _wait_for(lambda: "bench: run id" in term.text(), "the run id", 120)
        run_id = run_id_of(term.text())
        label = {"label": f"io.gobuild.run={run_id}"}

        def names(prefix):
            return [c for c in docker_client.containers.list(filters=label) if c.name.startswith(prefix)]

        # the proxy runs; the network stays until the 8 s quiet wait and the runs are over
        _wait_for(lambda: names("gobuild-proxy-"), "the module proxy", 900)
        proxy = names("gobuild-proxy-")[0]
        (net,) = docker_client.networks.list(filters=label)
        seen["internal"] = net.attrs["Internal"]
        seen["network"] = net.name
        seen["gateway"] = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
        script = (f"ip route; nc -w 1 {seen['gateway']} 8080 </dev/null; echo gateway-exit=$?; "
                  "printf 'GET /example.com/m00/@v/list HTTP/1.0\\r\\n\\r\\n' | "
                  f"nc -w 5 {proxy.name} 8080")
        probe = docker_client.containers.run(proxy.image.id, ["sh", "-c", script], network=net.name,
                                             detach=True, labels={"io.gobuild.test": run_id})
        try:
            probe.wait(timeout=60)
            seen["probe"] = probe.logs().decode()
        finally:
            probe.remove(force=True)
        seen["stdout"], _ = proc.communicate(timeout=900)
        seen["returncode"] = proc.returncode
        seen["networks_after"] = docker_client.networks.list(filters=label)
        seen["leftovers"] = leftovers(docker_client, run_id)
    finally:
        if proc.poll() is None:
            proc.kill()
        term.close()
        if run_id:
            engine.remove_labelled(docker_client, run_id)
    seen["terminal"] = term.drawn.decode(errors="replace")
    assert seen["returncode"] == 0, term.text()[-3000:]
    seen["results"] = json.loads((out / "results.json").read_text())
    return seen


def test_moddownload_measures_an_empty_and_a_warm_module_cache(moddownload_run):
    results = moddownload_run["results"]
    records = {r["name"]: r for r in results["suites"]["moddownload"]}
    assert set(records) == {"GoModDownload/cache=cold", "GoModDownload/cache=warm"}
    for rec in records.values():
        assert len(rec["samples"]) == 2 and rec["failed"] == []
        assert all(s["wall_ns"] > 0 and s["peak_rss_bytes"] > 0 and s["cgroup_peak_bytes"] > 0
                   for s in rec["samples"])
        assert rec["argv"] == ["go", "mod", "download", "all"]
    assert len(results["host"]["load_at_round_start"]) == 2
    assert all(s["load1_start"] >= 0 for r in records.values() for s in r["samples"])
    # the proxy's own count of the .zip files it served during each run: cold runs fetch every
    # module of the workload through it, warm runs find them all in the persistent cache
    shape = results["options"]["workload_shape"]
    zips = sum(name.endswith(".zip") for name in
               workload.module_graph(shape["modules"], shape["packages"]))
    assert zips == shape["modules"]
    assert [s["proxy_zips"] for s in records["GoModDownload/cache=cold"]["samples"]] == [zips, zips]
    assert [s["proxy_zips"] for s in records["GoModDownload/cache=warm"]["samples"]] == [0, 0]


def test_the_proxy_network_reaches_the_proxy_and_nothing_else(moddownload_run):
    said = moddownload_run["probe"]
    assert "v1.0.0" in said, said  # the proxy answers in the module proxy layout
    assert "default" not in said and "gateway-exit=1" in said, said  # no route out
    assert "Network is unreachable" in said, said  # not merely nothing listening there
    assert moddownload_run["internal"] is True
    network = moddownload_run["results"]["network"]  # what the bench's own check saw
    assert network["name"] == moddownload_run["network"] and network["other_routes"] == []
    check = next(iter(network["checks"].values()))
    assert check["reached"] is True
    assert check["others"][f"{moddownload_run['gateway']}:8080"] == "unreachable"


def test_the_proxy_network_goes_with_the_run(moddownload_run):
    assert moddownload_run["networks_after"] == [] and moddownload_run["leftovers"] == []


def test_wait_quiet_gives_up_after_its_seconds_with_a_warning(moddownload_run):
    results = moddownload_run["results"]
    wait = results["host"]["quiet_wait"]
    assert wait["quiet"] is False and wait["threshold"] == 0 and wait["waited_s"] >= 8
    assert any(w.startswith("--wait-quiet: the host did not become quiet in 8 s")
               for w in results["warnings"])


def test_stdout_holds_only_the_result_while_progress_draws_on_a_terminal(moddownload_run):
    results = json.loads(moddownload_run["stdout"])  # the whole of stdout is one JSON document
    assert results["run_id"] == moddownload_run["results"]["run_id"]
    terminal = moddownload_run["terminal"]
    assert "\x1b[" in terminal  # drawn as a live display, not as lines
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal)
    assert "preparing gobuild/go:1.22" in plain and "4/4 runs" in plain
    assert "warning: --wait-quiet: the host did not become quiet" in plain
