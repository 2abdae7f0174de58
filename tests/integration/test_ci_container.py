"""The README's "Using the images in CI", followed as a new user would: both snippets are read
from README.md (not copied here) and run the way GitHub runs them, offline, against the local
images of the newest Go for the engine's own architecture (natively, on the amd64 and on the
arm64 runner alike).

- bookworm as a job `container:`: the runner's folders bind-mounted (/__w with the workspace,
  /github/home as HOME), each step written to a script and run with `sh -e`, the checkout
  done with git inside the container from a local repository, then the README's `run:` steps;
  the module and build caches land in the mounted /github/home, and a second job that gets
  them back (as actions/cache restores them) finds its tests cached.
- slim: what the README says does not work in a `container:` job does not (the runner's
  glibc Node, git, writing to a workspace owned by the runner's uid); the README's step
  (`docker run --user`) runs as the runner's user (uid 1001 here, as on hosted runners).

Each first job run gets its Go build cache restored, as actions/cache restores the one a
previous run saved: this machine keeps one per image under $XDG_CACHE_HOME/gobuild/ci-test/
(saved by the first test run, cold: 118 s and 135 s of compiling the standard library at
load average 16-23 on this 2-core machine). The module cache always starts empty.

The snippets name `ghcr.io/acme/go:<minor>-<variant>`: that name is given to the local image
for the test (no registry is reachable) and removed afterwards. Modules come from a file://
proxy committed in the repository (no module proxy is reachable either). Containers started
here are testcontainers (ryuk disabled: its image cannot be pulled) removed by their ids.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml

from builder import engine
from builder.bench import workload
from builder.lock import load_lock
from builder.toolchains import cache_dir

from .conftest import ROOT, gobuild

os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"  # before testcontainers starts anything

RUNNER_UID = 1001  # what hosted runners run as
LABEL = "io.gobuild.test"
PROXY = ".goproxy"  # in the repository; a dot folder, so ./... leaves it out


def readme_snippets() -> list[dict]:
    """The YAML blocks of the README's "Using the images in CI" section, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Using the images in CI\n", 1)[1].split("\n## ", 1)[0]
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)]


def hash1(files: dict[str, bytes]) -> str:
    """Go's dirhash.Hash1, as go.sum records it."""
    lines = "".join(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files))
    return "h1:" + base64.b64encode(hashlib.sha256(lines.encode()).digest()).decode()


def go_sum(proxy: dict[str, bytes]) -> str:
    out = []
    for path, data in sorted(proxy.items()):
        if path.endswith(".zip"):
            module, version = path.rsplit("/@v/", 1)[0], path.rsplit("/", 1)[1][:-4]
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                zipped = {n: zf.read(n) for n in zf.namelist()}
            out.append(f"{module} {version} {hash1(zipped)}\n")
            mod = proxy[path[:-4] + ".mod"]
            out.append(f"{module} {version}/go.mod {hash1({'go.mod': mod})}\n")
    return "".join(out)


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A local git repository holding a module with a test, its go.sum, and the modules it
    requires in a file:// proxy folder."""
    repo = tmp_path_factory.mktemp("origin")
    files = workload.module_graph(3, 4)
    proxy = {k[len("proxy/"):]: v for k, v in files.items() if k.startswith("proxy/")}
    for name, data in files.items():
        rel = name[len("work/"):] if name.startswith("work/") else f"{PROXY}/{name[len('proxy/'):]}"
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(data)
    (repo / "go.sum").write_text(go_sum(proxy))
    run = uuid.uuid4().hex  # this run's own source: compiled anew whatever cache was restored
    (repo / "run.go").write_text(f"package main\n\nconst run = {run!r}\n".replace("'", '"'))
    (repo / "benchpkg" / "run.go").write_text(f"package benchpkg\n\n// run {run}\n")
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.test", "-c",
           "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "module"]):
        subprocess.run([*git, *args], cwd=repo, check=True)
    return repo


def newest(variant: str, arch: str) -> tuple[str, str]:
    """(minor, local tag) of the newest Go's image of variant for linux/<arch>."""
    lock = load_lock(ROOT / "images" / "lock.json")
    minor = max(lock.go, key=lambda v: tuple(int(x) for x in v.split(".")))
    return minor, f"gobuild/go:{lock.go[minor].version}-{variant}-{arch}"


@pytest.fixture(scope="module")
def native_arch(docker_client) -> str:
    """The engine's own architecture: the images a job on this runner runs natively."""
    return engine.arch(docker_client)


@pytest.fixture(scope="module")
def readme_images(docker_client, bases, native_arch):
    """The README's image names, given to the engine's native images while the tests run
    (built first, with the narrowest selectors, on a machine that has none)."""
    named = []
    for variant in ("bookworm", "slim"):
        minor, local = newest(variant, native_arch)
        if not docker_client.images.list(name=local):
            gobuild("images", "--go", "latest", "--variant", variant,
                    "--platform", f"linux/{native_arch}", timeout=1800)
        image = docker_client.images.get(local)
        assert image.attrs["Architecture"] == native_arch, local
        name = f"ghcr.io/acme/go:{minor}-{variant}"
        image.tag(name)
        named.append(name)
    yield dict(zip(("bookworm", "slim"), named))
    for name in named:
        docker_client.images.remove(name)


class ContainerJob:
    """A job `container:` the way the runner makes one: its folders mounted, the image's own
    user, an idle process, and each step a script run with `sh -e` in the workspace."""

    def __init__(self, image: str, root: Path, env: dict, extra_mounts: dict | None = None):
        from testcontainers.core.container import DockerContainer

        self.root = root
        self.workspace = root / "work" / "repo" / "repo"
        self.workspace.mkdir(parents=True)
        (root / "work" / "_temp").mkdir()
        (root / "home").mkdir(exist_ok=True)
        box = (DockerContainer(image)
               .with_command(["tail", "-f", "/dev/null"])
               .with_volume_mapping(str(root / "work"), "/__w", "rw")
               .with_volume_mapping(str(root / "home"), "/github/home", "rw")
               .with_kwargs(labels={LABEL: uuid.uuid4().hex}, network_mode="none"))
        for host, inside in (extra_mounts or {}).items():
            box = box.with_volume_mapping(str(host), inside, "ro")
        for key, value in {"HOME": "/github/home", "CI": "true", "GITHUB_ACTIONS": "true",
                           "GITHUB_WORKSPACE": "/__w/repo/repo", **env}.items():
            box = box.with_env(key, value)
        self.box = box

    def __enter__(self):
        self.box.start()
        self.container = self.box.get_wrapped_container()
        return self

    def __exit__(self, *exc):
        self.container.remove(force=True)

    def step(self, script: str) -> tuple[int, str]:
        path = self.root / "work" / "_temp" / f"{uuid.uuid4().hex}.sh"
        path.write_text(script)
        path.chmod(0o755)
        code, out = self.container.exec_run(["sh", "-e", f"/__w/_temp/{path.name}"],
                                            workdir="/__w/repo/repo")
        return code, out.decode(errors="replace")

    def checkout(self) -> tuple[int, str]:
        """What actions/checkout does in a container that has git: a repository in the
        workspace, fetched at one commit, the workspace marked safe for git."""
        return self.step("git config --global --add safe.directory /__w/repo/repo\n"
                         "git init -q .\n"
                         "git fetch -q --depth=1 file:///origin HEAD\n"
                         "git checkout -q --force FETCH_HEAD\n")


def restore_build_cache(image_id: str, into: Path) -> None:
    """What actions/cache restores: the Go build cache an earlier run of this image saved."""
    saved = cache_dir() / "ci-test" / image_id.replace(":", "-")
    if saved.is_dir():
        shutil.copytree(saved, into, dirs_exist_ok=True)


def current_ids(docker_client, readme_images: dict) -> set[str]:
    return {docker_client.images.get(name).id for name in readme_images.values()}


def save_build_cache(image_id: str, source: Path, keep: set[str]) -> None:
    """What actions/cache saves at the end of a job: kept for the next run (atomically: a
    half-copied cache is never restored). The caches of images other than keep (the current
    README images) are removed: a rebuilt image's old cache is never restored again."""
    root = cache_dir() / "ci-test"
    wanted = {i.replace(":", "-") for i in keep | {image_id}}
    for entry in root.glob("sha256-*") if root.is_dir() else ():
        if entry.name not in wanted:
            shutil.rmtree(entry, ignore_errors=True)
    saved = root / image_id.replace(":", "-")
    if saved.is_dir():
        return
    saved.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=saved.parent))
    shutil.copytree(source, partial, dirs_exist_ok=True)
    try:
        partial.rename(saved)
    except OSError:  # another run saved it first
        shutil.rmtree(partial)


def as_checked_out(tree: Path, uid: int) -> None:
    """Owner and modes as a checkout by the runner's user leaves them (umask 022)."""
    for path in (tree, *tree.rglob("*")):
        os.lchown(path, uid, uid)
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def test_bookworm_snippet_runs_as_a_container_job_and_keeps_its_caches(
        origin, readme_images, tmp_path, docker_client):
    workflow = readme_snippets()[0]
    job = workflow["jobs"]["test"]
    assert job["container"]["image"] == readme_images["bookworm"], "the README names the newest Go"
    offline = {"GOPROXY": f"file:///__w/repo/repo/{PROXY}", "GOSUMDB": "off"}
    runs = [s["run"] for s in job["steps"] if "run" in s]
    uses = [s["uses"].split("@")[0] for s in job["steps"] if "uses" in s]
    assert uses == ["actions/checkout", "actions/cache"] and runs
    cache_paths = job["steps"][1]["with"]["path"].split()
    assert sorted(cache_paths) == sorted(job["env"].values())  # the cache keeps what Go writes

    home = tmp_path / "first" / "home"
    image_id = docker_client.images.get(readme_images["bookworm"]).id
    build_cache = home / job["env"]["GOCACHE"].removeprefix("/github/home/")
    restore_build_cache(image_id, build_cache)
    restored = set(files_under(build_cache)) if build_cache.exists() else set()
    with ContainerJob(readme_images["bookworm"], tmp_path / "first", {**job["env"], **offline},
                      {origin: "/origin"}) as first:
        code, out = first.checkout()
        assert code == 0, out
        for script in runs:
            code, out = first.step(script)
            assert code == 0, f"{script}\n{out[-3000:]}"
        assert re.search(r"^ok\s", out, re.MULTILINE), out
    # Both caches are in the mounted /github/home (what actions/cache saves), none in the image.
    mods = home / "go/pkg/mod/cache/download/example.com"
    assert {"m00", "m01", "m02"} <= {p.name for p in mods.iterdir()}
    assert len(set(files_under(build_cache)) - restored) >= 4  # this run's packages and test
    save_build_cache(image_id, build_cache, current_ids(docker_client, readme_images))

    # The next run gets /github/home back (actions/cache restores it): its tests are cached.
    again = tmp_path / "second"
    again.mkdir()
    shutil.copytree(home, again / "home")
    with ContainerJob(readme_images["bookworm"], again, {**job["env"], **offline},
                      {origin: "/origin"}) as second:
        assert second.checkout()[0] == 0
        code, out = second.step(runs[-1])
        assert code == 0 and "(cached)" in out, out
    assert docker_client.containers.list(all=True, filters={"label": LABEL}) == []


NODE_ARCH = {"x64": "amd64", "arm64": "arm64", "arm": "arm"}  # process.arch -> Go arch


def test_bookworm_runs_the_runners_node_and_slim_does_not(readme_images, native_arch, tmp_path):
    """JavaScript actions run with the runner's own Node (glibc), mounted into the job's
    container: bookworm runs it; slim, with no glibc, cannot even start it. The runner's Node
    is built for the runner's architecture, which is the images' (native) one."""
    node = shutil.which("node")
    assert node, "node is needed to show what JavaScript actions need (Debian: nodejs)"
    node_arch = subprocess.run([node, "-p", "process.arch"], capture_output=True, text=True,
                               check=True).stdout.strip()
    assert NODE_ARCH.get(node_arch) == native_arch, f"node is {node_arch}, the images {native_arch}"
    mounts = {Path(node).resolve(): "/__e/node20/bin/node"}
    results = {}
    for variant in ("bookworm", "slim"):
        with ContainerJob(readme_images[variant], tmp_path / variant, {}, mounts) as job:
            results[variant] = job.step("/__e/node20/bin/node -e 'console.log(process.version)'")
    assert results["bookworm"][0] == 0 and results["bookworm"][1].startswith("v")
    assert results["slim"][0] != 0, results["slim"]


def test_slim_as_a_container_job_fails_where_the_readme_says(origin, readme_images, tmp_path):
    """No git for actions/checkout, and uid 1000 cannot write to a workspace the runner's
    user (uid 1001) owns; steps that write nothing there work."""
    env = {"GOPROXY": f"file:///__w/repo/repo/{PROXY}", "GOSUMDB": "off",
           "GOCACHE": "/tmp/go-build"}  # HOME (/github/home) is the runner's: not writable
    with ContainerJob(readme_images["slim"], tmp_path, env) as job:
        code, out = job.step("git --version")
        assert code != 0 and "not found" in out, out
        shutil.copytree(origin, job.workspace, dirs_exist_ok=True)  # what a checkout would leave
        as_checked_out(job.workspace, RUNNER_UID)
        code, out = job.step("go test -coverprofile=cover.out ./...")
        assert code != 0 and "permission denied" in out, out
        code, out = job.step("go list -deps ./... >/dev/null && go mod verify")  # writes to /go only
        assert code == 0 and "all modules verified" in out, out


@pytest.fixture
def runner_dir():
    """A folder the runner's user owns (pytest's own temp folders are root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="gobuild-runner-"))
    os.chown(path, RUNNER_UID, RUNNER_UID)
    yield path
    shutil.rmtree(path)


RUNNER_TEMP_EXPR = re.compile(r"\$\{\{\s*runner\.temp\s*\}\}")


def snippet_caches(job: dict, script: str, workspace: Path, temp: Path) -> tuple[Path, Path, Path]:
    """(what actions/cache saves, the module cache, the build cache) on the runner, read from
    the snippet: the cache step's path with runner.temp given, which must be the host side of
    the `docker run -v` mount that holds the container's GOMODCACHE and GOCACHE."""
    [cache_step] = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
    [saved] = cache_step["with"]["path"].strip().splitlines()  # one path per line
    saved_path = Path(RUNNER_TEMP_EXPR.sub(str(temp), saved))
    host_of = {}  # container path -> runner path of each -v mount
    for host, inside in (m.split(":", 1) for m in re.findall(r'-v "([^"]+)"', script)):
        host = host.replace("$RUNNER_TEMP", str(temp)).replace("$GITHUB_WORKSPACE", str(workspace))
        host_of[inside] = Path(host)
    env = dict(re.findall(r"-e (\w+)=(\S+)", script))
    found = []
    for name in ("GOMODCACHE", "GOCACHE"):
        [(inside, host)] = [(i, h) for i, h in host_of.items() if env[name].startswith(i + "/")]
        assert host == saved_path, (f"{name}={env[name]} is in the mount of {host}, "
                                    f"the cache step saves {saved_path}")
        found.append(host / env[name].removeprefix(inside + "/"))
    return saved_path, found[0], found[1]


def test_slim_snippet_runs_as_the_runners_user_with_its_caches_on_the_runner(
        origin, readme_images, runner_dir, docker_client):
    [job] = readme_snippets()[1]["jobs"].values()
    [step] = [s for s in job["steps"] if "run" in s]
    assert step["env"]["IMAGE"] == readme_images["slim"]
    workspace, temp = runner_dir / "workspace", runner_dir / "runner-temp"
    subprocess.run(["git", "clone", "-q", str(origin), str(workspace)], check=True)  # checkout
    temp.mkdir()
    image_id = docker_client.images.get(readme_images["slim"]).id
    cache, mod_cache, build_cache = snippet_caches(job, step["run"], workspace, temp)
    restore_build_cache(image_id, build_cache)
    restored = set(files_under(build_cache)) if build_cache.exists() else set()
    as_checked_out(workspace, RUNNER_UID)
    for path in (temp, *temp.rglob("*")):
        os.lchown(path, RUNNER_UID, RUNNER_UID)
    docker_gid = os.stat("/var/run/docker.sock").st_gid
    env = {"PATH": os.environ["PATH"], "HOME": str(temp), "GITHUB_WORKSPACE": str(workspace),
           "RUNNER_TEMP": str(temp), "CI": "true", **step["env"],
           "GOPROXY": f"file:///src/{PROXY}", "GOSUMDB": "off"}  # the job's settings
    # As the runner's user (a member of the docker group, as on hosted runners), with the
    # shell GitHub uses for a run step without `shell:`.
    proc = subprocess.run(
        ["setpriv", f"--reuid={RUNNER_UID}", f"--regid={RUNNER_UID}", f"--groups={docker_gid}",
         "bash", "-e", "-c", step["run"]],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^ok\s", proc.stdout, re.MULTILINE), proc.stdout
    # What actions/cache saves holds both caches after the step.
    downloaded = mod_cache / "cache/download/example.com"
    assert {"m00", "m01", "m02"} <= {p.name for p in downloaded.iterdir()}
    assert len(set(files_under(build_cache)) - restored) >= 4  # this run's packages and test
    written = files_under(cache) + files_under(workspace)
    assert {p.lstat().st_uid for p in written} == {RUNNER_UID}  # the runner can clean up
    save_build_cache(image_id, build_cache, current_ids(docker_client, readme_images))


def test_the_saved_build_caches_keep_only_the_current_images(tmp_path, monkeypatch):
    """The test cache of an image that was rebuilt (another id) is removed on the next save."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = tmp_path / "gobuild" / "ci-test"
    for name in ("sha256-old", "sha256-other"):
        (root / name).mkdir(parents=True)
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "entry").write_text("x")
    save_build_cache("sha256:new", tmp_path / "build", {"sha256:new", "sha256:other"})
    assert sorted(p.name for p in root.iterdir()) == ["sha256-new", "sha256-other"]
    assert (root / "sha256-new" / "entry").read_text() == "x"
