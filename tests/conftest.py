"""Shared fixtures: the project's paths and a CLI runner."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def cli():
    """Invoke `gobuild ARGS...` in-process; returns click's Result."""
    from builder.cli import main

    runner = CliRunner()

    def invoke(*args: str, **kw):
        return runner.invoke(main, list(args), catch_exceptions=False, **kw)

    return invoke


@pytest.fixture
def project(tmp_path, root, monkeypatch) -> Path:
    """A copy of the project's matrix and lock in a temp folder, used as the working directory."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("matrix.yaml", "lock.json"):
        (images / name).write_bytes((root / "images" / name).read_bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path
