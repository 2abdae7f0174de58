"""gobuild installed as a user installs it (pip install ., not editable) and run in a checkout:
the matrix, the lock and the templates all come from the checkout, so an edit to the
checkout's template is what render --check sees. No engine needed; pip reads nothing from the
network but the build backend (the dependencies come from this project's virtualenv)."""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

SKIP = shutil.ignore_patterns(".git", ".venv", "results", "build", "*.egg-info", "__pycache__",
                              ".pytest_cache", ".ruff_cache")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtualenv with gobuild installed from a copy of this checkout, not editable."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=SKIP)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies (and setuptools to build with) come from this interpreter's packages; a
    # plain path line in a .pth does not run the editable finder of this project's virtualenv.
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps",
                           str(source)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    where = subprocess.run([str(py), "-c", "import builder; print(builder.__file__)"],
                           capture_output=True, text=True, check=True, cwd=work).stdout.strip()
    assert where.startswith(purelib), f"not the installed copy: {where}"
    # A checkout of the project, elsewhere, as a new user would have it.
    checkout = work / "checkout"
    shutil.copytree(ROOT, checkout, symlinks=True, ignore=SKIP)
    return venv / "bin" / "gobuild", checkout, Path(where).parent


def gobuild(exe: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True,
                          env=env, check=False, timeout=300)


def test_render_check_in_a_checkout_sees_an_edit_to_the_checkout_template(installed):
    exe, checkout, package = installed
    assert not (package / "templates").is_symlink()  # a real copy, as pip install . makes it
    ok = gobuild(exe, "render", "--check", cwd=checkout)
    assert ok.returncode == 0, ok.stderr
    tpl = checkout / "templates" / "Dockerfile.j2"
    original = tpl.read_text()
    tpl.write_text(original.replace("WORKDIR /go", "WORKDIR /src"))
    try:
        for where in (checkout, checkout / "images"):  # from the top, and from below it
            proc = gobuild(exe, "render", "--check", cwd=where)
            assert proc.returncode == 1, (proc.stdout[-500:], proc.stderr)
            assert "+WORKDIR /src" in proc.stdout
            assert "differ from what the template renders" in proc.stderr
    finally:
        tpl.write_text(original)


def test_help_and_doctor_name_the_checkout_and_outside_it_the_package(installed, tmp_path):
    exe, checkout, package = installed

    def squeeze(text: str) -> str:  # help wraps long paths
        return "".join(text.split())

    assert squeeze(f"project folder {checkout.resolve()}") in squeeze(
        gobuild(exe, "--help", cwd=checkout).stdout)
    doctor = json.loads(gobuild(exe, "doctor", "--json", cwd=checkout).stdout)
    assert doctor["inputs"] == {
        "project": str(checkout.resolve()),
        "matrix": str(checkout.resolve() / "images" / "matrix.yaml"),
        "lock": str(checkout.resolve() / "images" / "lock.json"),
        "templates": str(checkout.resolve() / "templates"),
    }
    outside = json.loads(gobuild(exe, "doctor", "--json", cwd=tmp_path).stdout)["inputs"]
    assert outside["project"] is None
    assert outside["templates"] == str(package / "templates")
    assert outside["matrix"] == str(package / "data" / "matrix.yaml")
    assert gobuild(exe, "matrix", "--go", "1.22", cwd=tmp_path).returncode == 0
