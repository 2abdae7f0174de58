"""gobuild fit: the bisection, OOM versus other failures, the remedies and the recommendation,
against fake probes (no daemon)."""
from __future__ import annotations

import pytest

from builder import engine, fit
from builder.errors import BenchError

MiB, GiB = fit.MiB, fit.GiB


def fake(need: int, *, fail_at: int | None = None, seconds=lambda limit: 10.0, setting="as-is"):
    """A probe that fits at need bytes or more, OOMs below, and fails otherwise at fail_at."""
    calls: list[int] = []

    def probe(limit: int) -> fit.Probe:
        calls.append(limit)
        if fail_at is not None and limit == fail_at:
            return fit.Probe(setting=setting, limit=limit, outcome="failed", seconds=1,
                             exit_code=2, output="undefined: Foo")
        ok = limit >= need
        return fit.Probe(setting=setting, limit=limit, outcome="ok" if ok else "oom",
                         seconds=seconds(limit), exit_code=0 if ok else 1,
                         reasons=() if ok else ("State.OOMKilled",))

    probe.calls = calls
    return probe


@pytest.mark.parametrize("need", [70 * MiB, 300 * MiB, 777 * MiB, 1500 * MiB, 7 * GiB])
def test_the_search_brackets_the_need_within_ten_runs(need):
    probe = fake(need)
    probes = fit.search(probe, start=8 * GiB, floor=64 * MiB, runs=10)
    assert len(probes) <= 10
    result = fit.summarize("as-is", probes)
    assert result.smallest_ok >= need
    assert result.largest_failed < need  # the limit below it did not fit: it was tried
    assert (result.smallest_ok / result.largest_failed <= fit.STOP_RATIO
            or result.smallest_ok - result.largest_failed <= fit.STOP_BYTES)
    assert probe.calls[0] == 8 * GiB
    assert 64 * MiB not in probe.calls or need < 80 * MiB  # the floor only when nothing failed


def test_a_run_budget_is_kept_and_a_fit_at_the_floor_has_no_failure_below():
    probes = fit.search(fake(300 * MiB), start=8 * GiB, floor=64 * MiB, runs=3)
    assert len(probes) == 3
    tiny = fit.summarize("as-is", fit.search(fake(1), start=1 * GiB, floor=64 * MiB, runs=10))
    assert tiny.largest_failed is None and tiny.smallest_ok == 64 * MiB  # the floor itself


def test_nothing_fits_under_the_start_stops_at_once():
    probes = fit.search(fake(9 * GiB), start=8 * GiB, floor=64 * MiB, runs=10)
    assert [p.outcome for p in probes] == ["oom"]
    assert fit.summarize("as-is", probes).smallest_ok is None


def test_a_failure_that_is_not_an_oom_stops_the_search_with_its_output():
    probes = fit.search(fake(300 * MiB, fail_at=8 * GiB), start=8 * GiB, floor=64 * MiB, runs=10)
    assert [p.outcome for p in probes] == ["failed"]
    logged = []
    with pytest.raises(BenchError, match="not for lack of memory"):
        fit.check_failed(probes, ("go", "build", "./..."), logged.append)
    assert "undefined: Foo" in logged[0]


def test_next_limit_is_the_geometric_middle_in_whole_mib_and_stops_when_close():
    assert fit.next_limit(64 * MiB, 256 * MiB) == 128 * MiB
    assert fit.next_limit(1000 * MiB, 1090 * MiB) is None  # within 10 %
    assert fit.next_limit(100 * MiB, 115 * MiB) is None  # within 16 MiB
    assert fit.next_limit(300 * MiB, 200 * MiB) is None


def test_outcome_tells_an_oom_from_a_failure_and_a_timeout():
    def done(code, output="", **kw):
        return engine.Finished(exit_code=code, output=output, oom_killed=kw.get("killed", False),
                               oom_events=kw.get("events", 0), timed_out=kw.get("timed_out", False))

    assert fit.outcome_of(done(0)) == ("ok", ())
    assert fit.outcome_of(done(1, events=1))[0] == "oom"  # a compile child killed
    assert fit.outcome_of(done(137, killed=True))[0] == "oom"
    assert fit.outcome_of(done(2, "fatal error: runtime: out of memory"))[0] == "oom"
    assert fit.outcome_of(done(1, "undefined: x")) == ("failed", ())
    assert fit.outcome_of(done(-1, timed_out=True)) == ("timeout", ())


def test_remedies_change_only_what_they_name():
    assert fit.setting_env("as-is", GiB, "-mod=mod") == {}
    assert fit.setting_env("p1", GiB, "-mod=mod") == {"GOFLAGS": "-mod=mod -p=1"}
    assert fit.setting_env("p1", GiB, "") == {"GOFLAGS": "-p=1"}
    assert fit.setting_env("gomemlimit", GiB, "") == {"GOMEMLIMIT": "819MiB"}
    assert fit.setting_env("gogc", GiB, "") == {"GOGC": "50"}


def result(key, ok, seconds, failed=None):
    return fit.SettingResult(key=key, smallest_ok=ok, seconds=seconds, largest_failed=failed,
                             tried_from=ok or 1300 * MiB, runs=3)


def test_the_recommendation_names_the_smaller_board_and_the_cost():
    settings = (result("as-is", 1300 * MiB, 40.0, 1200 * MiB), result("p1", 900 * MiB, 72.0),
                result("gogc", 1250 * MiB, 50.0), result("gomemlimit", None, None))
    line = fit.recommend(settings)
    assert line.startswith("fits a 1 GB board with GOFLAGS=-p=1 (build 1.8x slower, 900 MiB)")
    assert "as is it needs a 2 GB board" in line
    same = fit.recommend((result("as-is", 1300 * MiB, 40.0, 1200 * MiB), result("gogc", 1100 * MiB, 45.0)))
    assert same.startswith("fits a 2 GB board as is") and "GOGC=50: none gets it onto a smaller board" in same


def test_the_table_shows_each_setting_and_the_cache_state():
    settings = (result("as-is", 1300 * MiB, 40.0, 1200 * MiB), result("p1", None, None))
    res = fit.FitResult(run_id="r", cell="go1.27-slim-linux-arm64", image="img", platform="linux/arm64",
                        emulated=True, cpus=2, gomaxprocs=2, command=("go", "build", "./..."),
                        subject="the embedded workload", floor=64 * MiB, ceiling=8 * GiB,
                        probes=(), settings=settings)
    text = res.table()
    assert "EMULATED" in text and fit.CACHE_STATE in text
    assert "1300 MiB" in text and "40.0 s" in text and "1200 MiB" in text
    assert "none from 1300 MiB" in text  # p1 tried from its own first limit
    data = res.as_json()
    assert data["schema"] == "gobuild.fit/v1" and data["cache_state"] == fit.CACHE_STATE
    assert [s["setting"] for s in data["settings"]] == ["as is", "GOFLAGS=-p=1"]


class FakeProber:
    def __init__(self, needs):
        self.needs, self.count = needs, 0

    def __call__(self, key):
        inner = fake(self.needs[key], setting=key, seconds=lambda limit: 10.0 if key == "as-is" else 18.0)

        def probe(limit):
            self.count += 1
            return inner(limit)
        return probe


def test_remedies_start_at_the_largest_limit_that_did_not_fit():
    prober = FakeProber({"as-is": 1300 * MiB, "p1": 700 * MiB, "gomemlimit": 2 * GiB, "gogc": 1250 * MiB})
    opts = fit.FitOptions(command=("go", "build", "./..."), workload=None, max_runs=10, remedy_runs=4)
    probes, settings = fit.run_fit(None, prober, opts, 8 * GiB, lambda m: None)
    base, p1, memlimit, gogc = settings
    assert base.runs <= 10 and base.largest_failed < 1300 * MiB <= base.smallest_ok
    assert p1.tried_from == memlimit.tried_from == gogc.tried_from == base.largest_failed
    assert 700 * MiB <= p1.smallest_ok < base.largest_failed and p1.runs <= 4
    assert memlimit.smallest_ok is None and memlimit.runs == 1
    assert len(probes) == prober.count == sum(s.runs for s in settings)


def test_a_command_that_fits_nowhere_is_an_error():
    opts = fit.FitOptions(command=("go", "build", "./..."), workload=None)
    with pytest.raises(BenchError, match="does not fit in 8192 MiB .OOM.: raise --max"):
        fit.run_fit(None, FakeProber({"as-is": 9 * GiB}), opts, 8 * GiB, lambda m: None)


def test_a_timeout_at_the_ceiling_says_raise_the_timeout():
    def slow(limit):
        return fit.Probe(setting="as-is", limit=limit, outcome="timeout", seconds=1, exit_code=None)

    opts = fit.FitOptions(command=("go", "build", "./..."), workload=None)
    with pytest.raises(BenchError, match=r"does not fit in 8192 MiB \(TIMEOUT\): raise --timeout$"):
        fit.run_fit(None, lambda key: slow, opts, 8 * GiB, lambda m: None)


@pytest.mark.parametrize(("key", "expected"), [
    ("as-is", {}),
    ("p1", {"GOFLAGS": "-mod=mod -p=1"}),
    ("gomemlimit", {"GOMEMLIMIT": "409MiB"}),
    ("gogc", {"GOGC": "50"}),
])
def test_the_probe_container_gets_each_remedy_in_its_environment(key, expected):
    """The prober's spec, not only setting_env: a remedy must reach the container."""
    prober = fit.Prober(None, image="gobuild/go:x", platform="linux/amd64",
                        command=("go", "build", "./..."), volume="vol", cpus=2.0, gomaxprocs=2,
                        base_env={"GOFLAGS": "-mod=mod"}, timeout=60, run_id="r",
                        log=lambda m: None)
    spec = prober.spec(key, 512 * MiB)
    env = dict(spec.environment)
    assert spec.limits.memory == 512 * MiB and spec.limits.cpus == 2.0
    assert env["GOMAXPROCS"] == "2" and env["GOCACHE"] == "/tmp/gocache" and env["GOPROXY"] == "off"
    for name in ("GOFLAGS", "GOMEMLIMIT", "GOGC"):
        assert env.get(name) == expected.get(name, "-mod=mod" if name == "GOFLAGS" else None), name
