"""The Python floor pyproject promises (requires-python) holds for the code we ship and test.

Only Python 3.11 runs here, so nothing executes on the floor itself; vermin reads the sources
and names every construct and standard-library API newer than the floor (typing.Self in 3.11,
tomllib, StrEnum, datetime.UTC, ExceptionGroup, except*, asyncio.TaskGroup...).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def floor() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    requires = re.search(r'^requires-python = ">=(3\.\d+)"$', text, re.MULTILINE).group(1)
    target = re.search(r'^target-version = "py3(\d+)"$', text, re.MULTILINE).group(1)
    assert f"3.{target}" == requires, "ruff's target-version and requires-python disagree"
    return requires


def test_sources_need_nothing_newer_than_requires_python():
    vermin = Path(sys.executable).parent / "vermin"
    assert vermin.exists(), "vermin is missing (a test extra): run 'make setup'"
    proc = subprocess.run(
        [str(vermin), "--no-tips", "--eval-annotations", "--violations",
         "--no-parse-comments", f"-t={floor()}-", "builder", "tests", "benchmarks", "scripts"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )
    assert proc.returncode == 0, f"needs a newer Python than {floor()}:\n{proc.stdout}{proc.stderr}"
