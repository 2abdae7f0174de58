"""The bench's pure parts: configurations, samples from container output, typed results and
the files written from them (no daemon)."""
import itertools
import json
import shlex

import pytest

from builder import engine
from builder.bench import benchfmt, output, runner
from builder.bench.options import BenchOptions
from builder.bench.progress import Progress
from builder.bench.results import SUITES, Record, Results, Sample, Target
from builder.errors import ConfigError

TARGET = Target(ref="gobuild/go:1.22.10-slim-amd64", image_id="sha256:1", digest=None,
                platform="linux/amd64", arch="amd64", go_version="1.22.10", emulated=False,
                volume="v")


def opts(tmp_path, **kw) -> BenchOptions:
    base = {"images": (TARGET.ref,), "cpus": 1.0, "memory": 2**31, "cpuset": None,
            "suites": SUITES, "runs": 2, "warmup": 1, "gomaxprocs": (1, 2), "workload": None,
            "workload_modules": 20, "workload_packages": 100, "compile_target": "workload",
            "bench_package": "./benchpkg", "output": tmp_path / "out", "seed": 1}
    return BenchOptions(**{**base, **kw})


def finished(output_text: str, exit_code: int = 0, **kw) -> engine.Finished:
    return engine.Finished(exit_code=exit_code, output=output_text, oom_killed=False, oom_events=0,
                           timed_out=False, **kw)


def result_line(**fields) -> str:
    base = {"argv": ["go"], "exit_code": 0, "wall_ns": 5, "user_ns": 3, "sys_ns": 1,
            "peak_rss_bytes": 100, "maxrss_bytes": 100, "vmhwm_bytes": 90,
            "cgroup_peak_bytes": 200, "cgroup_anon_peak_bytes": 80, "oom_kills": 0}
    return "GOBUILD-RESULT " + json.dumps({**base, **fields})


def test_every_suite_is_a_configuration_of_each_round_gotest_included(tmp_path):
    cfgs = runner.configs(opts(tmp_path), [TARGET])
    assert {c.suite for c in cfgs} == set(SUITES)
    gotest = [c for c in cfgs if c.suite == "gotest"]
    assert len(gotest) == 1 and gotest[0].argv[0] == runner.TEST_BINARY
    assert gotest[0].working_dir == "/gobuild/work/benchpkg"
    assert len({c.key for c in cfgs}) == len(cfgs)


def test_rounds_interleave_and_warm_up_every_suite(tmp_path):
    o = opts(tmp_path)
    cfgs = runner.configs(o, [TARGET])
    ran: list[tuple[int, str]] = []
    written: list[int] = []

    class FakeBench:
        progress = Progress("quiet")

        def sample(self, cfg, keep_profiles=False):
            ran.append((len(ran) // len(cfgs), cfg.key))
            return Sample(values={"wall_ns": 1.0}), {}

    records = runner.rounds(FakeBench(), cfgs, o, lambda recs, done, profs, loads: written.append(done))
    assert len(ran) == len(cfgs) * (o.warmup + o.runs)
    for r in range(o.warmup + o.runs):  # every configuration once a round, gotest too
        assert sorted(k for i, k in ran if i == r) == sorted(c.key for c in cfgs)
    assert [k for i, k in ran if i == 1] != [k for i, k in ran if i == 2]  # shuffled per round
    assert written == [1, 2]  # results written after each measured round, not the warm-up
    assert all(len(rec.samples) == o.runs for rec in records)


def test_a_sample_takes_the_probe_figures():
    cfg = runner.configs(opts_for_suite("compile"), [TARGET])[0]
    s = runner.to_sample(cfg, finished(result_line()), 2**31)
    assert not s.failed and s.values["peak_rss_bytes"] == 100 and s.values["cgroup_peak_bytes"] == 200


def opts_for_suite(suite, **kw):
    from pathlib import Path
    return opts(Path("/nonexistent"), suites=(suite,), gomaxprocs=(1,), **kw)


@pytest.mark.parametrize("out, exit_code, flags", [
    (result_line(exit_code=-1, signal="killed", cgroup_peak_bytes=2**31 - 4096), 0, {}),
    (result_line(exit_code=1, oom_kills=1), 0, {}),
    ("", 137, {"oom_killed": True}),
    ("", 1, {"oom_events": 1}),
])
def test_oom_by_any_sign_is_a_failed_run(out, exit_code, flags):
    cfg = runner.configs(opts_for_suite("compile"), [TARGET])[0]
    done = engine.Finished(exit_code=exit_code, output=out, timed_out=False,
                           oom_killed=flags.get("oom_killed", False),
                           oom_events=flags.get("oom_events", 0))
    s = runner.to_sample(cfg, done, 2**31)
    assert s.oom and s.failed and s.oom_reasons


def test_a_failing_gotest_is_a_failed_run_not_an_exception():
    cfg = next(c for c in runner.configs(opts_for_suite("gotest"), [TARGET]))
    probe_line = result_line(exit_code=1, argv=["-test.bench"] * 40)  # longer than the tail kept
    failed = runner.to_sample(cfg, finished("--- FAIL: BenchmarkX\n" + probe_line), 2**31)
    assert failed.failed and not failed.oom and "FAIL" in failed.error
    ok = runner.to_sample(cfg, finished(
        "goos: linux\npkg: example.com/workload/benchpkg\n"
        "BenchmarkSort-1   \t    3421\t    350163 ns/op\t  382144 B/op\t    3545 allocs/op\n"
        "BenchmarkSort is slow\nPASS\n" + result_line()), 2**31)
    assert not ok.failed
    assert ok.extra["benchmarks"] == ["BenchmarkSort-1   \t    3421\t    350163 ns/op\t  382144 B/op\t    3545 allocs/op"]
    assert ok.extra["pkg"] == "pkg: example.com/workload/benchpkg"


@pytest.mark.parametrize("hostile", ["./x; touch /tmp/pwned", "./a b", "$(reboot)", "./'q'"])
def test_the_bench_package_reaches_the_shell_quoted(hostile):
    script = runner.prep_script(opts_for_suite("gotest", bench_package=hostile))
    line = next(ln for ln in script.splitlines() if ln.startswith("go test -c"))
    assert shlex.split(line)[-1] == hostile  # one argument, not a second command


def test_results_serialize_to_v1_and_bench_txt_has_every_run(tmp_path):
    o = opts(tmp_path, runs=2, gomaxprocs=(1,))
    cfgs = runner.configs(o, [TARGET])
    records = []
    for cfg in cfgs:
        rec = Record(config=cfg)
        for i in range(2):
            if cfg.suite == "gotest":
                rec = rec.add(Sample(values={"wall_ns": 9.0}, extra={
                    "pkg": "pkg: example.com/w/benchpkg",
                    "benchmarks": [f"BenchmarkSort-1  10  {100 + i} ns/op  5 B/op  1 allocs/op"]}))
            else:
                rec = rec.add(Sample(values={m: 1.0 + i for m, _ in output.METRICS[cfg.suite]}))
        records.append(rec.add(Sample(oom=True, exit_code=137, oom_reasons=("State.OOMKilled",))))
    res = Results(run_id="r", gobuild_version="0", started="s", finished="f", status="complete",
                  rounds_done=2, options=o.summary(), host={"cpu_model": "cpu"},
                  limits={"requested": {"cpus": 1.0, "memory": 2**31}, "effective": {}},
                  targets=(TARGET,), records=tuple(records), profiles=(
                      "gobuild_go_1.22.10-slim-amd64/cpu.pprof",))
    data = json.loads(json.dumps(res.to_json()))
    assert data["schema"] == "gobuild.bench/v1" and data["status"] == "complete"
    assert data["oom"] is True and data["failed_runs"] == len(cfgs)
    compile_ = data["suites"]["compile"][0]
    assert compile_["summary"]["peak_rss_bytes"]["median"] == 1.5
    assert compile_["failed"][0]["oom_reasons"] == ["State.OOMKilled"]
    gotest = data["suites"]["gotest"][0]
    assert gotest["benchmarks"]["BenchmarkSort-1"]["ns/op"]["median"] == 100.5
    assert gotest["profiles"] == ["gobuild_go_1.22.10-slim-amd64/cpu.pprof"]
    parsed = benchfmt.parse(output.bench_txt(res))
    names = [r.name for r in parsed]
    assert names.count("BenchmarkSort-1") == 2 and names.count("BenchmarkGoBuildA/pkg=workload-1") == 2
    build = next(r for r in parsed if r.name.startswith("BenchmarkGoBuildA"))
    assert set(build.values) == {"ns/op", "user-ns/op", "sys-ns/op", "peak-RSS-bytes",
                                 "cgroup-peak-bytes", "cgroup-anon-peak-bytes"}
    assert parsed[0].config["cpus"] == "1" and parsed[0].config["memory"] == "2g"


def test_moddownload_runs_cold_and_warm_on_the_proxy_network(tmp_path):
    from builder.bench import modproxy

    cfgs = runner.configs(opts(tmp_path, suites=("moddownload",)), [TARGET])
    assert [(c.name, dict(c.env)["GOMODCACHE"]) for c in cfgs] == [
        ("GoModDownload/cache=cold", "/tmp/gomodcache"),  # the container's own, empty layer
        ("GoModDownload/cache=warm", "/gobuild-warm/modcache"),  # a volume of its own, kept
    ]
    assert all(c.argv == ("go", "mod", "download", "all") for c in cfgs)
    own = runner.configs(opts(tmp_path, suites=("moddownload",), workload=tmp_path), [TARGET])
    assert all(c.argv == ("go", "mod", "download") for c in own)  # what the preparation ran
    assert modproxy.proxy_dir(False) == "/gobuild/proxy"
    assert modproxy.proxy_dir(True) == "/gobuild/modcache/cache/download"


def test_a_moddownload_run_gets_the_proxy_and_only_its_network(tmp_path, monkeypatch):
    from builder.bench import modproxy

    o = opts(tmp_path, suites=("moddownload",), gomaxprocs=(1,))
    specs: list[engine.Spec] = []
    proxy_log = ["GOBUILD-PROXY-READY [::]:8080", "GOBUILD-PROXY-ZIP /m1/@v/v1.0.0.zip"]  # the fill's

    class FakeProxy:
        def status(self):
            return "running", "\n".join(proxy_log)

    class FakeContainer:
        def __init__(self, client, spec, run_id):
            specs.append(spec)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def run(self):  # a cold download: two zips through the proxy
            proxy_log.extend(["GOBUILD-PROXY-ZIP /m1/@v/v1.0.0.zip", "GOBUILD-PROXY-ZIP /m2/@v/v1.0.0.zip"])
            return finished(result_line(load1_start=0.42))

    monkeypatch.setattr(engine, "Container", FakeContainer)
    bench = runner.Bench(None, o, "r", "amd64", lambda m: None)
    cold = runner.configs(o, [TARGET])[0]
    with pytest.raises(Exception, match="no module proxy"):
        bench.sample(cold)
    bench.proxies = modproxy.Proxies(network="gobuild-net-r", urls={TARGET.label: "http://p:8080"},
                                     containers={TARGET.label: FakeProxy()})
    sample, _ = bench.sample(cold)
    assert sample.extra["proxy_zips"] == 2  # what this run fetched, not what the fill did
    assert sample.to_json()["proxy_zips"] == 2
    spec = specs[-1]
    assert spec.network == "gobuild-net-r"
    assert spec.environment["GOPROXY"] == "http://p:8080"
    assert spec.environment["GOMODCACHE"] == "/tmp/gomodcache"
    kw = engine.create_kwargs(spec, name="n", labels={})
    assert kw["network_mode"] == "gobuild-net-r"
    # the bench volume read-only; the warm cache's own volume writable, in this suite only
    assert kw["volumes"] == {TARGET.volume: {"bind": "/gobuild", "mode": "ro"},
                             f"{TARGET.volume}-warm": {"bind": "/gobuild-warm", "mode": "rw"}}
    assert sample.extra["load1_start"] == 0.42 and "load1_start" not in sample.values
    other = runner.configs(opts(tmp_path, suites=("tooling",), gomaxprocs=(1,)), [TARGET])[0]
    bench.sample(other)
    assert specs[-1].network is False and specs[-1].environment["GOPROXY"] == "off"  # the others
    assert engine.create_kwargs(specs[-1], name="n", labels={})["network_mode"] == "none"
    assert engine.create_kwargs(specs[-1], name="n", labels={})["volumes"] == {
        TARGET.volume: {"bind": "/gobuild", "mode": "ro"}}
    assert "proxy_zips" not in bench.sample(other)[0].extra


def test_moddownload_of_a_module_with_no_dependencies_is_refused_in_the_preparation(tmp_path, monkeypatch):
    (tmp_path / "go.mod").write_text("module example.com/alone\n\ngo 1.22\n")
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    o = opts(tmp_path, suites=("moddownload",), gomaxprocs=(1,), workload=tmp_path, bench_package=".")
    assert "mkdir -p /gobuild/modcache/cache/download" in runner.prep_script(o)  # the proxy's folder
    zips = {"n": 0}
    monkeypatch.setattr(engine, "image_info", lambda c, ref: {"Id": "sha256:1", "Architecture": "amd64"})
    monkeypatch.setattr(engine, "create_volume", lambda c, name, run_id: name)
    monkeypatch.setattr(engine, "run", lambda c, spec, run_id, files=None: finished(
        f"GOBUILD-ZIPS {zips['n']}\nGOBUILD-PREPARED"))
    bench = runner.Bench(None, o, "r", "amd64", lambda m: None)
    with pytest.raises(ConfigError, match="has no dependencies to download"):
        bench.prepare(TARGET.ref, 0)
    zips["n"] = 3
    assert bench.prepare(TARGET.ref, 0).ref == TARGET.ref
    tooling = runner.Bench(None, opts(tmp_path, suites=("tooling",), workload=tmp_path,
                                      bench_package="."), "r", "amd64", lambda m: None)
    zips["n"] = 0
    assert tooling.prepare(TARGET.ref, 0).ref == TARGET.ref  # only moddownload needs dependencies


def test_two_images_and_one_image_twice_are_interleaved_in_every_round(tmp_path):
    from dataclasses import replace as dc_replace

    from builder.bench.options import config_labels

    refs = (TARGET.ref, "gobuild/go:1.27.3-slim-amd64", TARGET.ref)
    labels = config_labels(refs)
    assert labels == (f"{TARGET.ref}#1", "gobuild/go:1.27.3-slim-amd64", f"{TARGET.ref}#2")
    targets = [dc_replace(TARGET, ref=ref, config=label, volume=f"v{i}")
               for i, (ref, label) in enumerate(zip(refs, labels))]
    o = opts(tmp_path, suites=("tooling", "sched"), runs=3, warmup=1)
    cfgs = runner.configs(o, targets)
    assert len({c.key for c in cfgs}) == len(cfgs)  # A/A configurations are kept apart
    seen: list[tuple[int, str]] = []

    class FakeBench:
        progress = Progress("quiet")

        def sample(self, cfg, keep_profiles=False):
            seen.append((len(seen) // len(cfgs), cfg.target.label))
            return Sample(values={"wall_ns": 1.0}, extra={"load1_start": float(len(seen))}), {}

    loads_seen: list[list] = []
    records = runner.rounds(FakeBench(), cfgs, o, lambda recs, done, profs, loads: loads_seen.append(loads))
    for r in range(o.warmup + o.runs):  # every round runs every configuration of every image
        in_round = [label for i, label in seen if i == r]
        assert set(in_round) == set(labels)
        # and not in blocks (which change image only twice a round): the order mixes them
        changes = sum(a != b for a, b in itertools.pairwise(in_round))
        assert changes > len(labels) - 1, in_round
    assert {rec.config.target.label for rec in records} == set(labels)
    assert all(len(rec.samples) == o.runs for rec in records)
    # the load at the start of each measured round: the first run of rounds 2, 3 and 4
    n = len(cfgs)
    assert loads_seen[-1] == [float(n + 1), float(2 * n + 1), float(3 * n + 1)]


def test_results_carry_configs_memory_phases_and_the_network(tmp_path):
    from dataclasses import replace as dc_replace

    twice = [dc_replace(TARGET, config=f"{TARGET.ref}#{i}", volume=f"v{i}") for i in (1, 2)]
    o = opts(tmp_path, suites=("memory", "moddownload"), gomaxprocs=(1,))
    records = tuple(Record(config=c).add(Sample(values={"wall_ns": 1.0}))
                    for c in runner.configs(o, twice))
    res = Results(run_id="r", gobuild_version="0", started="s", finished="f", status="complete",
                  rounds_done=1, options=o.summary(), host={}, limits={}, targets=tuple(twice),
                  records=records, network={"name": "gobuild-net-r", "other_routes": []})
    data = json.loads(json.dumps(res.to_json()))
    assert data["schema"] == "gobuild.bench/v1"
    assert [t["config"] for t in data["targets"]] == [f"{TARGET.ref}#1", f"{TARGET.ref}#2"]
    assert all(t["image"] == TARGET.ref for t in data["targets"])
    phases = {r["phase"]["id"]: r["phase"]["comparison"] for r in data["suites"]["memory"]
              if r["config"].endswith("#1")}
    assert phases == {"go-env": "after GOROOT initialisation", "go-list-m-all": "after the module cache is loaded",
                      "go-build": None, "go-test-binary": "test process peak"}
    md = data["suites"]["moddownload"]
    assert sorted((r["config"], r["name"]) for r in md) == sorted(
        (f"{TARGET.ref}#{i}", f"GoModDownload/cache={c}") for i in (1, 2) for c in ("cold", "warm"))
    assert set(md[0]["summary"]) == {"wall_ns", "user_ns", "sys_ns", "peak_rss_bytes",
                                     "cgroup_peak_bytes", "cgroup_anon_peak_bytes"}
    assert data["network"]["name"] == "gobuild-net-r"
    assert data["options"]["configs"] == [TARGET.ref]  # the options' images, labelled


def test_the_preparation_builds_every_probe_and_the_proxy_only_for_moddownload(tmp_path):
    from builder.bench.workload import PROBE_DIR

    built = set(runner.PROBES) | set(runner.MODDOWNLOAD_PROBES)
    assert built == {d.name for d in PROBE_DIR.iterdir() if d.is_dir()}

    def build_line(suites):
        script = runner.prep_script(opts(tmp_path, suites=suites))
        return next(ln for ln in script.splitlines() if " go build " in ln)

    assert build_line(("tooling",)).endswith("go build -o /gobuild/bin/ ./runner ./sched ./memstats ./lockcheck")
    assert build_line(("moddownload",)).endswith("./lockcheck ./modproxy ./netcheck")


def test_bench_txt_keeps_one_image_benched_twice_apart_for_benchstat(tmp_path):
    """An A/A run's two configurations differ in a configuration line, so benchstat (and the Go
    benchmark format reader) sees two configurations, not one with twice the runs."""
    from dataclasses import replace

    a, b = replace(TARGET, config=f"{TARGET.ref}#1"), replace(TARGET, config=f"{TARGET.ref}#2")
    o = opts(tmp_path, suites=("sched",), gomaxprocs=(1,), images=(TARGET.ref, TARGET.ref))
    records = tuple(Record(config=cfg).add(Sample(values={m: 1.0 for m, _ in output.METRICS["sched"]}))
                    for cfg in runner.configs(o, [a, b]))
    res = Results(run_id="r", gobuild_version="0", started="s", finished="f", status="complete",
                  rounds_done=1, options=o.summary(), host={}, profiles=(),
                  limits={"requested": {"cpus": 1.0, "memory": 2**31}, "effective": {}},
                  targets=(a, b), records=records)
    parsed = benchfmt.parse(output.bench_txt(res))
    assert len(parsed) == 2
    assert [r.config.get("config") for r in parsed] == [a.config, b.config]


def test_gotest_profiles_go_to_an_output_volume_that_outlives_the_container(tmp_path):
    """A measured run's /tmp is a tmpfs, gone when the container stops: the profiles are copied
    out of a writable volume of their own, mounted for the gotest suite only."""
    o = opts(tmp_path, suites=("gotest", "tooling"), gomaxprocs=(1,))
    bench = runner.Bench(None, o, "r", "amd64", lambda m: None)
    by_suite = {c.suite: c for c in runner.configs(o, [TARGET])}
    gotest = by_suite["gotest"]
    assert any(a.startswith(runner.PROFILE_DIR + "/") for a in gotest.argv)
    assert not runner.PROFILE_DIR.startswith("/tmp")
    mounts = {s: engine.create_kwargs(bench.spec(TARGET, ["x"], role="run", output=s == "gotest"),
                                      name="n", labels={})["volumes"] for s in by_suite}
    assert mounts["gotest"] == {TARGET.volume: {"bind": "/gobuild", "mode": "ro"},
                                f"{TARGET.volume}-out": {"bind": runner.PROFILE_DIR, "mode": "rw"}}
    assert mounts["tooling"] == {TARGET.volume: {"bind": "/gobuild", "mode": "ro"}}
    assert f"chmod a+rwX {runner.OUT_MOUNT}" in runner.prep_script(o)
