"""The workflows' shell steps, run as the workflows call them: each `run:` is read from the YAML
(never copied here), its `${{ }}` expressions are given local values, and it runs with the
shell GitHub uses for `shell: bash`, job after job, outputs and artifacts handed on the way
GitHub hands them on. The local registry fixture stands in for GHCR.

So a renamed flag in gobuild (or a workflow calling one that does not exist) fails here, not
in the release. A step that cannot run offline here is named with its reason, and a step that
is neither run nor named fails the test: nothing is left out silently.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, gobuild

WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
GO, VARIANT = "latest", "slim"  # the narrowest selection: the newest Go's slim images
PLATFORMS = "linux/amd64 linux/arm64"  # the native runners (32-bit ARM would smoke-test under qemu)
OWNER = "Acme-CI"  # mixed case: GHCR wants lowercase names, the workflow lowers it

# (workflow, job, step name) -> why the step does not run here. Everything else runs.
NOT_RUN = {
    ("images.yml", "matrix", "Install gobuild"): "pip install of this checkout: the test runs the installed gobuild",
    ("images.yml", "build", "Install gobuild"): "pip install of this checkout: the test runs the installed gobuild",
    ("images.yml", "merge", "Install gobuild"): "pip install of this checkout: the test runs the installed gobuild",
    ("images.yml", "verify", "Install gobuild"): "pip install of this checkout: the test runs the installed gobuild",
    ("bench.yml", "matrix", "Install gobuild"): "pip install of this checkout: the test runs the installed gobuild",
    ("bench.yml", "bench", "Install gobuild"): "pip install of this checkout: the test runs the installed gobuild",
    ("bench.yml", "report", "Install gobuild"): "pip install of this checkout: the test runs the installed gobuild",
    ("ci.yml", "lint", "Install gobuild and its test tools"): "pip install of this checkout: the test runs the installed gobuild",
    ("ci.yml", "lint", "Unit tests"): "make test runs the unit suite itself",
    ("images.yml", "build", "Install mmdebstrap (slim's busybox and CA bundle come from Debian's packages)"):
        "sudo apt-get on a GitHub runner; here scripts/setup-host.sh installs mmdebstrap (make setup)",
    ("ci.yml", "integration", "Set up the host"): "sudo on a GitHub runner; here CI runs scripts/setup-host.sh itself (make setup)",
    ("ci.yml", "integration", "Integration tests"): "this test is one of them",
}
# Steps whose gobuild calls run with every option parsed but no work done (a shim appends
# --help: Click parses the whole command line first, so a renamed or unknown flag is still an
# error): on this shared 2-core machine one slim smoke test took 2 min 19 s and one bench round
# 3 min 38 s (load average 17-22). tests/integration/test_images.py runs the smoke tests and
# tests/integration/test_bench.py the bench.
PARSED_ONLY = {("images.yml", "build", "Build and smoke-test"), ("bench.yml", "bench", "Bench")}


# --- expressions ---------------------------------------------------------------------------

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def evaluate(expr: str, ctx: dict):
    """The expressions the workflows use: dotted names, 'literal', a || b, !cancelled(),
    fromJSON(x). Anything else fails the test (keep the workflows within what is checked)."""
    expr = expr.strip()
    if "||" in expr:
        for part in expr.split("||"):
            value = evaluate(part, ctx)
            if value not in ("", None, False):
                return value
        return value
    if expr in ("!cancelled()", "always()", "success()"):
        return True
    if m := re.fullmatch(r"'([^']*)'", expr):
        return m.group(1)
    if m := re.fullmatch(r"fromJSON\((.+)\)", expr):
        return json.loads(evaluate(m.group(1), ctx))
    if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[\w-]+)*", expr):
        raise AssertionError(f"expression this test does not evaluate: {expr!r}")
    value = ctx
    for part in expr.split("."):
        if not isinstance(value, dict) or part not in value:
            raise AssertionError(f"${{{{ {expr} }}}}: no {part!r} here")
        value = value[part]
    return value


def substitute(text, ctx: dict) -> str:
    if not isinstance(text, str):
        return text
    whole = EXPR.fullmatch(text.strip())
    if whole and len(EXPR.findall(text)) == 1:
        value = evaluate(whole.group(1), ctx)
        return value if isinstance(value, (dict, list, bool)) else str(value)
    return EXPR.sub(lambda m: _text(evaluate(m.group(1), ctx)), text)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


# --- a runner for one job ------------------------------------------------------------------

@dataclass
class Run:
    """What one run of the workflows shares: artifacts, the local values, what ran."""

    base: Path  # each job gets a fresh checkout under it, as each GitHub job does
    artifacts: Path
    github: dict
    env_overrides: dict
    shim: Path  # the `gobuild` that only parses (PARSED_ONLY)
    workflows: Path = WORKFLOWS
    ran: set = field(default_factory=set)  # (workflow, job, step) that ran
    summaries: dict = field(default_factory=dict)  # (workflow, job, arch) -> step summary text
    workspaces: dict = field(default_factory=dict)  # (workflow, job, arch) -> its checkout
    seed: dict = field(default_factory=dict)  # (workflow, job, arch) -> {path in checkout: source}
    stderr: dict = field(default_factory=dict)  # (workflow, job, step) -> what it said last


def load(name: str, folder: Path = WORKFLOWS) -> dict:
    data = yaml.safe_load((folder / name).read_text(encoding="utf-8"))
    data["on"] = data.pop(True)  # YAML 1.1 reads `on` as True
    return data


def read_outputs(path: Path) -> dict:
    """$GITHUB_OUTPUT: name=value lines and name<<DELIMITER blocks."""
    out, lines = {}, path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            out[name] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        if line:
            name, value = line.split("=", 1)
            out[name] = value
        i += 1
    return out


def run_job(run: Run, workflow: str, job_name: str, *, inputs: dict, matrix: dict | None = None,
            needs: dict | None = None) -> dict:
    """Run one job's steps in order, in a fresh checkout; returns the job's outputs."""
    wf = load(workflow, run.workflows)
    assert wf["defaults"]["run"]["shell"] == "bash"
    job = wf["jobs"][job_name]
    arch = (matrix or {}).get("arch", "")
    where = run.base / f"{workflow}-{job_name}-{arch or 'one'}"
    workspace = checkout(where / "workspace")
    for rel, source in run.seed.get((workflow, job_name, arch), {}).items():
        shutil.copytree(source, workspace / rel)
    run.workspaces[(workflow, job_name, arch)] = workspace
    ctx = {"github": run.github, "inputs": inputs, "matrix": matrix or {}, "needs": needs or {},
           "secrets": {"GITHUB_TOKEN": "unused-here"}, "steps": {},
           "runner": {"temp": str(where / "runner-temp")}}
    Path(ctx["runner"]["temp"]).mkdir()
    env = {}
    for scope in (wf.get("env", {}), job.get("env", {})):
        for key, value in scope.items():
            env[key] = substitute(value, {**ctx, "env": env})
    env.update(run.env_overrides)
    summary = where / "step-summary.md"
    summary.write_text("")
    for index, step in enumerate(job["steps"]):
        ctx["env"] = env
        if "if" in step and not substitute("${{ " + str(step["if"]).strip("${} ") + " }}", ctx):
            continue
        if "uses" in step:
            _action(run, workspace, step, ctx)
            continue
        name = step["name"]
        key = (workflow, job_name, name)
        if key in NOT_RUN:
            continue
        step_env = {k: _text(substitute(v, ctx)) for k, v in step.get("env", {}).items()}
        output = where / f"output-{index}"
        output.write_text("")
        script = step["run"]
        first = [str(run.shim)] if key in PARSED_ONLY else []
        full_env = {
            **os.environ, **{k: _text(v) for k, v in env.items()}, **step_env,
            "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": ctx["runner"]["temp"],
            "GITHUB_SHA": run.github["sha"], "CI": "true",
            "PATH": os.pathsep.join([*first, str(BIN), os.environ["PATH"]]),
        }
        # GitHub's command line for `shell: bash`.
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                              cwd=workspace, env=full_env, capture_output=True, text=True,
                              timeout=900, check=False)
        assert proc.returncode == 0, (
            f"{workflow} {job_name} / {name} exited {proc.returncode}:\n{script}\n"
            f"--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-3000:]}")
        run.ran.add(key)
        run.stderr[key] = proc.stderr
        if "id" in step:
            ctx["steps"][step["id"]] = {"outputs": read_outputs(output)}
    run.summaries[(workflow, job_name, arch)] = summary.read_text()
    return {k: substitute(v, ctx) for k, v in job.get("outputs", {}).items()}


def _action(run: Run, workspace: Path, step: dict, ctx: dict) -> None:
    """What the workflows' actions do, as far as later steps see it. Checkout, Python, buildx,
    qemu and the login are already in place here (the checkout is the run's workspace; the
    local registry needs no login)."""
    action = step["uses"].split("@")[0]
    given = {k: substitute(v, ctx) for k, v in step.get("with", {}).items()}
    if action == "actions/upload-artifact":
        source = workspace / given["path"]
        target = run.artifacts / given["name"]
        assert source.exists(), f"upload-artifact: {given['path']} does not exist"
        assert not target.exists(), f"artifact {given['name']} uploaded twice"
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.mkdir(parents=True)
            shutil.copy2(source, target / source.name)
    elif action == "actions/download-artifact":
        dest = workspace / given.get("path", ".")
        names = [p.name for p in run.artifacts.iterdir()
                 if fnmatch.fnmatchcase(p.name, given.get("pattern", given.get("name", "*")))]
        # A missing name fails the action; a pattern that matches nothing downloads nothing.
        assert names or "pattern" in given, f"download-artifact: no artifact matches {given}"
        for name in names:
            into = dest if given.get("merge-multiple") else dest / name
            shutil.copytree(run.artifacts / name, into, dirs_exist_ok=True)
    else:
        assert action in {"actions/checkout", "actions/setup-python", "docker/setup-buildx-action",
                          "docker/setup-qemu-action", "docker/login-action"}, action


def every_run_step(workflow: str) -> set:
    return {(workflow, job_name, step["name"]) for job_name, job in load(workflow)["jobs"].items()
            for step in job["steps"] if "run" in step}


def parse_only_shim(folder: Path) -> Path:
    folder.mkdir()
    (folder / "gobuild").write_text(f'#!/bin/sh\nexec {BIN}/gobuild "$@" --help\n')
    (folder / "gobuild").chmod(0o755)
    return folder


# --- fixtures ------------------------------------------------------------------------------

def checkout(dest: Path) -> Path:
    """The working tree as actions/checkout would give it (tracked and new files, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry, docker_client):
    base = tmp_path_factory.mktemp("workflows")
    (base / "artifacts").mkdir()
    github = {"repository_owner": OWNER, "repository": f"{OWNER}/go-images",
              "server_url": "https://github.example", "sha": "c0ffee" * 6 + "c0ff",
              "ref": "refs/heads/main", "actor": "someone"}
    yield Run(base=base, artifacts=base / "artifacts", github=github,
              env_overrides={"REGISTRY_HOST": registry}, shim=parse_only_shim(base / "shim"))
    # The local names of what was pushed and pulled in this namespace; the images stay.
    prefix = f"{registry}/{OWNER.lower()}/"
    for image in docker_client.images.list():
        for ref in image.tags + image.attrs.get("RepoDigests", []):
            if ref.startswith(prefix):  # docker-py cannot untag NAME@DIGEST: the CLI can
                subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)
    left = [ref for image in docker_client.images.list()
            for ref in image.tags + image.attrs.get("RepoDigests", []) if ref.startswith(prefix)]
    assert left == []


@pytest.fixture(scope="module")
def published(run, registry, bases):
    """images.yml: matrix, a build job per platform, the merge job, a verify job per platform
    (the build jobs build the newest Go's slim images where this machine has none yet)."""
    inputs = {"go": GO, "variant": VARIANT, "platforms": PLATFORMS, "emulate": False}
    matrix = run_job(run, "images.yml", "matrix", inputs=inputs)
    entries = json.loads(matrix["matrix"])["include"]
    for entry in entries:
        run_job(run, "images.yml", "build", inputs=inputs, matrix=entry,
                needs={"matrix": {"outputs": matrix}})
    merge = run_job(run, "images.yml", "merge", inputs=inputs)
    for entry in entries:
        run_job(run, "images.yml", "verify", inputs=inputs, matrix=entry,
                needs={"matrix": {"outputs": matrix}, "merge": {"outputs": merge}})
    return entries, json.loads(merge["joined"])


def test_images_workflow_publishes_per_platform_joins_the_digests_and_pulls_them_back(
        published, run, registry, docker_client):
    entries, joined = published
    assert [(e["platform"], e["runner"]) for e in entries] == [
        ("linux/amd64", "ubuntu-24.04"), ("linux/arm64", "ubuntu-24.04-arm")]
    ns = f"{registry}/{OWNER.lower()}"
    # each runner's digests file, as the merge job received them
    pushed = {}
    for arch in ("amd64", "arm64"):
        [entry] = json.loads((run.artifacts / f"digests-{arch}" / f"{arch}.json").read_text())
        assert entry["remote"].startswith(f"{ns}/go:") and entry["remote"].endswith(f"-slim-{arch}")
        pushed[f"linux/{arch}"] = entry["digest"]
    [index] = joined
    version = index["version"]
    assert index["tags"] == [f"{ns}/go:{version}-slim", f"{ns}/go:{index['go']}-slim"]
    assert index["manifests"] == pushed  # exactly the digests the build jobs pushed
    raw = json.loads(subprocess.run(
        ["docker", "buildx", "imagetools", "inspect", "--raw", index["tags"][1]],
        capture_output=True, text=True, check=True).stdout)
    # What join reports is what the index carries. Only an OCI index holds annotations; this
    # engine's classic image store pushes Docker v2 manifests, so join reads the sources'
    # media types, leaves --annotation out (a newer buildx refuses it for a manifest list)
    # and says so in one warning.
    assert index["annotations"] == raw.get("annotations", {})
    if raw["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json":
        said = run.stderr[("images.yml", "merge", "Join the digests")]
        [warning] = [line for line in said.splitlines() if "warning" in line]
        assert "joined without index annotations" in warning
        assert "is a application/vnd.docker.distribution.manifest.v2+json" in warning
        assert "containerd-snapshotter" in warning
    else:
        annotations = raw["annotations"]
        assert annotations["org.opencontainers.image.version"] == version
        assert annotations["org.opencontainers.image.source"] == "https://github.example/Acme-CI/go-images"
        assert annotations["org.opencontainers.image.revision"] == run.github["sha"]
        assert annotations["org.opencontainers.image.description"].startswith(f"Go {version} (slim)")
    assert {m["digest"] for m in raw["manifests"]} >= set(pushed.values())
    # the verify jobs pulled the index by its digest, for each platform
    for arch in ("amd64", "arm64"):  # by the platform's manifest in that index
        image = docker_client.images.get(f"gobuild/go:{version}-slim-{arch}")
        assert f"{ns}/go@{pushed[f'linux/{arch}']}" in image.attrs["RepoDigests"]
        assert image.attrs["Architecture"] == arch
    verify = run.stderr[("images.yml", "verify", "Pull by digest")]
    assert f"{ns}/go@{pushed['linux/arm64']} for linux/arm64" in verify
    summary = run.summaries[("images.yml", "merge", "")]
    assert index["digest"] in summary and "linux/amd64, linux/arm64" in summary


def test_ci_workflow_lint_steps_and_the_runner_matrix(run):
    outputs = run_job(run, "ci.yml", "lint", inputs={})
    entries = json.loads(outputs["matrix"])["include"]
    assert [(e["platform"], e["runner"]) for e in entries] == [
        ("linux/amd64", "ubuntu-24.04"), ("linux/arm64", "ubuntu-24.04-arm")]
    assert {("ci.yml", "lint", "Ruff"), ("ci.yml", "lint", "Check the rendered Dockerfiles")} <= run.ran


def test_bench_workflow_pulls_the_published_images_and_reports_across_platforms(published, run):
    inputs = {"cpus": "", "memory": "", "go": "", "variant": "", "platforms": "", "suite": "", "runs": ""}
    matrix = run_job(run, "bench.yml", "matrix", inputs=inputs)
    entries = json.loads(matrix["matrix"])["include"]
    assert [e["cells"] for e in entries] == [e["cells"] for e in published[0]]
    fixtures = ROOT / "tests/fixtures/benchstat/slowdown-n5"
    for entry, recorded in zip(entries, ("old", "new"), strict=True):
        # The bench step only parses here (PARSED_ONLY): the results a measured run writes
        # are a recorded results folder in its place, uploaded as that job's artifact.
        run.seed[("bench.yml", "bench", entry["arch"])] = {
            f"results/{entry['arch']}": fixtures / recorded}
        run_job(run, "bench.yml", "bench", inputs=inputs, matrix=entry,
                needs={"matrix": {"outputs": matrix}})
    run_job(run, "bench.yml", "report", inputs=inputs)
    summary = run.summaries[("bench.yml", "report", "")]
    assert "|" in summary, f"no table in the job summary:\n{summary[:2000]}"
    assert {("bench.yml", "bench", "Pull the images"), ("bench.yml", "bench", "Bench"),
            ("bench.yml", "report", "Cross-platform report")} <= run.ran


def test_the_report_job_without_bench_results_says_so(run, tmp_path):
    """Every bench job failed before its upload: the report step fails with a message that
    says so (in the log and the job summary), not with gobuild report given a bare glob."""
    empty = Run(base=tmp_path, artifacts=tmp_path / "artifacts", github=run.github,
                env_overrides=run.env_overrides, shim=run.shim)
    empty.artifacts.mkdir()
    inputs = {"cpus": "", "memory": "", "go": "", "variant": "", "platforms": "", "suite": "", "runs": ""}
    with pytest.raises(AssertionError, match="exited 1") as info:
        run_job(empty, "bench.yml", "report", inputs=inputs)
    assert "::error::No bench results to report" in str(info.value)
    summary = (tmp_path / "bench.yml-report-one" / "step-summary.md").read_text()
    assert summary.startswith("No bench results to report")


def test_every_run_step_ran_or_is_named_with_its_reason(published, run):
    """Runs last (pytest keeps file order): what the tests above ran, plus NOT_RUN, is every
    run step of the three workflows."""
    every = set().union(*(every_run_step(n) for n in ("images.yml", "ci.yml", "bench.yml")))
    assert set(NOT_RUN) <= every, "NOT_RUN names a step that no longer exists"
    assert PARSED_ONLY <= run.ran
    assert every - set(NOT_RUN) - run.ran == set()


def test_a_renamed_flag_fails_the_step(run, tmp_path):
    """The guard itself: the matrix job of a copy of images.yml whose gobuild call spells a
    flag differently fails, naming the flag."""
    text = (WORKFLOWS / "images.yml").read_text(encoding="utf-8")
    assert text.count(" --json)") == 1
    (tmp_path / "images.yml").write_text(text.replace(" --json)", " --jsn)"))
    broken = Run(base=tmp_path, artifacts=tmp_path, github=run.github,
                 env_overrides=run.env_overrides, shim=run.shim, workflows=tmp_path)
    with pytest.raises(AssertionError, match="No such option '--jsn'"):
        run_job(broken, "images.yml", "matrix", inputs={"go": GO, "variant": VARIANT, "platforms": PLATFORMS, "emulate": False})


def test_gobuild_is_the_installed_one():
    assert gobuild("--version").stdout.startswith("gobuild")
