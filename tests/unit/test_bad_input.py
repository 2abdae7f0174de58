"""Hostile and malformed input, command by command: one table.

Each case edits a copy of the project (matrix, lock, a results folder, a workload), runs one
command in-process, and checks what a user sees: exit code of the error's class (2: bad input),
ONE line on stderr naming the culprit, no traceback, and nothing written or changed under the
project, the cache ($XDG_CACHE_HOME) and the output folders. The engine is unreachable
(DOCKER_HOST points at a socket that does not exist): input must be refused before anything
talks to an engine, a registry or the network, else the case sees exit 5, not 2. A few rows
show the other classes' codes (3 a source, 5 the engine, 7 a registry: dead loopback ports).
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
RUN_FIXTURE = ROOT / "tests" / "fixtures" / "runs" / "go1.22-slim-amd64"
BAD_INPUT = 2


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    needle: str  # what the one line must name (the culprit)
    setup: Callable[[Path], None] = field(default=lambda project: None)
    code: int = BAD_INPUT


def edit(name: str, old: str, new: str) -> Callable[[Path], None]:
    """Replace old by new (once) in images/<name>; old must be there."""
    def apply(project: Path) -> None:
        path = project / "images" / name
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new, 1))
    return apply


def block(name: str, key: str, new: str) -> Callable[[Path], None]:
    """Replace the whole top-level block `key:` of images/<name> (its line and the indented
    lines under it, comments included) by new; the block must be there."""
    def apply(project: Path) -> None:
        path = project / "images" / name
        text = path.read_text()
        pattern = re.compile(rf"^{re.escape(key)}:[^\n]*\n(?:[ \t][^\n]*\n)*", re.MULTILINE)
        assert len(pattern.findall(text)) == 1, (name, key)
        path.write_text(pattern.sub(lambda match: new, text))
    return apply


def write(name: str, text: str) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    return apply


def go_version(value: str) -> Callable[[Path], None]:
    """The matrix's "1.22" replaced by value (a YAML double-quoted scalar: escapes work)."""
    return edit("matrix.yaml", '- "1.22"', f'- "{value}"')


def lock_field(field_name: str, value) -> Callable[[Path], None]:
    """One field of the 1.22 amd64 file in the lock set to value."""
    def apply(project: Path) -> None:
        path = project / "images" / "lock.json"
        data = json.loads(path.read_text())
        data["go"]["1.22"]["files"]["amd64"][field_name] = value
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return apply


def lock_release(field_name: str, value) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        path = project / "images" / "lock.json"
        data = json.loads(path.read_text())
        data["go"]["1.22"][field_name] = value
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return apply


def results(text_of: Callable[[str], str]) -> Callable[[Path], None]:
    """A results folder run/ whose results.json is text_of(the fixture's results.json); a
    second, intact one in good/ for compare."""
    def apply(project: Path) -> None:
        for name in ("run", "good"):
            shutil.copytree(RUN_FIXTURE, project / name)
        path = project / "run" / "results.json"
        path.write_text(text_of(path.read_text()))
    return apply


def future_schema(text: str) -> str:
    data = json.loads(text)
    data["schema"] = "gobuild.bench/v99"
    return json.dumps(data)


BENCH = ("bench", "--image", "gobuild/go:1.22.10-slim-amd64", "--output", "out")
RENDER_22 = ("render", "--go", "1.22")
IMAGES_22 = ("images", "--go", "1.22", "--platform", "linux/amd64", "--variant", "slim")

CASES = [
    # --- the matrix file
    Case("yaml-malformed", ("matrix",), "not valid YAML at line",
         write("images/matrix.yaml", "go: [\"1.22\"\nplatforms: {\n")),
    Case("yaml-tab-indent", ("matrix",), "not valid YAML",
         write("images/matrix.yaml", "go:\n\t- \"1.22\"\n")),
    Case("matrix-empty-file", ("matrix",), "must be a mapping", write("images/matrix.yaml", "")),
    Case("matrix-a-list", ("matrix",), "must be a mapping", write("images/matrix.yaml", "- 1\n- 2\n")),
    Case("matrix-empty-go", ("matrix",), "'go' is missing or empty",
         edit("matrix.yaml", 'go:\n  - "1.21"\n  - "1.22"\n  - "1.23"\n  - "1.26"\n  - "1.27"',
              "go: []")),
    Case("matrix-empty-variants", ("render",), "'variants' is missing or empty",
         write("images/matrix.yaml", 'go: ["1.22"]\nplatforms: [linux/amd64]\nvariants: {}\n')),
    Case("unknown-top-key", ("matrix",), "did you mean 'platforms'?",
         edit("matrix.yaml", "platforms:", "platfroms:")),
    Case("unknown-variant-key", ("matrix",), "unknown key 'packges'",
         edit("matrix.yaml", "packages:", "packges:")),
    Case("go-not-a-list", ("matrix",), "'go' must be a list",
         write("images/matrix.yaml", 'go: "1.22"\nplatforms: [linux/amd64]\n'
               "variants: {slim: {kind: slim}}\n")),
    Case("platforms-a-mapping", ("matrix",), "'platforms' must be a list",
         block("matrix.yaml", "platforms", "platforms:\n  linux: amd64\n")),
    Case("variants-a-list", ("matrix",), "'variants' must be a mapping",
         write("images/matrix.yaml", 'go: ["1.22"]\nplatforms: [linux/amd64]\nvariants: [slim]\n')),
    Case("go-unquoted-float", ("matrix",), "must be quoted", edit("matrix.yaml", '- "1.22"', "- 1.20")),
    Case("go-a-mapping", ("matrix",), "invalid Go version", edit("matrix.yaml", '- "1.22"', "- {a: 1}")),
    Case("go-with-space", ("matrix",), "invalid Go version", go_version("1.22 ")),
    Case("go-with-inner-space", ("render",), "invalid Go version", go_version("1 .22")),
    Case("go-with-newline", ("render",), "invalid Go version", go_version("1.22\\nRUN rm -rf /")),
    Case("go-with-command-substitution", ("render",), "invalid Go version", go_version("1.22$(id)")),
    Case("go-with-backticks", ("lock",), "invalid Go version", go_version("1.22`id`")),
    Case("go-with-quotes", ("render",), "invalid Go version", go_version("1.22\\\" LABEL x=\\\"y")),
    Case("go-with-path-separator", ("render",), "invalid Go version", go_version("1.22/../../etc")),
    Case("go-300-characters", ("render",), "invalid Go version", go_version("1." + "2" * 298)),
    Case("go-duplicate-minor", ("matrix",), "same minor release", go_version("1.21.13")),
    Case("platform-unknown-in-file", ("matrix",), "unknown platform 'linux/sparc64'",
         edit("matrix.yaml", "- linux/arm64", "- linux/sparc64")),
    Case("platform-duplicate", ("matrix",), "duplicate platform",
         edit("matrix.yaml", "- linux/arm64", "- linux/amd64")),
    Case("variant-kind-unknown", ("matrix",), "is not a variant kind",
         edit("matrix.yaml", "kind: slim", "kind: alpine")),
    Case("variant-name-uppercase", ("matrix",), "invalid variant name", edit("matrix.yaml", "slim:", "Slim:")),
    Case("variant-base-injection", ("render",), "invalid image reference",
         edit("matrix.yaml", "base: debian:bookworm-slim", 'base: "debian:bookworm-slim\\nRUN id"')),
    Case("variant-package-injection", ("render",), "Debian package names",
         edit("matrix.yaml", "libc6-dev]", "libc6-dev, \"gcc; curl x | sh\"]")),
    Case("variant-description-newline", ("render",), "must be one line",
         edit("matrix.yaml", "description: Debian", 'description: "a\\nRUN id" #')),
    Case("variant-packages-a-string", ("matrix",), "Debian package names",
         edit("matrix.yaml", "packages: [ca-certificates, git, gcc, libc6-dev]", "packages: git")),
    # --- selectors
    Case("select-go-matches-nothing", ("matrix", "--go", "9.99"), "--go '9.99' matches no Go version"),
    Case("select-go-with-newline", ("render", "--go", "1.22\nRUN id"), "matches no Go version"),
    Case("select-unknown-platform", ("matrix", "--platform", "linux/sparc64"), "linux/sparc64"),
    Case("select-platform-typo", ("matrix", "--platform", "linux/amd46"), "did you mean 'linux/amd64'?"),
    Case("select-unknown-variant", ("matrix", "--variant", "alpine"), "no variant 'alpine'"),
    Case("select-platform-not-in-matrix", ("matrix", "--platform", "linux/arm64"),
         "'linux/arm64' is not in", edit("matrix.yaml", "  - linux/arm64\n", "")),
    # --- the lock
    Case("lock-not-json", RENDER_22, "lock.json", write("images/lock.json", "{not json")),
    Case("lock-truncated", RENDER_22, "lock.json",
         lambda p: (p / "images" / "lock.json").write_text((p / "images" / "lock.json").read_text()[:300])),
    Case("lock-future-schema", RENDER_22, "lock schema 99",
         write("images/lock.json", json.dumps({"schema": 99, "go": {}}))),
    Case("lock-sha256-not-hex", RENDER_22, "is not 64 hex digits", lock_field("sha256", "z" * 64)),
    Case("lock-sha256-short", RENDER_22, "is not 64 hex digits", lock_field("sha256", "abc")),
    Case("lock-url-file-passwd", IMAGES_22, "file:///etc/passwd", lock_field("url", "file:///etc/passwd")),
    Case("lock-url-plain-http", IMAGES_22, "--allow-http",
         lock_field("url", "http://dl.example/go1.22.10.linux-amd64.tar.gz")),
    Case("lock-url-with-newline", RENDER_22, "invalid URL",
         lock_field("url", "https://x.example/a\nRUN id")),
    Case("lock-filename-path-separator", RENDER_22, "invalid URL or file name",
         lock_field("filename", "../../etc/passwd")),
    Case("lock-version-injection", RENDER_22, "invalid Go release",
         lock_release("version", "1.22.10\nRUN id")),
    Case("lock-unknown-arch", RENDER_22, "unknown architecture",
         lambda p: lock_release("files", {"sparc64": json.loads(
             (p / "images" / "lock.json").read_text())["go"]["1.22"]["files"]["amd64"]})(p)),
    Case("lock-missing-field", RENDER_22, "lock.json", lock_release("files", {"amd64": {"url": "https://x"}})),
    Case("lock-size-a-string", RENDER_22, "size", lock_field("size", "big")),
    # --- bench options
    Case("cpus-zero", (*BENCH, "--cpus", "0"), "--cpus '0'"),
    Case("cpus-negative", (*BENCH, "--cpus", "-1"), "--cpus '-1'"),
    Case("cpus-word", (*BENCH, "--cpus", "abc"), "--cpus 'abc'"),
    Case("cpus-exponent", (*BENCH, "--cpus", "1e9"), "--cpus '1e9'"),
    Case("cpus-nan", (*BENCH, "--cpus", "nan"), "--cpus 'nan'"),
    Case("cpus-inf", (*BENCH, "--cpus", "inf"), "--cpus 'inf'"),
    Case("cpus-huge", (*BENCH, "--cpus", "100000"), "--cpus '100000'"),
    Case("memory-unknown-unit", (*BENCH, "--memory", "2q"), "--memory '2q'"),
    Case("memory-one-byte", (*BENCH, "--memory", "1"), "below the engine's minimum"),
    Case("memory-negative", (*BENCH, "--memory", "-2g"), "--memory '-2g'"),
    Case("memory-huge", (*BENCH, "--memory", "99999999999g"), "--memory '99999999999g'"),
    Case("gomaxprocs-zero-negative", (*BENCH, "--gomaxprocs", "0,-1"), "--gomaxprocs '0,-1'"),
    Case("gomaxprocs-word", (*BENCH, "--gomaxprocs", "two"), "--gomaxprocs 'two'"),
    Case("runs-zero", (*BENCH, "--runs", "0"), "--runs"),
    Case("cpuset-garbage", (*BENCH, "--cpuset", "0-;rm"), "--cpuset '0-;rm'"),
    Case("image-reference-injection", ("bench", "--image", "a b\nc", "--output", "out"),
         "--image 'a b\\nc'"),
    Case("output-is-a-file", ("bench", "--image", "gobuild/go:1.22.10-slim-amd64", "--output", "afile"),
         "'afile' is a file", write("afile", "x")),
    Case("output-not-writable", ("bench", "--image", "gobuild/go:1.22.10-slim-amd64",
                                 "--output", "/proc/sys/gobuild-results"), "is not writable"),
    Case("workload-not-a-module", (*BENCH, "--workload", "notamodule"), "no go.mod",
         write("notamodule/main.go", "package main\n")),
    Case("workload-missing", (*BENCH, "--workload", "nowhere"), "nowhere"),
    # --- run
    Case("run-cpus-word", ("run", "--cpus", "abc", "--", "go", "version"), "--cpus 'abc'"),
    Case("run-memory-unit", ("run", "--memory", "2q", "--", "go", "version"), "--memory '2q'"),
    # --- report and compare of results.json
    Case("report-truncated", ("report", "run"), "results.json", results(lambda t: t[: len(t) // 2])),
    Case("report-not-json", ("report", "run"), "results.json", results(lambda t: "<html>oops</html>")),
    Case("report-future-schema", ("report", "run"), "upgrade gobuild", results(future_schema)),
    Case("report-a-list", ("report", "run"), "results.json", results(lambda t: "[1, 2]")),
    Case("compare-truncated", ("bench", "compare", "good", "run"), "results.json",
         results(lambda t: t[: len(t) // 2])),
    Case("compare-not-json", ("bench", "compare", "good", "run"), "results.json",
         results(lambda t: "not json at all")),
    Case("compare-future-schema", ("bench", "compare", "good", "run"), "upgrade gobuild",
         results(future_schema)),
    Case("compare-missing-folder", ("bench", "compare", "good", "nowhere"), "nowhere",
         results(lambda t: t)),
    # --- registries
    Case("registry-uppercase", ("images", "--push", "--registry", "Registry.example/Acme"),
         "--registry 'Registry.example/Acme'"),
    Case("registry-with-scheme", ("images", "--push", "--registry", "https://registry.example/acme"),
         "--registry 'https://registry.example/acme'"),
    Case("registry-no-namespace", ("images", "--push", "--registry", "localhost:5000"),
         "is not HOST/NAMESPACE"),
    Case("pull-registry-uppercase", ("pull", "--registry", "GHCR.io/acme", "--go", "1.22"),
         "--registry 'GHCR.io/acme'"),
    Case("join-registry-scheme", ("join", "--registry", "http://localhost:5000/x", "--go", "1.22"),
         "--registry 'http://localhost:5000/x'"),
    Case("pull-digest-not-hex", ("pull", "--registry", "localhost:5000/x", "--go", "1.22",
                                 "--variant", "slim", "--digest", "sha256:xyz"), "--digest"),
    # --- render and lock options
    Case("render-out-is-a-file", ("render", "--out", "afile"), "afile", write("afile", "x")),
    Case("lock-mirror-file-url", ("lock", "--source", "mirror", "--mirror", "file:///etc/"),
         "--mirror 'file:///etc/'"),
    Case("lock-mirror-plain-http", ("lock", "--source", "mirror", "--mirror", "http://mirror.example/go/"),
         "--allow-http"),
    # --- URLs that pass for loopback, or hide something (the host is urlsplit's, as requests's)
    Case("lock-url-query-at-loopback", IMAGES_22, "is plain http",
         lock_field("url", "http://evil.example?@localhost/go.tgz")),
    Case("lock-url-fragment-at-loopback", IMAGES_22, "is plain http",
         lock_field("url", "http://evil.example#@127.0.0.1/go.tgz")),
    Case("lock-url-user-info", IMAGES_22, "no plain host", lock_field("url", "https://u:pw@dl.example/go.tgz")),
    Case("lock-url-nul", RENDER_22, "invalid URL", lock_field("url", "https://dl.example/go\u0000.tgz")),
    Case("lock-mirror-user-info", ("lock", "--source", "mirror", "--mirror", "http://x@localhost/dl/"),
         "no plain host"),
    # --- limits the kernel refuses only once the engine created the container (and volumes)
    Case("cpus-below-the-cfs-floor", (*BENCH, "--cpus", "0.0001"), "--cpus '0.0001'"),
    Case("run-cpus-below-the-cfs-floor", ("run", "--cpus", "0.001", "--", "go", "version"), "--cpus '0.001'"),
    Case("shell-cpus-nan", ("shell", "--cpus", "nan"), "--cpus 'nan'"),
    # --- a selector matching nothing, on commands that ask the engine for unset selectors
    Case("run-go-matches-nothing", ("run", "--go", "9.99", "--", "go", "version"), "--go '9.99' matches no"),
    Case("shell-variant-matches-nothing", ("shell", "--variant", "alpine"), "no variant 'alpine'"),
    Case("bench-go-matches-nothing", ("bench", "--go", "9.99", "--output", "out"), "--go '9.99' matches no"),
    Case("fit-variant-matches-nothing", ("fit", "--variant", "alpine"), "no variant 'alpine'"),
    # --- fit names its own options
    Case("fit-max-unit", ("fit", "--max", "2q", "--", "go", "version"), "--max '2q'"),
    Case("fit-min-below-the-minimum", ("fit", "--min", "1"), "--min 1 is below"),
    Case("fit-cpus-word", ("fit", "--cpus", "two"), "--cpus 'two'"),
    # --- base, cache, ci, doctor
    Case("base-unknown-platform", ("base", "--platform", "linux/sparc64"), "'linux/sparc64'"),
    Case("cache-prune-nan", ("cache", "prune", "--older-than", "nan"), "--older-than 'nan'"),
    Case("ci-matrix-go-matches-nothing", ("ci", "matrix", "--go", "9.99"), "--go '9.99' matches no"),
    Case("doctor-host-unknown-scheme", ("doctor", "--host", "x=ftp://a"), "unknown scheme ftp://"),
    # --- other classes, each its own code: a source, the engine, a registry (dead loopback ports)
    Case("source-unreachable", ("lock", "--source", "mirror", "--mirror", "http://127.0.0.1:9/dl/"),
         "cannot read the Go download index", code=3),
    Case("engine-unreachable", ("run", "--", "go", "version"), "no Docker engine answers", code=5),
    Case("registry-unreachable", ("join", "--registry", "127.0.0.1:9/x", "--go", "1.22",
                                  "--platform", "linux/amd64", "--variant", "slim"),
         "cannot read 127.0.0.1:9/x/go:1.22.10-slim-amd64", code=7),
]


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under folder -> its content's sha256 and mtime (folders: 'dir')."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_dir():
            out[key] = "dir"
        else:
            out[key] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {path.stat().st_mtime_ns}"
    return out


def test_the_table_is_large_and_its_ids_unique():
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.code for c in CASES} >= {2, 3, 5, 7}  # a distinct code per class


def test_every_command_has_a_row():
    from builder.cli import main

    commands = {name for name, cmd in main.commands.items() if not getattr(cmd, "hidden", False)}
    assert commands - {c.args[0] for c in CASES} == set()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, monkeypatch):
    from builder.cli import main

    project = tmp_path / "project"
    (project / "images").mkdir(parents=True)
    for name in ("matrix.yaml", "lock.json"):
        shutil.copy(ROOT / "images" / name, project / "images" / name)
    (tmp_path / "cache").mkdir()
    monkeypatch.chdir(project)
    case.setup(project)
    before = snapshot(tmp_path)
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "GOBUILD_PYPI_INDEX": "http://127.0.0.1:9/simple/",  # nothing reachable
           "GOBUILD_GODEV_URL": "http://127.0.0.1:9/dl/"}
    result = CliRunner().invoke(main, list(case.args), env=env)

    assert result.exit_code == case.code, (result.exit_code, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exc_info
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert case.needle in lines[0], lines[0]
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert snapshot(tmp_path) == before
