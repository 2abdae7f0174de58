"""gobuild fit on the real engine, kept short: a small module, a narrow range, few probes. The
full measurement on the embedded workload is benchmarks/fit.py."""
from __future__ import annotations

import json
import os
import re

import pytest

from .conftest import gobuild

NATIVE = ("--go", "1.22", "--platform", f"linux/{'arm64' if os.uname().machine == 'aarch64' else 'amd64'}",
          "--variant", "slim")
HELLO = {
    "go.mod": "module example.com/hello\n\ngo 1.21\n",
    "main.go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n',
}


@pytest.fixture(scope="module")
def slim_image(docker_client, bases):
    gobuild("images", *NATIVE, timeout=1800)


def module(folder, files):
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def left_behind(docker_client, run_id):
    label = {"label": f"io.gobuild.run={run_id}"}
    return (docker_client.containers.list(all=True, filters=label)
            + docker_client.volumes.list(filters=label))


def test_fit_brackets_the_limit_between_an_oom_and_a_success(slim_image, tmp_path, docker_client):
    done = gobuild("fit", *NATIVE, "--cpus", "1", "--min", "16m", "--max", "512m", "--max-runs", "3",
                   "--remedy", "p1", "--remedy-runs", "1", "--json", "--", "go", "build", "./...",
                   cwd=module(tmp_path, HELLO), timeout=900)
    data = json.loads(done.stdout)
    assert data["subject"] == f"the module in {tmp_path.resolve()}"
    assert "cold build cache" in data["cache_state"] and "warm module cache" in data["cache_state"]
    assert data["search_runs"] <= 3
    base = data["settings"][0]
    assert base["setting"] == "as is" and base["smallest_ok"] <= 512 * 2**20
    assert base["largest_failed"] is not None and base["largest_failed"] < base["smallest_ok"]
    by_limit = {(p["setting"], p["limit"]): p for p in data["probes"]}
    assert by_limit[("as-is", base["smallest_ok"])]["outcome"] == "ok"
    below = by_limit[("as-is", base["largest_failed"])]
    assert below["outcome"] == "oom" and below["oom_reasons"]  # an OOM, by the engine's signs
    p1 = data["settings"][1]
    assert p1["setting"] == "GOFLAGS=-p=1" and p1["tried_from"] == base["largest_failed"]
    assert len(data["probes"]) == data["search_runs"] + 1
    print(f"fit of a hello world: {base['smallest_ok'] >> 20} MiB worked, "
          f"{base['largest_failed'] >> 20} MiB OOMed, {data['search_runs']} runs")
    assert left_behind(docker_client, data["run_id"]) == []


def test_a_build_that_fails_for_another_reason_stops_the_search_with_its_output(slim_image, tmp_path):
    broken = {**HELLO, "main.go": "package main\n\nfunc main() { undefinedThing() }\n"}
    done = gobuild("fit", *NATIVE, "--max", "1g", "--", "go", "build", "./...",
                   cwd=module(tmp_path, broken), check=False, timeout=600)
    assert done.returncode == 8
    assert "undefined: undefinedThing" in done.stderr  # the command's own output
    assert done.stderr.strip().splitlines()[-1].endswith(
        "go build ./... failed at 1024 MiB with exit 1, not for lack of memory (its output is "
        "above): fix the build, then fit again")
    assert len(re.findall(r"probe \d+:", done.stderr)) == 1  # nothing after the first probe
