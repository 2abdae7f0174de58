"""The commands as a user meets them: exit codes, one-line errors, nothing half-written."""
import json
import shutil
import subprocess
import sys

import pytest


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_help_has_examples(cli):
    for cmd in ("matrix", "lock", "render", "images", "pull", "join", "doctor", "base"):
        result = cli(cmd, "--help")
        assert result.exit_code == 0, cmd
        assert "Examples" in result.output, cmd


def test_matrix_lists_identifiers_and_json(cli, project):
    result = cli("matrix", "--platform", "linux/arm64", "--variant", "slim")
    assert result.exit_code == 0
    assert result.output.split() == [
        f"go{v}-slim-linux-arm64" for v in ("1.21", "1.22", "1.23", "1.26", "1.27")
    ]
    data = json.loads(cli("matrix", "--go", "1.22", "--json").output)
    assert {d["id"] for d in data} == {  # arm/v6: slim only (no Debian variant)
        "go1.22-bookworm-linux-amd64", "go1.22-bookworm-linux-arm64", "go1.22-bookworm-linux-arm-v7",
        "go1.22-slim-linux-amd64", "go1.22-slim-linux-arm64", "go1.22-slim-linux-arm-v7",
        "go1.22-slim-linux-arm-v6",
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


def test_render_check_reads_the_template_of_the_project_it_was_started_in(cli, project, root):
    """The defaults agree: with a templates/ folder in the project, an edit there is what
    render --check compares with, not the packaged template."""
    assert cli("render").exit_code == 0
    shutil.copytree(root / "templates", project / "templates")
    assert cli("render", "--check").exit_code == 0
    tpl = project / "templates" / "Dockerfile.j2"
    tpl.write_text(tpl.read_text().replace("WORKDIR /go", "WORKDIR /src"))
    (project / "sub").mkdir()
    import os
    os.chdir(project / "sub")  # the project is found from below too (monkeypatch restores cwd)
    result = cli("render", "--check")
    assert result.exit_code == 1 and "+WORKDIR /src" in result.output


def squeeze(text: str) -> str:
    """Help text without its wrapping (click breaks long paths at hyphens)."""
    return "".join(text.split())


def test_help_and_doctor_name_the_folder_the_inputs_come_from(cli, project, tmp_path_factory,
                                                             monkeypatch):
    from builder import doctor
    from builder.inputs import PACKAGED_TEMPLATES, defaults

    here = project.resolve()
    result = squeeze(cli("--help").output)
    assert squeeze(f"project folder {here}") in result
    assert squeeze(str(here / "images" / "matrix.yaml")) in result
    help_text = squeeze(cli("render", "--help").output)
    assert squeeze(f"[default: {here / 'images' / 'matrix.yaml'}, the project folder]") in help_text
    # this project has no templates/: the packaged template, said so
    assert squeeze(f"[default: {PACKAGED_TEMPLATES}, the project folder]") in help_text
    report = doctor.Report(checks=[], inputs=defaults())
    assert report.as_json()["inputs"]["project"] == str(here)
    assert f"the project folder {here} (no templates/ there: the packaged template)" in report.text()
    monkeypatch.chdir(tmp_path_factory.mktemp("nowhere"))  # no images/matrix.yaml above
    assert "packageddefaults" in squeeze(cli("--help").output)
    assert doctor.Report(checks=[], inputs=defaults()).as_json()["inputs"]["project"] is None


def test_doctor_json_names_the_inputs_without_a_daemon(tmp_path, project):
    import os
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no.sock", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "builder.cli", "doctor", "--json"], capture_output=True, text=True,
        env={**os.environ, **env}, cwd=project, check=False,
    )
    assert proc.returncode == 5
    data = json.loads(proc.stdout)
    assert data["inputs"]["project"] == str(project.resolve())
    assert data["inputs"]["matrix"] == str(project.resolve() / "images" / "matrix.yaml")


def test_an_unexpected_error_has_its_own_exit_code_not_the_check_failed_one(cli, project,
                                                                            monkeypatch):
    from builder import matrix
    from builder.errors import CheckFailed, UnexpectedError

    def broken(path):
        raise RuntimeError("a bug")

    monkeypatch.setattr(matrix, "load_matrix", broken)
    result = cli("matrix")
    assert result.exit_code == UnexpectedError.exit_code == 70 != CheckFailed.exit_code
    assert "unexpected error: RuntimeError: a bug (run with --debug" in result.output
    with pytest.raises(RuntimeError):
        cli("--debug", "matrix")


def test_no_join_needs_push(cli, project):
    result = cli("images", "--no-join", "--registry", "localhost:5000/x")
    assert result.exit_code == 2 and "--no-join only applies to --push" in result.output
