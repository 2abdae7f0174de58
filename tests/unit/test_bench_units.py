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
