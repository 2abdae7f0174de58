import pytest

from builder.bench import benchfmt, options, stats
from builder.bench.run import check_limits, effective_limits
from builder.errors import BenchError, ConfigError


@pytest.mark.parametrize("text, cpus", [("0.5", 0.5), ("1.5", 1.5), ("2", 2.0)])
def test_cpus_as_docker_reads_them(text, cpus):
    assert options.parse_cpus(text, host_cpus=2) == cpus


@pytest.mark.parametrize("text", ["0", "-1", "abc", "3", "nan"])
def test_bad_cpus_are_usage_errors(text):
    with pytest.raises(ConfigError) as err:
        options.parse_cpus(text, host_cpus=2)
    assert err.value.exit_code == 2 and "\n" not in err.value.message


@pytest.mark.parametrize("text, n", [("512m", 512 * 2**20), ("2g", 2**31), ("2G", 2**31),
                                     ("1073741824", 2**30), ("1.5g", 3 * 2**29), ("65536k", 64 * 2**20)])
def test_memory_as_docker_reads_it(text, n):
    assert options.parse_memory(text, host_bytes=24 * 2**30) == n


@pytest.mark.parametrize("text", ["2gb", "lots", "1m", "100g", "-5m", ""])
def test_bad_memory_is_a_usage_error(text):
    with pytest.raises(ConfigError):
        options.parse_memory(text, host_bytes=24 * 2**30)


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
    s = stats.summarize([10.0] * 9 + [100.0])
    assert s.median == 10.0 and s.outliers == 0  # MAD 0: no verdict
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
    check_limits({"cpus": 0.5, "memory": 2**31}, v1, "img")
    with pytest.raises(BenchError, match="not the 1.5"):
        check_limits({"cpus": 1.5, "memory": 2**31}, v1, "img")
    with pytest.raises(BenchError, match="memory limit"):
        check_limits({"cpus": 1.5, "memory": 2**30}, v2, "img")


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
