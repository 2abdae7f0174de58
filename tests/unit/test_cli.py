"""The commands as a user meets them: exit codes, one-line errors, nothing half-written."""
import json
import shutil
import subprocess
import sys

import pytest


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_help_has_examples(cli):
    for cmd in ("matrix", "lock", "render", "images", "pull", "doctor", "base"):
        result = cli(cmd, "--help")
        assert result.exit_code == 0, cmd
        assert "Examples" in result.output or cmd == "doctor", cmd


def test_matrix_lists_identifiers_and_json(cli, project):
    result = cli("matrix", "--platform", "linux/arm64", "--variant", "slim")
    assert result.exit_code == 0
    assert result.output.split() == [
        f"go{v}-slim-linux-arm64" for v in ("1.21", "1.22", "1.23", "1.26", "1.27")
    ]
    data = json.loads(cli("matrix", "--go", "1.22", "--json").output)
    assert {d["id"] for d in data} == {
        "go1.22-bookworm-linux-amd64", "go1.22-bookworm-linux-arm64",
        "go1.22-slim-linux-amd64", "go1.22-slim-linux-arm64",
    }


def run_cli(*args, cwd):
    """The installed console script in a subprocess: what a user's shell sees."""
    exe = shutil.which("gobuild", path=str(__import__("pathlib").Path(sys.executable).parent))
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    "edit, args, needle",
    [
        (None, ["matrix", "--platform", "linux/sparc64"], "linux/sparc64"),
        (("platforms:", "platfroms:"), ["matrix"], "did you mean 'platforms'?"),
        (('- "1.22"', '- "1.22\\nRUN rm -rf /"'), ["render"], "invalid Go version"),
        (('- "1.22"', '- "1.22\\nRUN rm -rf /"'), ["lock"], "invalid Go version"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(project, edit, args, needle):
    matrix = project / "images" / "matrix.yaml"
    if edit:
        matrix.write_text(matrix.read_text().replace(*edit, 1))
    before = files_under(project)
    proc = run_cli(*args, cwd=project)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert files_under(project) == before


def test_render_twice_is_byte_identical_and_check_sees_template_edits(cli, project, root):
    assert cli("render").exit_code == 0
    first = {p: p.read_bytes() for p in (project / "images").rglob("*") if p.is_file()}
    result = cli("render")
    assert "0 files changed" in result.output
    assert first == {p: p.read_bytes() for p in (project / "images").rglob("*") if p.is_file()}
    assert cli("render", "--check").exit_code == 0
    shutil.copytree(root / "templates", project / "templates")
    tpl = project / "templates" / "Dockerfile.j2"
    tpl.write_text(tpl.read_text().replace("GOPATH=/go", "GOPATH=/gopath"))
    result = cli("render", "--check", "--templates", str(project / "templates"))
    assert result.exit_code == 1
    assert "+    GOPATH=/gopath" in result.output
    assert first == {p: p.read_bytes() for p in (project / "images").rglob("*") if p.is_file()}


def test_missing_lock_names_the_fix(cli, project):
    (project / "images" / "lock.json").unlink()
    result = cli("render")
    assert result.exit_code == 2 and "run 'gobuild lock'" in result.output


def test_doctor_without_a_daemon_says_so_and_names_the_fix(tmp_path):
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no.sock", "PATH": "/usr/bin:/bin"}
    import os
    proc = subprocess.run(
        [sys.executable, "-m", "builder.cli", "doctor"], capture_output=True, text=True,
        env={**os.environ, **env}, check=False,
    )
    assert proc.returncode == 5
    assert "MISSING engine" in proc.stdout and "no daemon" in proc.stdout
    assert "fix: make setup" in proc.stdout


def test_images_push_without_registry_is_a_usage_error(cli, project):
    result = cli("images", "--push")
    assert result.exit_code == 2 and "--push needs --registry" in result.output
    result = cli("images", "--registry", "Not A Registry")
    assert result.exit_code == 2 and "is not HOST/NAMESPACE" in result.output
