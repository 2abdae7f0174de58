"""bench compare against what the real benchstat printed on the same two runs (recorded in
tests/fixtures/benchstat/), and the command's edges: too few runs, formats, exit codes."""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
from collections import Counter
from pathlib import Path
from statistics import NormalDist

import pytest
from click.testing import CliRunner

from builder.bench import benchfmt, compare, loaded
from builder.cli import main
from builder.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "benchstat"
PAIRS = ("slowdown-n5", "same-settings-n6")
# benchstat shows ns-based units in seconds
BENCHSTAT_UNITS = {"sec/op": "ns/op", "user-sec/op": "user-ns/op", "sys-sec/op": "sys-ns/op",
                   "p50-sec": "p50-ns", "p95-sec": "p95-ns", "p99-sec": "p99-ns", "max-sec": "max-ns"}
_ROW = re.compile(r"^(\S+)\s+.*?\s(~|[+-]\d+\.\d+%)\s+\(p=(\d\.\d+) n=(\d+)\)")


def benchstat_rows(pair: str) -> list[dict]:
    """benchmark, unit, delta ('~' or percent) and p of every row benchstat printed."""
    rows, unit = [], None
    for line in (FIXTURES / pair / "benchstat.txt").read_text(encoding="utf-8").splitlines():
        cols = [c.strip() for c in line.split("│")]
        if len(cols) >= 3 and cols[1] and not cols[1].endswith(".txt"):
            unit = cols[1]
        elif m := _ROW.match(line):
            rows.append({"benchmark": m.group(1), "unit": BENCHSTAT_UNITS.get(unit, unit),
                         "delta": m.group(2), "p": float(m.group(3)), "n": int(m.group(4))})
    assert rows, f"no rows parsed from {pair}/benchstat.txt"
    return rows


def metric_for(pair: str, benchmark: str, unit: str) -> str:
    """The results.json metric behind a bench.txt unit: the one with the same values run by
    run (bench.txt of an older gobuild named the cgroup's peak peak-RSS-bytes)."""
    text = (FIXTURES / pair / "old" / "bench.txt").read_text(encoding="utf-8")
    wanted = [r.values[unit] for r in benchfmt.parse(text) if r.name == f"Benchmark{benchmark}"]
    run = loaded.load(FIXTURES / pair / "old")
    for rec in run.records:
        for metric, values in rec.values.items():
            if rec.label == benchmark and list(values) == wanted:
                return metric
    raise AssertionError(f"no metric of {pair} holds {benchmark} {unit}")


@pytest.mark.parametrize("pair", PAIRS)
def test_verdicts_equal_benchstats_recorded_output(pair):
    cmp = compare.compare_paths([FIXTURES / pair / "old", FIXTURES / pair / "new"])
    ours = {(r.benchmark, r.metric): r for r in cmp.rows}
    for want in benchstat_rows(pair):
        row = ours[(want["benchmark"], metric_for(pair, want["benchmark"], want["unit"]))]
        assert round(row.p, 3) == pytest.approx(want["p"], abs=1e-9), (want, row.p)
        assert row.base_n == row.other_n == want["n"]
        if want["delta"] == "~":
            assert not row.significant and row.verdict == "~", want
        else:
            assert row.significant, want
            assert f"{row.delta_pct:+.2f}%" == want["delta"]


def test_a_2x_slowdown_is_significant_and_the_same_settings_on_the_scheduler_are_not():
    slow = compare.compare_paths([FIXTURES / "slowdown-n5" / "old", FIXTURES / "slowdown-n5" / "new"])
    wall = next(r for r in slow.rows if r.metric == "wall_ns")
    assert wall.verdict == "worse" and wall.delta_pct > 100 and wall.p < 0.01
    same = compare.compare_paths([FIXTURES / "same-settings-n6" / "old",
                                  FIXTURES / "same-settings-n6" / "new"])
    assert {r.verdict for r in same.rows if r.suite == "sched"} == {"~"}
    # ... while two invocations drift on the tooling commands: said so, with the way out
    assert all(r.verdict == "worse" for r in same.rows if r.suite == "tooling")
    assert any("separate invocations drift" in w and "--col image" in w for w in same.warnings)


def test_the_p_value_method_is_benchstats():
    # no ties: the exact distribution of U (2/252 for two separated samples of 5)
    assert compare.u_test([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).p == pytest.approx(2 / 252)
    # ties at n <= 9: the exact distribution given the ties (benchstat: p=0.981 for these)
    old = [421, 591, 341, 351, 411, 291]
    new = [330, 461, 451, 300, 291, 441]
    assert compare.u_test(old, new).p == pytest.approx(0.9805, abs=5e-4)
    # all equal: no information, p = 1, and said why
    t = compare.u_test([191] * 6, [191] * 6)
    assert t.p == 1.0 and t.note == "all samples are equal"
    # ties and more than 9 runs: normal approximation with tie and continuity correction
    x, y = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5], [4, 4, 5, 5, 6, 6, 7, 7, 8, 8]
    u = min(u1 := sum((a > b) + 0.5 * (a == b) for a in x for b in y), 100 - u1)
    ties = sum(c**3 - c for c in Counter(x + y).values())
    sigma = math.sqrt(100 * (21 - ties / (20 * 19)) / 12)  # go-moremath's formula, n = 10 + 10
    z = (u - 50 + 0.5) / sigma
    assert compare.u_test(x, y).p == pytest.approx(2 * NormalDist().cdf(z), rel=1e-9)


def _doc(pair: str, side: str) -> dict:
    return json.loads((FIXTURES / pair / side / "results.json").read_text(encoding="utf-8"))


def _write(tmp_path: Path, name: str, doc: dict) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def _keep_runs(doc: dict, n: int) -> dict:
    doc = copy.deepcopy(doc)
    for recs in doc["suites"].values():
        for rec in recs:
            rec["samples"] = rec["samples"][:n]
    return doc


def test_fewer_than_four_runs_a_side_give_no_verdict(tmp_path):
    old = _write(tmp_path, "old", _keep_runs(_doc("slowdown-n5", "old"), 3))
    new = _write(tmp_path, "new", _doc("slowdown-n5", "new"))
    cmp = compare.compare_paths([old, new])
    assert {r.verdict for r in cmp.rows} == {"no verdict"}
    assert all(r.p is None and "need >= 4 runs" in r.note for r in cmp.rows)
    assert "no verdict" in compare.text(cmp)


def _one_run_two_images(tmp_path: Path, emulated: bool = False) -> Path:
    """One run holding the same-settings pair as two images (as bench --image A --image B
    writes it), to check --col against comparing two runs."""
    old, new = _doc("same-settings-n6", "old"), _doc("same-settings-n6", "new")
    other = "gobuild/go:1.27.3-slim-amd64-b"
    merged = copy.deepcopy(old)
    merged["targets"].append({**old["targets"][0], "image": other, "emulated": emulated})
    for suite, recs in new["suites"].items():
        for rec in recs:
            merged["suites"][suite].append({**rec, "image": other, "emulated": emulated})
    return _write(tmp_path, "run", merged)


def test_col_image_compares_the_images_of_one_run_as_two_runs_would_be(tmp_path):
    within = compare.compare_paths([_one_run_two_images(tmp_path)], col="image")
    across = compare.compare_paths([FIXTURES / "same-settings-n6" / "old",
                                    FIXTURES / "same-settings-n6" / "new"])
    key = lambda r: (r.benchmark, r.metric)
    assert sorted((key(r), r.verdict, r.p) for r in within.rows) == \
        sorted((key(r), r.verdict, r.p) for r in across.rows)
    assert within.base == "gobuild/go:1.27.3-slim-amd64"
    assert not any("drift" in w for w in within.warnings)  # one interleaved run: no drift note


def test_col_needs_one_run_with_several_values(tmp_path):
    with pytest.raises(ConfigError, match="benched one image"):
        compare.compare_paths([FIXTURES / "slowdown-n5" / "old"], col="image")
    with pytest.raises(ConfigError, match="ONE run"):
        compare.compare_paths([FIXTURES / "slowdown-n5" / "old", FIXTURES / "slowdown-n5" / "new"],
                              col="image")


def test_warnings_name_different_limits_hosts_engines_and_emulation(tmp_path):
    cmp = compare.compare_paths([FIXTURES / "slowdown-n5" / "old", FIXTURES / "slowdown-n5" / "new"])
    assert any("different limits" in w and "cpus 1.0 vs 0.5" in w for w in cmp.warnings)
    doc = _doc("slowdown-n5", "new")
    doc["host"] = {**doc["host"], "engine_version": "26.1.5", "cpu_model": "Cortex-A76"}
    doc["targets"][0]["emulated"] = True
    other = compare.compare_paths([FIXTURES / "slowdown-n5" / "old", _write(tmp_path, "x", doc)])
    text = "\n".join(other.warnings)
    assert "different engines (engine_version 20.10.24+dfsg1 vs 26.1.5)" in text
    assert "different hosts (cpu_model AMD EPYC vs Cortex-A76)" in text
    assert "emulated (qemu) images (x: gobuild/go:1.27.3-slim-amd64)" in text
    within = compare.compare_paths([_one_run_two_images(tmp_path, emulated=True)], col="image")
    assert any("measure qemu" in w for w in within.warnings)


def test_formats(tmp_path):
    paths = [str(FIXTURES / "slowdown-n5" / "old"), str(FIXTURES / "slowdown-n5" / "new")]
    runner = CliRunner()
    as_json = runner.invoke(main, ["bench", "compare", *paths, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    wall = next(r for r in data["rows"] if r["metric"] == "wall_ns")
    assert wall["verdict"] == "worse" and wall["significant"] and data["alpha"] == 0.05
    assert json.loads(runner.invoke(main, ["bench", "compare", *paths, "--json"]).output) == data
    as_csv = runner.invoke(main, ["bench", "compare", *paths, "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {r["metric"]: r["verdict"] for r in rows} == {
        "wall_ns": "worse", "user_ns": "worse", "sys_ns": "~", "cgroup_peak_bytes": "~"}
    assert "different limits" in as_csv.stderr and "different limits" not in as_csv.stdout
    md = runner.invoke(main, ["bench", "compare", *paths, "--format", "markdown"]).output
    assert "| GoBuildA/pkg=workload-1 | ns/op | 25.72 s | 60.16 s | +133.93% | (p=0.008 n=5) |" in md
    text = runner.invoke(main, ["bench", "compare", *paths]).output
    assert re.search(r"GoBuildA/pkg=workload-1\s+sys-ns/op\s+4\.932 s\s+4\.961 s\s+~\s+\(p=0\.841 n=5\)", text)


def test_fail_on_regression_exit_code():
    paths = [str(FIXTURES / "slowdown-n5" / "old"), str(FIXTURES / "slowdown-n5" / "new")]
    runner = CliRunner()
    assert runner.invoke(main, ["bench", "compare", *paths]).exit_code == 0
    assert runner.invoke(main, ["bench", "compare", *paths, "--fail-on-regression", "150"]).exit_code == 0
    gate = runner.invoke(main, ["bench", "compare", *paths, "--fail-on-regression", "20"])
    assert gate.exit_code == 9
    assert "1 metric(s) significantly worse by more than 20%" in gate.output  # user time +17% is not
    # the other way round it is an improvement, never a regression
    back = runner.invoke(main, ["bench", "compare", *reversed(paths), "--fail-on-regression", "0"])
    assert back.exit_code == 0, back.output


@pytest.mark.parametrize("content, message", [
    ('{"schema": "gobuild.bench/v1", "run_id": "x", "suites": {', "truncated"),
    ("not json at all\n", "not JSON"),
    ('{"schema": "pyperf/1.0"}', "not a gobuild bench result"),
    ('{"schema": "gobuild.bench/v2"}', "written by a newer gobuild"),
    ('{"schema": "gobuild.bench/v1", "run_id": "x"}', "malformed gobuild.bench/v1 document"),
])
def test_unreadable_results_are_one_line_errors(tmp_path, content, message):
    bad = tmp_path / "results.json"
    bad.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(main, ["bench", "compare", str(bad), str(FIXTURES / "slowdown-n5" / "new")])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(main, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_one_image_benched_twice_is_two_configurations(tmp_path):
    """bench --image X --image X labels the configurations X#1 and X#2 (an A/A check)."""
    old, new = _doc("same-settings-n6", "old"), _doc("same-settings-n6", "new")
    image = old["targets"][0]["image"]
    merged = copy.deepcopy(old)
    merged["targets"] = [{**old["targets"][0], "config": f"{image}#{i}"} for i in (1, 2)]
    merged["suites"] = {suite: [{**rec, "config": f"{image}#1"} for rec in recs]
                        + [{**rec, "config": f"{image}#2"} for rec in new["suites"][suite]]
                        for suite, recs in old["suites"].items()}
    cmp = compare.compare_paths([_write(tmp_path, "aa", merged)], col="image")
    assert (cmp.base, cmp.others) == (f"{image}#1", (f"{image}#2",))
    assert len(cmp.rows) == 7 and sum(r.significant for r in cmp.rows) == 3


def test_go_tests_own_benchmarks_are_compared_too(tmp_path):
    def doc(ns: list[int]) -> dict:
        d = _keep_runs(_doc("slowdown-n5", "old"), 0)
        d["suites"] = {"gotest": [{
            "suite": "gotest", "name": "GoTest", "image": d["targets"][0]["image"], "gomaxprocs": 1,
            "emulated": False, "failed": [], "summary": {"wall_ns": None},
            "samples": [{"wall_ns": 1e9, "benchmarks": [
                f"BenchmarkParse-1  1000  {v} ns/op  48 B/op  2 allocs/op"]} for v in ns]}]}
        return d

    cmp = compare.compare_paths([_write(tmp_path, "old", doc([100, 101, 102, 103, 104])),
                                 _write(tmp_path, "new", doc([200, 201, 202, 203, 204]))])
    rows = {(r.benchmark, r.metric): r for r in cmp.rows}
    assert rows[("GoTest/Parse-1", "ns/op")].verdict == "worse"
    assert rows[("GoTest/Parse-1", "B/op")].note == "all samples are equal"
    assert compare.fmt_value("B/op", 48) == "48 B"


def _gotest_doc(ns: list[float], unit: str = "ns/op") -> dict:
    """A one-target run holding one go test benchmark measured len(ns) times."""
    d = _keep_runs(_doc("slowdown-n5", "old"), 0)
    d["suites"] = {"gotest": [{
        "suite": "gotest", "name": "GoTest", "image": d["targets"][0]["image"], "gomaxprocs": 1,
        "emulated": False, "failed": [], "summary": {"wall_ns": None},
        "samples": [{"wall_ns": 1e9, "benchmarks": [f"BenchmarkParse-1  1000  {v} {unit}"]}
                    for v in ns]}]}
    return d


def test_four_runs_a_side_fully_separated_are_significant_and_three_give_no_verdict(tmp_path):
    old = _write(tmp_path, "old4", _gotest_doc([100, 101, 102, 103]))
    new = _write(tmp_path, "new4", _gotest_doc([200, 201, 202, 203]))
    row = next(r for r in compare.compare_paths([old, new]).rows if r.metric == "ns/op")
    assert (row.base_n, row.other_n) == (4, 4)
    assert row.p == pytest.approx(2 / 70)  # 0.029: the smallest two-sided p at n=4+4
    assert row.significant and row.verdict == "worse"
    three = _write(tmp_path, "old3", _gotest_doc([100, 101, 102]))
    row = next(r for r in compare.compare_paths([three, new]).rows if r.metric == "ns/op")
    assert row.p is None and row.verdict == "no verdict" and "need >= 4 runs" in row.note


def test_a_throughput_rise_is_better_and_passes_the_gate(tmp_path):
    """go test's MB/s (b.SetBytes) is a rate: benchstat counts */s units higher-is-better."""
    old = _write(tmp_path, "old", _gotest_doc([100, 101, 102, 103, 104], "MB/s"))
    new = _write(tmp_path, "new", _gotest_doc([200, 201, 202, 203, 204], "MB/s"))
    cmp = compare.compare_paths([old, new])
    row = next(r for r in cmp.rows if r.metric == "MB/s")
    assert row.significant and row.delta_pct > 90
    assert row.verdict == "better" and row.to_json()["better"] == "higher"
    assert cmp.regressions(0) == []
    gate = CliRunner().invoke(main, ["bench", "compare", str(old), str(new), "--fail-on-regression", "0"])
    assert gate.exit_code == 0, gate.output
    fall = CliRunner().invoke(main, ["bench", "compare", str(new), str(old), "--fail-on-regression", "10"])
    assert fall.exit_code == 9 and "GoTest/Parse-1 MB/s -49.5%" in fall.output, fall.output


def test_a_gate_that_judged_nothing_says_so_on_stderr(tmp_path):
    old = _write(tmp_path, "old", _keep_runs(_doc("slowdown-n5", "old"), 3))
    new = _write(tmp_path, "new", _doc("slowdown-n5", "new"))
    gate = CliRunner().invoke(main, ["bench", "compare", str(old), str(new), "--fail-on-regression", "5"])
    assert gate.exit_code == 0, gate.output
    assert "warning: --fail-on-regression 5 judged nothing" in gate.stderr
    assert "judged nothing" not in gate.stdout
    full = [str(FIXTURES / "slowdown-n5" / "new"), str(FIXTURES / "slowdown-n5" / "old")]
    assert "judged nothing" not in CliRunner().invoke(main, ["bench", "compare", *full,
                                                             "--fail-on-regression", "5"]).stderr


MATRIX = Path(__file__).resolve().parent.parent / "fixtures" / "runs" / "matrix"


def _matrix_with(tmp_path: Path, image: str, go: str, factor: float, rename: dict | None = None) -> Path:
    """The matrix fixture with one more target: a copy of go1.22.10 slim amd64 as `image`
    (Go `go`), its values times `factor`; rename relabels the fixture's own images."""
    doc = json.loads((MATRIX / "results.json").read_text(encoding="utf-8"))
    src = "gobuild/go:1.22.10-slim-amd64"
    doc["targets"].append({**next(t for t in doc["targets"] if t["config"] == src),
                           "config": image, "image": image, "go_version": go})
    for recs in doc["suites"].values():
        for rec in [r for r in recs if r["config"] == src]:
            recs.append({**rec, "config": image, "image": image, "samples": [
                {k: v * factor if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                 for k, v in s.items()} for s in rec["samples"]]})
    text = json.dumps(doc)
    for a, b in (rename or {}).items():
        text = text.replace(a, b)
    folder = tmp_path / "matrix"
    folder.mkdir()
    (folder / "results.json").write_text(text, encoding="utf-8")
    return folder


def test_col_go_keeps_two_images_of_one_go_and_platform_apart(tmp_path):
    """bookworm and slim share Go 1.22.10 and linux/amd64: each is compared with its own 1.27."""
    run = _matrix_with(tmp_path, "gobuild/go:1.22.10-bookworm-amd64", "1.22.10", 10.0)
    plain = compare.compare_paths([MATRIX], col="go")
    cmp = compare.compare_paths([run], col="go")
    slim = [r for r in cmp.rows if "slim-amd64" in r.table]
    assert slim and all("bookworm" not in r.table for r in slim)
    # the slim rows are exactly those of the fixture without bookworm: nothing was overwritten
    key = lambda r: (r.benchmark, r.metric, r.base_median, r.other_median, r.p)
    assert sorted(map(key, slim)) == sorted(map(key, plain.rows))
    assert not any("bookworm" in r.table for r in cmp.rows)
    assert "linux/amd64 gobuild/go:*-bookworm-amd64: only go1.22.10 was benched, not go1.27.3" \
        in cmp.unmatched


def test_col_go_refuses_two_configurations_it_cannot_tell_apart(tmp_path):
    rename = {"gobuild/go:1.22.10-slim-amd64": "mine/a", "gobuild/go:1.27.3-slim-amd64": "mine/c"}
    run = _matrix_with(tmp_path, "mine/b", "1.22.10", 10.0, rename)
    result = CliRunner().invoke(main, ["bench", "compare", str(run), "--col", "go"])
    assert result.exit_code == 2, result.output
    assert "mine/a and mine/b share go go1.22.10" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
