"""gobuild run, shell and cache on the real engine, with gobuild itself run as a non-root user.

The user (UID) reaches the engine as a member of the docker socket's group, as a non-root
developer does. The cache volumes these tests make are removed at the end; the images
(Go 1.21 and 1.22, slim) are kept, as every integration test keeps its images.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker.errors
import pytest

from builder import cache, engine

from .conftest import GOBUILD, gobuild

UID = 1234
SOCKET = Path(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://"))
OTHER = {"amd64": "arm64", "arm64": "amd64"}

TINY = {
    "go.mod": "module example.com/tiny\n\ngo 1.21\n",
    "tiny.go": "package tiny\n\nfunc Add(a, b int) int { return a + b }\n",
    "tiny_test.go": ('package tiny\n\nimport "testing"\n\n'
                     'func TestAdd(t *testing.T) {\n\tif Add(2, 2) != 4 {\n\t\tt.Fatal("2+2")\n\t}\n}\n'),
}
# Fails under Go 1.22 only: the table must say which cell failed.
FAILS_ON_122 = {**TINY, "fail_test.go": ('//go:build go1.22\n\npackage tiny\n\nimport "testing"\n\n'
                                         'func TestNew(t *testing.T) { t.Fatal("broken on 1.22") }\n')}
# A main that needs only fmt: a cold build compiles the runtime and fmt (enough work for the
# warm-cache ratio, and to show who owns the files a build writes), quick even on a loaded host.
HELLO = {
    "go.mod": "module example.com/hello\n\ngo 1.21\n",
    "main.go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n',
}


@pytest.fixture(scope="module")
def native(docker_client) -> str:
    """The engine's own architecture: runners may be amd64 or arm64."""
    return engine.arch(docker_client)


@pytest.fixture(scope="module")
def one_cell(native) -> tuple[str, ...]:
    """Go 1.22, slim, on the engine's own platform (never emulated)."""
    return ("--go", "1.22", "--platform", f"linux/{native}", "--variant", "slim")


@pytest.fixture(scope="module")
def slim_images(docker_client, bases):
    gobuild("images", "--go", "1.21", "--go", "1.22", "--variant", "slim",
            "--platform", "linux/amd64", "--platform", "linux/arm64", timeout=1800)


@pytest.fixture(scope="module", autouse=True)
def new_caches_removed(docker_client):
    """Remove the cache volumes the tests made (those that were not there before)."""
    def names():
        return {v.name for v in docker_client.volumes.list(filters={"label": cache.CACHE_LABEL})}

    before = names()
    yield
    kept = []
    for name in names() - before:
        try:
            docker_client.volumes.get(name).remove(force=True)
        except docker.errors.APIError as exc:  # in use: a failed test left a container
            kept.append(f"{name}: {exc.explanation}")
    assert not kept, f"cache volumes left: {kept}"


@pytest.fixture
def folder():
    """A module folder the non-root user owns (pytest's own tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="gobuild-run-", dir="/tmp"))
    os.chown(path, UID, UID)
    yield path
    shutil.rmtree(path)


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).write_text(text)
        os.chown(folder / name, UID, UID)


def as_user(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 900):
    """gobuild as UID, a member of the docker socket's group (no root, no capabilities). Past
    the timeout it gets SIGTERM, so that it removes its containers, as a user's Ctrl-C would."""
    group = SOCKET.stat().st_gid
    argv = ["setpriv", f"--reuid={UID}", f"--regid={UID}", f"--groups={group}", GOBUILD, *args]
    env = {**os.environ, "HOME": str(cwd)}
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=120)
        pytest.fail(f"gobuild {' '.join(args)} ran past {timeout:.0f} s:\n{err[-2000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def rows(stdout: str) -> dict[str, list[str]]:
    """The result table: cell -> [exit, duration, note...]."""
    return {line.split()[0]: line.split()[1:] for line in stdout.splitlines()
            if re.match(r"^go1\.\d+-", line)}


def test_four_cells_run_in_turn_and_each_result_is_reported(slim_images, folder, native):
    # Both Go versions on the engine's platform and on the other one (emulated). The command is
    # fast under qemu: the point is the four runs, their order, marking, table and exit code.
    other = OTHER[native]
    four = ("--go", "1.21", "--go", "1.22", "--platform", "linux/amd64", "--platform",
            "linux/arm64", "--variant", "slim")
    done = as_user("run", *four, "--", "sh", "-c", "go version && go env GOARCH", cwd=folder,
                   timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = rows(done.stdout)
    assert sorted(table) == ["go1.21-slim-linux-amd64", "go1.21-slim-linux-arm64",
                             "go1.22-slim-linux-amd64", "go1.22-slim-linux-arm64"]
    for cell, (code, seconds, *note) in table.items():
        platform = cell.rsplit("-", 1)[1]
        assert code == "0" and seconds.endswith("s")
        assert ("emulated (qemu)" in " ".join(note)) == (platform != native), cell
    # CMD's own output, in turn: each cell's go version, then its GOARCH.
    said = re.findall(r"^go version (go1\.\d+)\.\d+ linux/(\w+)\n(\w+)$", done.stdout, re.MULTILINE)
    assert said == [(cell.split("-")[0], cell.rsplit("-", 1)[1], cell.rsplit("-", 1)[1])
                    for cell in table], done.stdout
    assert {arch for _, arch, _ in said} == {native, other}
    assert "4 of 4 passed" in done.stdout
    order = [m.group(1) for m in re.finditer(r"\[\d/4\] (\S+?)[: ]", done.stderr)]
    assert order == list(table)  # in turn, in matrix order


def test_a_failing_test_fails_the_run_and_the_table_names_its_cell(slim_images, folder, native):
    write(folder, FAILS_ON_122)
    done = as_user("run", "--go", "1.21", "--go", "1.22", "--platform", f"linux/{native}",
                   "--variant", "slim", "--", "go", "test", "./...", cwd=folder)
    assert done.returncode == 1, done.stderr[-2000:]  # go test's own exit code
    table = rows(done.stdout)
    assert table[f"go1.21-slim-linux-{native}"][0] == "0"
    assert table[f"go1.22-slim-linux-{native}"][0] == "1"
    assert "broken on 1.22" in done.stdout
    assert f"1 of 2 passed; failed: go1.22-slim-linux-{native}" in done.stdout


def test_one_cell_passes_the_exit_code_through_and_json_keeps_stdout_clean(slim_images, folder, one_cell):
    done = as_user("run", *one_cell, "--json", "--", "sh", "-c", "echo hello; exit 7", cwd=folder)
    assert done.returncode == 7
    data = json.loads(done.stdout)  # CMD's stdout went to stderr
    assert [r["exit_code"] for r in data["results"]] == [7] and data["exit_code"] == 7
    assert "hello" in done.stderr


def test_files_written_by_cmd_belong_to_the_invoking_user(slim_images, folder, one_cell):
    write(folder, HELLO)
    done = as_user("run", *one_cell, "--", "sh", "-c",
                   "mkdir -p out && go build -o out/server . && id -u > out/uid && "
                   'go install . && "$GOBIN/hello"', cwd=folder)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("hello")  # go install works as a uid the image lacks
    for path in (folder / "out", folder / "out" / "server", folder / "out" / "uid"):
        assert (path.stat().st_uid, path.stat().st_gid) == (UID, UID), path
    assert (folder / "out" / "uid").read_text().strip() == str(UID)
    shared = folder / "shared"  # as root, for another uid, in a folder it may write
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    other = gobuild("run", *one_cell, "--user", "4321:4321", "--", "sh", "-c", "id -u > by-4321",
                    cwd=shared, check=False)
    assert other.returncode == 0, other.stderr[-2000:]
    assert (shared / "by-4321").stat().st_uid == 4321


def seconds(done) -> float:
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)["results"][0]["seconds"]


def test_the_second_build_is_warm_and_each_go_version_has_its_own_build_cache(slim_images, folder, one_cell,
                                                                           native):
    write(folder, HELLO)
    assert as_user("run", *one_cell, "--", "go", "clean", "-cache", cwd=folder).returncode == 0
    cold = seconds(as_user("run", *one_cell, "--json", "--", "go", "build", "./...", cwd=folder))
    warm = seconds(as_user("run", *one_cell, "--json", "--", "go", "build", "./...", cwd=folder))
    print(f"go build of a fmt main in one cell: cold {cold:.1f} s, warm {warm:.1f} s "
          f"({cold / warm:.1f}x)")
    assert warm < cold / 2
    # A marker beside GOCACHE and GOMODCACHE, written in the 1.22 cell, seen from 1.21: the
    # build cache is its own, the module cache of the platform is shared.
    mark = 'touch "$(dirname "$GOCACHE")/marker" "$(dirname "$GOMODCACHE")/marker"'
    assert as_user("run", *one_cell, "--", "sh", "-c", mark, cwd=folder).returncode == 0
    look = as_user("run", "--go", "1.21", "--platform", f"linux/{native}", "--variant", "slim", "--",
                   "sh", "-c", 'test -e "$(dirname "$GOMODCACHE")/marker" && '
                   'test ! -e "$(dirname "$GOCACHE")/marker"',
                   cwd=folder)
    assert look.returncode == 0, look.stderr[-2000:]
    listed = json.loads(as_user("cache", "ls", "--user", str(UID), "--json", cwd=folder).stdout)
    builds = {c["go"]: c["name"] for c in listed if c["kind"] == "build" and c["platform"] == f"linux/{native}"}
    assert builds["1.21.13"] != builds["1.22.10"]


def test_shell_runs_in_one_cell_as_the_user_and_refuses_several(slim_images, folder, one_cell, native, docker_client):
    done = as_user("shell", *one_cell, cwd=folder,
                   stdin='id -u; go version; pwd; echo "$GOCACHE"; exit 3\n')
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout.split()[:4] == [str(UID), "go", "version", "go1.22.10"]
    assert "/work" in done.stdout and "/gobuild-cache/build/go-build" in done.stdout
    assert not [c for c in docker_client.containers.list(all=True) if c.name.startswith("gobuild-shell-")]
    several = as_user("shell", "--go", "1.21", "--go", "1.22", "--variant", "slim", cwd=folder)
    assert several.returncode == 2
    assert several.stderr.strip().splitlines()[-1].endswith(
        f"the selectors match 2 (go1.21-slim-linux-{native}, go1.22-slim-linux-{native}): "
        "narrow them with --go, --platform, --variant")


def test_no_build_refuses_a_missing_image(folder, one_cell, native, root):
    images = folder / "images"
    images.mkdir()
    lock = json.loads((root / "images" / "lock.json").read_text())
    lock["go"]["1.22"]["version"] = "1.22.999"  # a release no image was built for
    (images / "lock.json").write_text(json.dumps(lock))
    shutil.copy(root / "images" / "matrix.yaml", images / "matrix.yaml")
    done = gobuild("run", *one_cell, "--no-build", "--", "true", cwd=folder, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"no image gobuild/go:1.22.999-slim-{native} in the engine: build it first (gobuild images "
        f"--go 1.22 --variant slim --platform linux/{native}) or drop --no-build")


def test_cache_ls_shows_last_use_and_prune_removes_only_the_unused(slim_images, folder, docker_client,
                                                                   one_cell, native):
    old = 1_000_000_000  # 2001: as if this build cache had not been used since
    stamp = f'echo {old} > "$(dirname "$GOCACHE")/{cache.STAMP}"'
    assert as_user("run", *one_cell, "--", "sh", "-c", stamp, cwd=folder).returncode == 0
    listed = {c["name"]: c for c in json.loads(
        as_user("cache", "ls", "--user", str(UID), "--json", cwd=folder).stdout)}
    build, mod = cache.volumes_for("1.22.10", f"linux/{native}", f"{UID}:{UID}")
    assert listed[build.name]["last_use"] == old
    assert listed[mod.name]["last_use"] > old and listed[mod.name]["size"] > 0
    pruned = json.loads(as_user("cache", "prune", "--older-than", "30d", "--user", str(UID),
                                "--json", cwd=folder).stdout)
    assert [p["name"] for p in pruned if p["removed"]] == [build.name]
    left = {v.name for v in docker_client.volumes.list(filters={"label": cache.CACHE_LABEL})}
    assert build.name not in left and mod.name in left


def test_ctrl_c_stops_the_run_at_once_and_removes_its_container(slim_images, folder, one_cell, docker_client):
    import signal
    import time

    def running():
        return [c for c in docker_client.containers.list() if c.name.startswith("gobuild-run-")
                and c.attrs["Config"]["Cmd"][-1] == "117"]

    proc = subprocess.Popen([GOBUILD, "run", *one_cell, "--", "sleep", "117"], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not running() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert running(), "the container never started"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - sent < 15  # not when sleep ends: the live output threads
        assert proc.returncode == 130, err  # must leave the signal to the main thread
        assert "interrupted" in err and running() == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_cache_volume_left_root_owned_is_handed_over(slim_images, folder, one_cell, native,
                                                       docker_client):
    left = cache.volumes_for("1.22.10", f"linux/{native}", "4322:4322")
    for vol in left:  # as a run killed between making the volumes and handing them over leaves them
        docker_client.volumes.create(name=vol.name, labels=vol.labels())
    folder.chmod(0o777)
    write_both = 'touch "$(dirname "$GOCACHE")/x" "$(dirname "$GOMODCACHE")/x" && id -u'
    done = gobuild("run", *one_cell, "--user", "4322:4322", "--", "sh", "-c", write_both,
                   cwd=folder, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not yet 4322:4322's: handing them over" in done.stderr
    again = gobuild("run", *one_cell, "--user", "4322:4322", "--", "sh", "-c", write_both,
                    cwd=folder, check=False)
    assert again.returncode == 0 and "handing" not in again.stderr  # claimed once, for good
