"""report.md and its plots rendered from recorded results (tests/fixtures/runs/: real bench
runs on the project's machine), against a stored expected Markdown; the matrix view; what a
report draws when a run holds only some suites.

To accept a changed report on purpose: GOBUILD_UPDATE_EXPECTED=1 pytest tests/unit/test_report.py
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from builder.bench import loaded, output, plots, report
from builder.bench.results import Config as BenchConfig
from builder.bench.results import Record, Results, Sample, Target
from builder.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SINGLE = FIXTURES / "runs" / "go1.22-slim-amd64"
MATRIX = FIXTURES / "runs" / "matrix"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("results.json", "bench.txt"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
    return dst


def images_of(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def assert_pngs(folder: Path, markdown: str) -> list[str]:
    refs = images_of(markdown)
    for ref in refs:
        assert not ref.startswith("/") and "://" not in ref, ref  # relative to report.md
        data = (folder / ref).read_bytes()
        assert data[:8] == PNG_MAGIC, ref
        # decoded in full (a corrupt body under an intact header fails here), and drawn on
        pixels = imread(folder / ref)[..., :3]
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 800, (ref, pixels.shape)
        assert pixels.reshape(-1, 3).std(axis=0).max() > 0.02, f"{ref} is blank"
    return refs


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    folder = _copy(SINGLE, tmp_path_factory.mktemp("single") / "run")
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {folder / 'report.md'}\n"
    return folder


def test_the_png_check_catches_a_corrupt_body_and_a_blank_image(rendered, tmp_path):
    """assert_pngs decodes each image: an intact header over a damaged body, or a plain white
    image, does not pass it."""
    md = "![plot](plots/x.png)"
    (tmp_path / "plots").mkdir()
    good = (rendered / "plots" / "sched-latency.png").read_bytes()
    (tmp_path / "plots" / "x.png").write_bytes(good[:len(good) // 2] + bytes(len(good) // 2))
    with pytest.raises((OSError, SyntaxError, ValueError)):  # Pillow says "broken PNG file"
        assert_pngs(tmp_path, md)
    import matplotlib.image
    import numpy as np

    matplotlib.image.imsave(tmp_path / "plots" / "x.png", np.ones((400, 900, 3)))
    with pytest.raises(AssertionError, match="blank"):
        assert_pngs(tmp_path, md)


def test_report_matches_the_stored_expected_markdown(rendered):
    got = TIMESTAMP.sub("<time>", (rendered / "report.md").read_text(encoding="utf-8"))
    expected_file = SINGLE / "report.expected.md"
    if os.environ.get("GOBUILD_UPDATE_EXPECTED"):
        expected_file.write_text(got, encoding="utf-8")
    assert got == expected_file.read_text(encoding="utf-8")


def test_every_image_the_report_references_is_a_png_in_the_results_folder(rendered):
    md = (rendered / "report.md").read_text(encoding="utf-8")
    refs = assert_pngs(rendered, md)
    assert refs == ["plots/compile-gomaxprocs.png", "plots/memory-phases.png",
                    "plots/sched-latency.png", "plots/tooling-latency.png"]
    assert sorted(p.name for p in (rendered / "plots").iterdir()) == sorted(Path(r).name for r in refs)


def test_the_memory_phases_carry_the_comparisons_names_and_the_mapping_is_stated(rendered):
    md = (rendered / "report.md").read_text(encoding="utf-8")
    assert "*After GOROOT initialisation* is `go env`" in md
    for phase, command in (("after GOROOT initialisation", "`go env`"),
                           ("after the module cache is loaded", "`go list -m all`"),
                           ("test process peak", "`go test -c` binary")):
        row = next(line for line in md.splitlines() if line.startswith(f"| {phase} |"))
        assert command in row and "MiB" in row


def test_only_what_the_run_measured_is_drawn(tmp_path):
    # the sched and tooling suites only: no compile or memory plot, no memory section
    folder = _copy(FIXTURES / "benchstat" / "same-settings-n6" / "old", tmp_path / "run")
    report.render([folder])
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert assert_pngs(folder, md) == ["plots/sched-latency.png", "plots/tooling-latency.png"]
    assert "## Memory per phase" not in md and "Across Go versions" not in md


def test_a_plot_that_fails_is_named_in_the_report_and_the_rest_is_written(tmp_path, monkeypatch):
    def broken(run, folder):
        raise ValueError("no data")

    monkeypatch.setattr(plots, "RUN_PLOTS", (broken, plots.tooling_plot))
    folder = _copy(FIXTURES / "benchstat" / "same-settings-n6" / "old", tmp_path / "run")
    report.render([folder])
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "> **the broken plot could not be drawn:** ValueError: no data" in md
    assert images_of(md) == ["plots/tooling-latency.png"]


def _matrix_md(tmp_path: Path) -> tuple[Path, str]:
    folder = _copy(MATRIX, tmp_path / "matrix")
    report.render([folder])
    return folder, (folder / "report.md").read_text(encoding="utf-8")


def _rows(section: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| go")]


def test_one_run_over_several_images_gets_the_matrix_view(tmp_path):
    """The recorded run: Go 1.22 and 1.27 on amd64 (native), Go 1.22 on arm64 (qemu)."""
    folder, md = _matrix_md(tmp_path)
    run = loaded.load(folder)
    assert {(t.go_version, t.platform, t.emulated) for t in run.targets} == {
        ("1.22.10", "linux/amd64", False), ("1.27.3", "linux/amd64", False),
        ("1.22.10", "linux/arm64", True)}
    section = md.split("## Across Go versions and platforms", 1)[1]
    assert "### Goroutine-creation latency P95" in section and "### Tooling latency P95" in section
    assert "### Compile time" not in section  # not measured in this run: no table
    assert section.count("| Go | linux/amd64 | linux/arm64 |") == 4  # sched at GOMAXPROCS 1, 3 commands
    rows = _rows(section)
    assert [r[0] for r in rows] == ["go1.22.10", "go1.27.3"] * 4  # rows: Go versions, in order
    for go, amd64, arm64 in rows:
        assert report.EMULATED_MARK not in amd64 and amd64 != "-"
        # arm64 ran under qemu here: marked; Go 1.27 was not benched on arm64
        assert (report.EMULATED_MARK in arm64) if go == "go1.22.10" else arm64 == "-"
    assert "**go list -deps ./...** (wall_ns, P95)" in section
    assert re.search(r"\| go1\.22\.10 \| [\d.]+ ns \[[\d.]+ ns, [\d.]+ ns\] \|", section) is None  # 3 runs: no CI
    assert "(n=3, no CI)" in section
    pngs = assert_pngs(folder, section)
    assert pngs == ["plots/matrix-sched.png", "plots/matrix-tooling.png"]
    assert "hollow markers on dashed lines ran under emulation" in section


def test_the_summary_of_several_runs_has_every_headline(tmp_path):
    single, matrix = _copy(SINGLE, tmp_path / "single"), _copy(MATRIX, tmp_path / "matrix")
    out = tmp_path / "summary"
    # the summary alone (render() also draws each run's own report: tested above)
    md = report.write_summary([loaded.load(single), loaded.load(matrix)], out).read_text(encoding="utf-8")
    for title in ("Compile time", "Peak memory per phase", "Goroutine-creation latency P95",
                  "Tooling latency P95"):
        assert f"### {title}" in md, title
    assert "**after GOROOT initialisation (go-env)** (peak_rss_bytes, median [95% CI])" in md
    # Go 1.22 on amd64 was measured by both runs: two rows, each naming its run
    ids = [loaded.load(single).run_id, loaded.load(matrix).run_id]
    sched = md.split("### Goroutine-creation latency P95", 1)[1].split("###", 1)[0]
    assert [r[0] for r in _rows(sched)][:2] == sorted((f"go1.22.10 (run {i})" for i in ids),
                                                      key=plots.version_key)
    assert sorted(Path(r).name for r in assert_pngs(out, md)) == [
        "matrix-compile.png", "matrix-memory.png", "matrix-sched.png", "matrix-tooling.png"]


def test_several_folders_make_one_summary(tmp_path):
    a = _copy(FIXTURES / "benchstat" / "slowdown-n5" / "old", tmp_path / "a")
    b = _copy(FIXTURES / "benchstat" / "slowdown-n5" / "new", tmp_path / "b")
    out = tmp_path / "summary"
    result = CliRunner().invoke(main, ["report", str(a), str(b), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert (a / "report.md").exists() and (b / "report.md").exists()
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "different CPU limits" in md and "drifts between invocations" in md
    assert_pngs(out, md)
    # one Go version, one platform, two runs in one cell: the rows say which is which
    again = CliRunner().invoke(main, ["report", str(a), str(a / "results.json"), "--output", str(out)])
    assert again.exit_code == 2 and "are the same results" in again.output


def test_bench_writes_the_report_with_its_plots(tmp_path):
    """output.write_all, as run.py calls it after every round."""
    target = Target(ref="gobuild/go:1.22.10-slim-amd64", image_id="sha256:x", digest=None,
                    platform="linux/amd64", arch="amd64", go_version="1.22.10", emulated=False,
                    volume="v")
    cfg = BenchConfig(suite="tooling", name="GoTooling/cmd=go-mod-graph", target=target,
                      argv=("go", "mod", "graph"), gomaxprocs=1)
    rec = Record(config=cfg)
    for ns in (11e6, 12e6, 13e6, 12.5e6):
        rec = rec.add(Sample(values={"wall_ns": ns}))
    res = Results(run_id="r1", gobuild_version="0", started="2026-11-30T10:00:00Z", finished=None,
                  status="running", rounds_done=4, options={"runs": 4, "warmup": 0},
                  limits={"requested": {"cpus": 1.0, "memory": 2**31, "cpuset": None, "swap": 0},
                          "effective": {"cpus": 1.0, "memory": 2**31}},
                  host={"engine_version": "26.1.5"}, targets=(target,), records=(rec,))
    output.write_all(tmp_path, res, {})
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert assert_pngs(tmp_path, md) == ["plots/tooling-latency.png"]
    assert json.loads((tmp_path / "results.json").read_text())["run_id"] == "r1"
    assert "| tooling | GoTooling/cmd=go-mod-graph-1 |" in md


def test_the_compile_plot_shades_the_ci_once_there_are_six_runs(tmp_path):
    doc = json.loads((SINGLE / "results.json").read_text(encoding="utf-8"))
    for rec in doc["suites"]["compile"]:
        rec["samples"] = rec["samples"] + rec["samples"][:2]  # 6 runs: a 95% CI of the median
    run = loaded.from_json(doc, tmp_path / "results.json")
    assert "shaded: the 95% confidence interval of the median" in plots.compile_plot(run, tmp_path).caption
    fewer = loaded.load(SINGLE)
    assert "no confidence interval: fewer than 6 runs" in plots.compile_plot(fewer, tmp_path).caption


def test_two_variants_of_32_bit_arm_share_the_rows_of_the_64_bit_platforms():
    """Rows are the image's tag without its platform: "-arm-v7" comes off whole (taking only
    "v7" off left "1.22.10-slim-arm", a row of its own beside "1.22.10-slim")."""
    from types import SimpleNamespace as NS

    tags = {f"gobuild/go:1.22.10-{v}-{p.split('/', 1)[1].replace('/', '-')}": (v, p)
            for v in ("slim", "bookworm") for p in ("linux/amd64", "linux/arm/v7")}
    records = [NS(config=tag) for tag in tags]
    run = NS(records=records, host_label=None, hosts=(), run_id="r1",
             target=lambda config: NS(go_version="1.22.10", platform=tags[config][1], host=None))
    cells = report._cells([run])
    assert {(c.row, c.column) for c in cells} == {
        (f"1.22.10-{v}", p) for v in ("slim", "bookworm") for p in ("linux/amd64", "linux/arm/v7")}
