"""The one rule that finds the matrix, the lock and the templates."""
from __future__ import annotations

from pathlib import Path

import pytest

from builder import inputs
from builder.errors import ConfigError
from builder.inputs import Inputs, defaults, find_project


def make_project(folder: Path, templates: bool = True) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "matrix.yaml").write_text("go: ['1.22']\n")
    if templates:
        (folder / "templates").mkdir()
        (folder / "templates" / "Dockerfile.j2").write_text("FROM scratch\n")
    return folder


def test_the_project_is_found_by_walking_up_and_gives_all_three(tmp_path):
    project = make_project(tmp_path / "checkout")
    deep = project / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project(deep) == project.resolve()
    found = defaults(deep)
    assert found.project == project.resolve()
    assert found.matrix.resolve() == project.resolve() / "images" / "matrix.yaml"
    assert found.lock.resolve() == project.resolve() / "images" / "lock.json"
    assert found.templates.resolve() == project.resolve() / "templates"
    assert found.templates != inputs.PACKAGED_TEMPLATES
    assert "project folder" in found.source


def test_paths_inside_the_current_directory_stay_relative(tmp_path, monkeypatch):
    project = make_project(tmp_path)
    monkeypatch.chdir(project)
    found = defaults()
    assert found.matrix == Path("images/matrix.yaml") and found.templates == Path("templates")


def test_paths_found_from_another_folder_are_absolute(tmp_path):
    project = make_project(tmp_path)  # the process's directory is elsewhere
    found = defaults(project)
    assert found.matrix == project.resolve() / "images" / "matrix.yaml"
    assert found.matrix.is_file() and (found.templates / "Dockerfile.j2").is_file()


def test_a_templates_folder_without_the_template_falls_back_to_the_packaged_one(tmp_path):
    project = make_project(tmp_path, templates=False)
    (project / "templates").mkdir()  # someone else's templates/
    assert defaults(project).templates == inputs.PACKAGED_TEMPLATES


def test_a_project_without_templates_uses_the_packaged_template_and_says_so(tmp_path):
    project = make_project(tmp_path, templates=False)
    found = defaults(project)
    assert found.project == project.resolve()
    assert found.matrix == project.resolve() / "images" / "matrix.yaml"
    assert found.templates == inputs.PACKAGED_TEMPLATES
    assert "packaged template" in found.source


def test_outside_a_project_everything_is_packaged(tmp_path):
    found = defaults(tmp_path)
    assert found.project is None
    assert (found.matrix, found.lock, found.templates) == (
        inputs.PACKAGED_MATRIX, inputs.PACKAGED_MATRIX.parent / "lock.json",
        inputs.PACKAGED_TEMPLATES)
    assert (found.templates / "Dockerfile.j2").is_file() and found.matrix.is_file()
    assert found.as_json()["project"] is None


def test_explicit_options_win_each_on_its_own(tmp_path):
    project = make_project(tmp_path / "p")
    other = tmp_path / "other" / "m.yaml"
    got = Inputs.resolve(matrix_path=other, cwd=project)
    assert got.matrix_path == other and got.lock_path == other.parent / "lock.json"
    assert got.templates == project.resolve() / "templates"  # still the project's
    got = Inputs.resolve(templates=tmp_path / "t", lock_path=tmp_path / "l.json", cwd=project)
    assert got.matrix_path == project.resolve() / "images" / "matrix.yaml"
    assert (got.templates, got.lock_path) == (tmp_path / "t", tmp_path / "l.json")


def test_nothing_is_written_into_the_installed_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no project above
    got = Inputs.resolve()
    with pytest.raises(ConfigError, match="no project folder here.*--out DIR"):
        got.writable(got.matrix_path.parent, "--out DIR")
    assert got.writable(tmp_path / "out", "--out DIR") == tmp_path / "out"
