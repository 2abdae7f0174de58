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

from builder import cache

from .conftest import GOBUILD, gobuild

UID = 1234
SOCKET = Path(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://"))
FOUR = ("--go", "1.21", "--go", "1.22", "--platform", "linux/amd64", "--platform", "linux/arm64",
        "--variant", "slim")
AMD64_122 = ("--go", "1.22", "--platform", "linux/amd64", "--variant", "slim")

TINY = {
    "go.mod": "module example.com/tiny\n\ngo 1.21\n",
    "tiny.go": "package tiny\n\nfunc Add(a, b int) int { return a + b }\n",
    "tiny_test.go": ('package tiny\n\nimport "testing"\n\n'
                     'func TestAdd(t *testing.T) {\n\tif Add(2, 2) != 4 {\n\t\tt.Fatal("2+2")\n\t}\n}\n'),
}
# Fails under Go 1.22 only: the table must say which cell failed.
FAILS_ON_122 = {**TINY, "fail_test.go": ('//go:build go1.22\n\npackage tiny\n\nimport "testing"\n\n'
                                         'func TestNew(t *testing.T) { t.Fatal("broken on 1.22") }\n')}
# A build with real work in it (net/http and its dependencies), for the warm-cache test.
SERVER = {
    "go.mod": "module example.com/server\n\ngo 1.21\n",
    "main.go": ('package main\n\nimport (\n\t"fmt"\n\t"net/http"\n)\n\n'
                'func main() { fmt.Println(http.StatusOK) }\n'),
}


@pytest.fixture(scope="module")
def slim_images(docker_client, bases):
    gobuild("images", "--go", "1.21", "--go", "1.22", "--variant", "slim", timeout=1800)


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


def test_four_cells_run_in_turn_and_each_result_is_reported(slim_images, folder):
    write(folder, TINY)
    # Cold caches: each emulated arm64 cell compiles the test's dependencies under qemu
    # (1-2 minutes on an idle 2-core host, far more on a loaded one).
    done = as_user("run", *FOUR, "--", "go", "test", "./...", cwd=folder, timeout=2400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("ok  \texample.com/tiny") == 4  # CMD's own output, on stdout
    table = rows(done.stdout)
    assert sorted(table) == ["go1.21-slim-linux-amd64", "go1.21-slim-linux-arm64",
                             "go1.22-slim-linux-amd64", "go1.22-slim-linux-arm64"]
    for cell, (code, seconds, *note) in table.items():
        assert code == "0" and seconds.endswith("s")
        assert ("emulated (qemu)" in " ".join(note)) == cell.endswith("arm64")
    assert "4 of 4 passed" in done.stdout
    order = [m.group(1) for m in re.finditer(r"\[\d/4\] (\S+?)[: ]", done.stderr)]
    assert order == list(table)  # in turn, in matrix order


def test_a_failing_test_fails_the_run_and_the_table_names_its_cell(slim_images, folder):
    write(folder, FAILS_ON_122)
    done = as_user("run", "--go", "1.21", "--go", "1.22", "--platform", "linux/amd64",
                   "--variant", "slim", "--", "go", "test", "./...", cwd=folder)
    assert done.returncode == 1, done.stderr[-2000:]  # go test's own exit code
    table = rows(done.stdout)
    assert table["go1.21-slim-linux-amd64"][0] == "0"
    assert table["go1.22-slim-linux-amd64"][0] == "1"
    assert "broken on 1.22" in done.stdout
    assert "1 of 2 passed; failed: go1.22-slim-linux-amd64" in done.stdout


def test_one_cell_passes_the_exit_code_through_and_json_keeps_stdout_clean(slim_images, folder):
    done = as_user("run", *AMD64_122, "--json", "--", "sh", "-c", "echo hello; exit 7", cwd=folder)
    assert done.returncode == 7
    data = json.loads(done.stdout)  # CMD's stdout went to stderr
    assert [r["exit_code"] for r in data["results"]] == [7] and data["exit_code"] == 7
    assert "hello" in done.stderr


def test_files_written_by_cmd_belong_to_the_invoking_user(slim_images, folder):
    write(folder, SERVER)
    done = as_user("run", *AMD64_122, "--", "sh", "-c",
                   "mkdir -p out && go build -o out/server . && id -u > out/uid", cwd=folder)
    assert done.returncode == 0, done.stderr[-2000:]
    for path in (folder / "out", folder / "out" / "server", folder / "out" / "uid"):
        assert (path.stat().st_uid, path.stat().st_gid) == (UID, UID), path
    assert (folder / "out" / "uid").read_text().strip() == str(UID)
    shared = folder / "shared"  # as root, for another uid, in a folder it may write
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    other = gobuild("run", *AMD64_122, "--user", "4321:4321", "--", "sh", "-c", "id -u > by-4321",
                    cwd=shared, check=False)
    assert other.returncode == 0, other.stderr[-2000:]
    assert (shared / "by-4321").stat().st_uid == 4321


def seconds(done) -> float:
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)["results"][0]["seconds"]


def test_the_second_build_is_warm_and_each_go_version_has_its_own_build_cache(slim_images, folder):
    write(folder, SERVER)
    assert as_user("run", *AMD64_122, "--", "go", "clean", "-cache", cwd=folder).returncode == 0
    cold = seconds(as_user("run", *AMD64_122, "--json", "--", "go", "build", "./...", cwd=folder))
    warm = seconds(as_user("run", *AMD64_122, "--json", "--", "go", "build", "./...", cwd=folder))
    print(f"go build of net/http in one cell: cold {cold:.1f} s, warm {warm:.1f} s "
          f"({cold / warm:.1f}x)")
    assert warm < cold / 2
    # A marker beside GOCACHE and GOMODCACHE, written in the 1.22 cell, seen from 1.21: the
    # build cache is its own, the module cache of the platform is shared.
    mark = 'touch "$(dirname "$GOCACHE")/marker" "$(dirname "$GOMODCACHE")/marker"'
    assert as_user("run", *AMD64_122, "--", "sh", "-c", mark, cwd=folder).returncode == 0
    look = as_user("run", "--go", "1.21", "--platform", "linux/amd64", "--variant", "slim", "--",
                   "sh", "-c", 'test -e "$(dirname "$GOMODCACHE")/marker" && '
                   'test ! -e "$(dirname "$GOCACHE")/marker"',
                   cwd=folder)
    assert look.returncode == 0, look.stderr[-2000:]
    listed = json.loads(as_user("cache", "ls", "--user", str(UID), "--json", cwd=folder).stdout)
    builds = {c["go"]: c["name"] for c in listed if c["kind"] == "build" and c["platform"] == "linux/amd64"}
    assert builds["1.21.13"] != builds["1.22.10"]


def test_shell_runs_in_one_cell_as_the_user_and_refuses_several(slim_images, folder, docker_client):
    done = as_user("shell", *AMD64_122, cwd=folder,
                   stdin='id -u; go version; pwd; echo "$GOCACHE"; exit 3\n')
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout.split()[:4] == [str(UID), "go", "version", "go1.22.10"]
    assert "/work" in done.stdout and "/gobuild-cache/build/go-build" in done.stdout
    assert not [c for c in docker_client.containers.list(all=True) if c.name.startswith("gobuild-shell-")]
    several = as_user("shell", "--go", "1.21", "--go", "1.22", "--variant", "slim", cwd=folder)
    assert several.returncode == 2
    native = f"linux-{'arm64' if os.uname().machine == 'aarch64' else 'amd64'}"
    assert several.stderr.strip().splitlines()[-1].endswith(
        f"the selectors match 2 (go1.21-slim-{native}, go1.22-slim-{native}): "
        "narrow them with --go, --platform, --variant")


def test_no_build_refuses_a_missing_image(folder, root):
    images = folder / "images"
    images.mkdir()
    lock = json.loads((root / "images" / "lock.json").read_text())
    lock["go"]["1.22"]["version"] = "1.22.999"  # a release no image was built for
    (images / "lock.json").write_text(json.dumps(lock))
    shutil.copy(root / "images" / "matrix.yaml", images / "matrix.yaml")
    done = gobuild("run", *AMD64_122, "--no-build", "--", "true", cwd=folder, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        "no image gobuild/go:1.22.999-slim-amd64 in the engine: build it first (gobuild images "
        "--go 1.22 --variant slim --platform linux/amd64) or drop --no-build")


def test_cache_ls_shows_last_use_and_prune_removes_only_the_unused(slim_images, folder, docker_client):
    old = 1_000_000_000  # 2001: as if this build cache had not been used since
    stamp = f'echo {old} > "$(dirname "$GOCACHE")/{cache.STAMP}"'
    assert as_user("run", *AMD64_122, "--", "sh", "-c", stamp, cwd=folder).returncode == 0
    listed = {c["name"]: c for c in json.loads(
        as_user("cache", "ls", "--user", str(UID), "--json", cwd=folder).stdout)}
    build, mod = cache.volumes_for("1.22.10", "linux/amd64", f"{UID}:{UID}")
    assert listed[build.name]["last_use"] == old
    assert listed[mod.name]["last_use"] > old and listed[mod.name]["size"] > 0
    pruned = json.loads(as_user("cache", "prune", "--older-than", "30d", "--user", str(UID),
                                "--json", cwd=folder).stdout)
    assert [p["name"] for p in pruned if p["removed"]] == [build.name]
    left = {v.name for v in docker_client.volumes.list(filters={"label": cache.CACHE_LABEL})}
    assert build.name not in left and mod.name in left


def test_ctrl_c_stops_the_run_at_once_and_removes_its_container(slim_images, folder, docker_client):
    import signal
    import time

    def running():
        return [c for c in docker_client.containers.list() if c.name.startswith("gobuild-run-")
                and c.attrs["Config"]["Cmd"][-1] == "117"]

    proc = subprocess.Popen([GOBUILD, "run", *AMD64_122, "--", "sleep", "117"], cwd=folder,
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
