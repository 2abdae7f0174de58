import pytest

from builder.bench import benchfmt, options, stats
from builder.bench.run import check_limits, effective_limits
from builder.errors import BenchError, ConfigError

from .test_bench_runner import opts_for_suite


@pytest.mark.parametrize("text, cpus", [("0.5", 0.5), ("1.5", 1.5), ("2", 2.0)])
def test_cpus_as_docker_reads_them(text, cpus):
    assert options.parse_cpus(text) == cpus


@pytest.mark.parametrize("text", ["0", "-1", "abc", "nan", "inf", "1e-12"])
def test_bad_cpus_are_usage_errors(text):
    with pytest.raises(ConfigError) as err:
        options.parse_cpus(text)
    assert err.value.exit_code == 2 and "\n" not in err.value.message


def test_a_workload_shape_go_cannot_build_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="--packages 10 is fewer than --modules 20"):
        opts_for_suite("compile", workload_modules=20, workload_packages=10)


def test_limits_beyond_the_engine_are_refused_once_it_answers():
    opts_for_suite("compile", cpus=2.0, memory=24 * 2**30).check_engine(2, 24 * 2**30)
    with pytest.raises(ConfigError, match="more than the engine's 2 CPUs"):
        opts_for_suite("compile", cpus=3.0).check_engine(2, 24 * 2**30)
    with pytest.raises(ConfigError, match="more than the engine's"):
        opts_for_suite("compile", memory=100 * 2**30).check_engine(2, 24 * 2**30)


@pytest.mark.parametrize("text, n", [("512m", 512 * 2**20), ("2g", 2**31), ("2G", 2**31),
                                     ("1073741824", 2**30), ("1.5g", 3 * 2**29), ("65536k", 64 * 2**20)])
def test_memory_as_docker_reads_it(text, n):
    assert options.parse_memory(text) == n


@pytest.mark.parametrize("text", ["2gb", "lots", "1m", "-5m", "", "2q", "1"])
def test_bad_memory_is_a_usage_error(text):
    with pytest.raises(ConfigError):
        options.parse_memory(text)


def test_ages_for_cleanup():
    assert options.parse_duration("90m") == 5400 and options.parse_duration("2d") == 172800
    assert options.parse_duration("30") == 30
    for bad in ("", "-1h", "1w", "soon"):
        with pytest.raises(ConfigError):
            options.parse_duration(bad)


def test_gomaxprocs_list():
    assert options.parse_gomaxprocs("1,2,4") == (1, 2, 4)
    for bad in ("0", "1,1", "x", ""):
        with pytest.raises(ConfigError):
            options.parse_gomaxprocs(bad)


def test_median_ci_follows_order_statistics():
    xs = list(range(1, 11))  # n = 10: the 95% interval is [x(2), x(9)] in 1-based order
    assert stats.median_ci(xs) == (2, 9)
    assert stats.median_ci([1, 2, 3, 4, 5]) is None  # five runs cannot reach 95%
    assert stats.median_ci([1, 2, 3, 4, 5, 6]) == (1, 6)
    assert stats.summarize([10.0] * 10).outliers == 0  # every run the same
    s = stats.summarize([10, 11, 10, 12, 11, 10, 11, 12, 10, 90])
    assert s.outliers == 1 and s.max == 90 and s.n == 10


def test_limits_from_cgroup_v1_and_v2():
    v1 = effective_limits({"cgroup_version": 1, "cpu_quota_us": 50000, "cpu_period_us": 100000,
                           "memory_limit": str(2**31)})
    assert v1["cpus"] == 0.5 and v1["memory"] == 2**31
    v2 = effective_limits({"cgroup_version": 2, "cpu_max": "150000 100000", "memory_max": "536870912"})
    assert v2["cpus"] == 1.5 and v2["memory"] == 512 * 2**20
    unlimited = effective_limits({"cgroup_version": 2, "cpu_max": "max 100000", "memory_max": "max"})
    assert unlimited["cpus"] is None and unlimited["memory"] is None
    with pytest.raises(BenchError, match="may swap"):  # v1 without memsw: unknown swap
        check_limits({"cpus": 0.5, "memory": 2**31}, v1, "img")
    with pytest.raises(BenchError, match="not the 1.5"):
        check_limits({"cpus": 1.5, "memory": 2**31}, v1, "img")
    with pytest.raises(BenchError, match="memory limit"):
        check_limits({"cpus": 1.5, "memory": 2**30}, v2, "img")


def test_outliers_when_more_than_half_the_runs_are_equal():
    # MAD is 0 here; the mean absolute deviation still sees 1000 as far out, and 11-13 as not.
    assert stats.outliers([10] * 6 + [11, 12, 13, 1000]) == 1
    assert stats.outliers([10.0] * 9 + [100.0]) == 1
    assert stats.outliers([10] * 6 + [11, 12, 13, 14]) == 0


V1 = {"cgroup_version": 1, "cpu_quota_us": 50000, "cpu_period_us": 100000,
      "memory_limit": str(2**31), "memsw_limit": str(2**31), "cpuset": "0-1", "host_swap_kb": 4096}


def test_swap_and_cpuset_are_read_back_and_checked():
    requested = {"cpus": 0.5, "memory": 2**31, "cpuset": "0,1"}
    check_limits(requested, effective_limits(V1), "img")  # 0,1 is 0-1
    swapping = effective_limits({**V1, "memsw_limit": str(2**32)})
    assert swapping["swap"] == 2**31
    with pytest.raises(BenchError, match="may swap"):
        check_limits(requested, swapping, "img")
    # no swap accounting: unknown unless the host has no swap at all
    with pytest.raises(BenchError, match="may swap"):
        check_limits(requested, effective_limits({**V1, "memsw_limit": ""}), "img")
    check_limits(requested, effective_limits({**V1, "memsw_limit": "", "host_swap_kb": 0}), "img")
    with pytest.raises(BenchError, match="runs on CPUs 0-1, not 1"):
        check_limits({**requested, "cpuset": "1"}, effective_limits(V1), "img")
    v2 = {"cgroup_version": 2, "cpu_max": "50000 100000", "memory_max": str(2**31),
          "swap_max": "max", "cpuset": "0-1"}
    with pytest.raises(BenchError, match="may swap"):
        check_limits(requested, effective_limits(v2), "img")
    check_limits(requested, effective_limits({**v2, "swap_max": "0"}), "img")


def test_benchmark_format_reader():
    text = """goos: linux
goarch: arm64
toolchain: go1.22.10
emulated: true
Unit peak-RSS-bytes better=lower
BenchmarkGoBuildA/pkg=std-4  1  41234567890 ns/op  1834500096 peak-RSS-bytes

BenchmarkSort-2   	    3421	    350163 ns/op	  382144 B/op	    3545 allocs/op
"""
    results = benchfmt.parse(text)
    assert [r.name for r in results] == ["BenchmarkGoBuildA/pkg=std-4", "BenchmarkSort-2"]
    assert results[0].values == {"ns/op": 41234567890, "peak-RSS-bytes": 1834500096}
    assert results[0].config["emulated"] == "true" and results[1].config["goarch"] == "arm64"
    for bad in ("BenchmarkX 1 2", "something else", "BenchmarkX one 2 ns/op"):
        with pytest.raises(ValueError):
            benchfmt.parse(bad)


def test_an_output_folder_that_cannot_be_written_is_refused_before_anything_runs(tmp_path):
    from builder.bench.run import check_output

    check_output(tmp_path / "new" / "deeper")  # to be made: fine
    assert not (tmp_path / "new").exists()  # and nothing made by the check
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        check_output(tmp_path / "file" / "out")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_quiet_returns_once_the_load_falls_below_the_threshold():
    from builder.bench.run import wait_quiet

    clock, loads, said = FakeClock(), iter([1.8, 1.4, 1.1, 0.9, 0.2]), []
    waited = wait_quiet(lambda: next(loads), 1.0, 300, said.append, sleep=clock.sleep, clock=clock)
    assert waited.quiet and waited.load_before == 1.8 and waited.load_after == 0.9
    assert waited.waited_s == 15.0  # three polls, 5 s apart (the kernel's own period)
    assert waited.warning() is None
    assert said[0] == "waiting for a quiet host: load 1.80, threshold 1.00, giving up in 300 s"


def test_wait_quiet_gives_up_after_its_seconds_with_a_warning():
    from builder.bench.run import wait_quiet

    clock = FakeClock()
    waited = wait_quiet(lambda: 3.5, 1.0, 12, sleep=clock.sleep, clock=clock)
    assert not waited.quiet and waited.waited_s == 12.0  # 5 + 5 + 2: never past the limit
    assert waited.warning() == ("--wait-quiet: the host did not become quiet in 12 s (1-minute "
                                "load average 3.50, threshold 1.00): times may be inflated")
    already = wait_quiet(lambda: 0.1, 1.0, 12, sleep=clock.sleep, clock=clock)
    assert already.quiet and already.waited_s == 0.0
    unknown = wait_quiet(lambda: None, 1.0, 12, sleep=clock.sleep, clock=clock)
    assert not unknown.quiet and "could not be read" in unknown.warning()
    never = wait_quiet(lambda: 0.0, 0.0, 1, sleep=clock.sleep, clock=clock)  # nothing is below 0
    assert not never.quiet and never.waited_s == 1.0  # --quiet-load 0 waits the whole SECONDS


def test_the_default_quiet_threshold_is_half_the_cpus_where_the_busy_warning_starts():
    from builder.bench.options import quiet_threshold
    from builder.bench.run import warnings_for

    assert quiet_threshold(2) == 1.0 and quiet_threshold(0) == 0.5
    busy = warnings_for({"loadavg_start": "1.01 0.5 0.2 1/100 5", "engine_cpus": 2}, (), [])
    calm = warnings_for({"loadavg_start": "0.99", "engine_cpus": 2}, (), [])
    assert any("busy" in w for w in busy) and not any("busy" in w for w in calm)
    # a --quiet-load given is the threshold of the warning too
    given = {"loadavg_start": "1.5", "engine_cpus": 2}
    assert not any("busy" in w for w in warnings_for(given, (), [], busy_above=2.0))
    assert any("over 0.30" in w for w in warnings_for({**given, "loadavg_start": "0.5"}, (), [],
                                                       busy_above=0.3))


def test_a_network_that_reaches_anything_but_the_proxy_is_refused():
    from builder.bench.modproxy import isolation_problems

    ok = {"reached": True, "reach_result": "connected", "gateway_routes": [],
          "others": {"172.17.0.1:8080": "unreachable", "172.20.0.1:8080": "timeout"}}
    assert isolation_problems(ok) == []
    assert isolation_problems({**ok, "gateway_routes": None}) == []
    assert isolation_problems({**ok, "others": {"172.17.0.1:8080": "refused"}}) == [
        "172.17.0.1:8080 was reachable (refused)"]  # refused: a host answered, so a route exists
    assert isolation_problems({**ok, "gateway_routes": ["eth0 dst 00000000 gw 010012AC"]}) == [
        "routes through a gateway: eth0 dst 00000000 gw 010012AC"]
    assert isolation_problems({**ok, "reached": False, "reach_result": "timeout"}) == [
        "the proxy did not answer (timeout)"]


def test_the_isolated_network_is_internal_with_no_host_address_and_labelled():
    from builder import engine

    kw = engine.isolated_network_kwargs("gobuild-net-r", engine.labels("r"))
    assert kw["internal"] is True and kw["driver"] == "bridge"
    assert kw["options"] == {"com.docker.network.bridge.inhibit_ipv4": "true"}
    assert kw["labels"][engine.RUN_LABEL] == "r" and engine.OWNER_LABEL in kw["labels"]


def test_one_image_named_twice_is_two_configurations():
    from builder.bench.options import config_labels

    assert config_labels(("a", "b")) == ("a", "b")
    assert config_labels(("a", "b", "a")) == ("a#1", "b", "a#2")
    assert config_labels(()) == ()


@pytest.mark.parametrize("size, modules, packages, shape", [
    (None, None, None, (20, 100)), ("small", None, None, (20, 100)),
    ("medium", None, None, (200, 600)), ("large", None, None, (1200, 2400)),
    ("large", 30, None, (30, 2400)), (None, 500, None, (500, 500)),
    (None, None, 40, (20, 40)), ("large", 50, 60, (50, 60)),
])
def test_workload_sizes_and_explicit_shapes_win(size, modules, packages, shape):
    assert options.workload_shape(size, modules, packages) == shape


def cli_options(monkeypatch, *args):
    """The BenchOptions the bench command builds (the library call replaced)."""
    from click.testing import CliRunner

    from builder import cli_bench
    from builder.cli import main

    got = {}

    def fake_bench(inputs, opts, log=None):
        got["opts"], got["log"] = opts, log
        raise SystemExit(0)

    monkeypatch.setattr(cli_bench, "bench", fake_bench)
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code == 0, result.output
    return got["opts"], got["log"]


def test_cli_wait_quiet_takes_an_optional_seconds_and_sizes_are_recorded(monkeypatch, tmp_path):
    o, log = cli_options(monkeypatch, "--wait-quiet", "--runs", "3", "--output", str(tmp_path))
    assert o.wait_quiet == 300.0 and o.runs == 3 and o.quiet_load is None
    assert o.workload_size == "small" and (o.workload_modules, o.workload_packages) == (20, 100)
    assert "moddownload" not in o.suites and len(o.suites) == 6  # moddownload is opt-in
    assert log.mode == "plain"  # CliRunner's stderr is no terminal
    o, log = cli_options(monkeypatch, "--wait-quiet", "7.5", "--quiet-load", "0.8", "-q",
                         "--workload-size", "large", "--output", str(tmp_path))
    assert (o.wait_quiet, o.quiet_load, log.mode) == (7.5, 0.8, "quiet")
    assert (o.workload_size, o.workload_modules, o.workload_packages) == ("large", 1200, 2400)
    assert o.summary()["workload_size"] == "large"
    o, _ = cli_options(monkeypatch, "--workload-size", "large", "--modules", "40", "--output", str(tmp_path))
    assert (o.workload_size, o.workload_modules, o.workload_packages) == (None, 40, 2400)
    o, _ = cli_options(monkeypatch, "--output", str(tmp_path))
    assert o.wait_quiet is None


@pytest.mark.parametrize("args, message", [
    (("--workload", "{tmp}", "--workload-size", "large"),
     "--workload-size sizes the embedded workload, not --workload PATH"),
    (("--workload-size", "medium", "--packages", "100"),
     "--packages 100 is fewer than the medium size's 200 modules"),
    (("--quiet-load", "1"), "--quiet-load only goes with --wait-quiet"),
])
def test_cli_refuses_options_it_would_ignore(tmp_path, args, message):
    from click.testing import CliRunner

    from builder.cli import main

    result = CliRunner().invoke(main, ["bench", *(a.format(tmp=tmp_path) for a in args),
                                       "--output", str(tmp_path / "out")])
    assert result.exit_code == ConfigError.exit_code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_quiet_load_without_wait_quiet_is_refused_by_the_options_too(tmp_path):
    from dataclasses import replace

    o = options.BenchOptions(images=(), cpus=1.0, memory=2**31, cpuset=None, suites=("tooling",),
                             runs=1, warmup=0, gomaxprocs=(1,), workload=None, workload_modules=20,
                             workload_packages=100, compile_target="workload",
                             bench_package="./benchpkg", output=tmp_path, seed=1)
    with pytest.raises(ConfigError, match="--quiet-load only goes with --wait-quiet"):
        replace(o, quiet_load=1.0)
    assert replace(o, quiet_load=1.0, wait_quiet=5.0).quiet_load == 1.0
