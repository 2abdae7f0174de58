"""gobuild run/shell and the cache volumes: argument building and pure rules, no daemon."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder import cache, engine, workenv
from builder.errors import ConfigError
from builder.matrix import Selection, load_matrix, select


@pytest.fixture
def matrix(root):
    return load_matrix(root / "images" / "matrix.yaml")


def cell(matrix, go="1.22", platform="linux/amd64", variant="slim"):
    return select(matrix, Selection(go=(go,), platforms=(platform,), variants=(variant,)))[0]


def target(matrix, **kw):
    c = cell(matrix, **kw)
    return workenv.Target(cell=c, image=f"gobuild/go:x-{c.arch}", go_version="1.22.10",
                          emulated=c.arch != "amd64",
                          caches=cache.volumes_for("1.22.10", c.platform, "1234:1234"))


def test_an_unset_selector_picks_one_cell_not_all(matrix):
    sel = workenv.default_selection(Selection(), matrix, "linux/amd64")
    assert [c.id for c in select(matrix, sel)] == [f"go{matrix.go[-1]}-bookworm-linux-amd64"]
    sel = workenv.default_selection(Selection(go=("1.21", "1.22"), platforms=("linux/arm64",)),
                                    matrix, "linux/amd64")
    assert [c.id for c in select(matrix, sel)] == ["go1.21-bookworm-linux-arm64",
                                                   "go1.22-bookworm-linux-arm64"]
    assert workenv.default_selection(Selection(variants=("slim",)), matrix, "linux/arm64").platforms == (
        "linux/arm64",)
    # On a Pi Zero (armv6l) the engine's own platform is linux/arm/v6: its slim cell, not v7's.
    sel = workenv.default_selection(Selection(variants=("slim",)), matrix,
                                    engine.EngineFacts(**FACTS, arch="arm", machine="armv6l").platform)
    assert [c.id for c in select(matrix, sel)] == [f"go{matrix.go[-1]}-slim-linux-arm-v6"]


FACTS = {"version": "26.1.5", "api_version": "1.45", "os": "linux", "cgroup_version": "2",
         "cgroup_driver": "systemd", "storage_driver": "overlay2", "cpus": 1,
         "memory_bytes": 2**29, "kernel": "6.6"}


@pytest.mark.parametrize("machine, arch, platform", [
    ("x86_64", "amd64", "linux/amd64"), ("aarch64", "arm64", "linux/arm64"),
    ("armv7l", "arm", "linux/arm/v7"), ("armv8l", "arm", "linux/arm/v7"),
    ("armv6l", "arm", "linux/arm/v6"), ("", "arm64", "linux/arm64")])
def test_an_engine_s_platform_has_the_cpu_variant_its_machine_says(machine, arch, platform):
    assert engine.EngineFacts(**FACTS, arch=arch, machine=machine).platform == platform


def test_build_caches_are_per_release_and_platform_module_caches_per_platform():
    build, mod = cache.volumes_for("1.22.10", "linux/amd64", "1000:1000")
    other_version = cache.volumes_for("1.21.13", "linux/amd64", "1000:1000")
    other_arch = cache.volumes_for("1.22.10", "linux/arm64", "1000:1000")
    other_user = cache.volumes_for("1.22.10", "linux/amd64", "0:0")
    assert build.name != other_version[0].name and build.name != other_arch[0].name
    assert mod.name == other_version[1].name  # shared by the Go versions of a platform
    assert mod.name != other_arch[1].name
    assert {build.name, mod.name}.isdisjoint({v.name for v in other_user})
    assert cache.environment((build, mod)) == {"GOCACHE": "/gobuild-cache/build/go-build",
                                               "GOMODCACHE": "/gobuild-cache/mod/mod"}
    labels = build.labels()
    assert labels[cache.CACHE_LABEL] == "build" and labels[cache.GO_LABEL] == "1.22.10"
    assert engine.RUN_LABEL not in labels  # a run's cleanup must never take a cache with it
    assert cache.GO_LABEL not in mod.labels()


def test_the_command_runs_after_stamping_each_volume_and_keeps_its_argv():
    vols = cache.volumes_for("1.22.10", "linux/amd64", "0:0")
    argv = cache.stamped(("go", "test", "-run", "A B", "./..."), vols)
    assert argv[:2] == ("sh", "-c")
    assert argv[3:] == ("gobuild", "go", "test", "-run", "A B", "./...")
    script = argv[2]
    assert script.endswith('exec "$@"')
    for vol in vols:
        assert f"date +%s >{vol.mount}/{cache.STAMP}" in script


def test_run_spec_mounts_the_folder_as_the_user_with_caches_and_env(matrix, tmp_path):
    t = target(matrix, platform="linux/arm64")
    spec = workenv.spec_for(t, ("go", "build", "./..."), folder=tmp_path, user="1234:1234",
                            environment={"GOFLAGS": "-mod=mod", "HOME": "/home/me"},
                            network=True, role="run", limits=engine.Limits(memory=2**30))
    assert spec.binds == (engine.Bind(source=str(tmp_path.resolve()), target=workenv.WORKDIR),)
    assert spec.working_dir == workenv.WORKDIR and spec.user == "1234:1234"
    assert spec.platform == "linux/arm64" and spec.network
    assert spec.environment["GOFLAGS"] == "-mod=mod"
    assert spec.environment["HOME"] == "/home/me"  # what the caller set wins
    assert spec.environment["GOBIN"] == "/tmp/gobin"  # go install works as any uid
    assert spec.environment["GOCACHE"] == t.caches[0].path
    assert spec.volumes == {v.name: v.mount for v in t.caches}
    kw = engine.create_kwargs(spec, name="n", labels={})
    assert kw["volumes"][str(tmp_path.resolve())] == {"bind": "/work", "mode": "rw"}
    assert kw["volumes"][t.caches[1].name] == {"bind": t.caches[1].mount, "mode": "rw"}
    assert kw["user"] == "1234:1234" and kw["network_mode"] == "bridge"
    assert kw["mem_limit"] == kw["memswap_limit"] == 2**30


def test_a_read_only_bind_is_mounted_read_only():
    spec = engine.Spec(image="i", command=("true",), role="x",
                       binds=(engine.Bind(source="/src", target="/in", read_only=True),))
    assert engine.create_kwargs(spec, name="n", labels={})["volumes"] == {
        "/src": {"bind": "/in", "mode": "ro"}}


def test_forwarded_variables_and_dash_e():
    environ = {"GOPROXY": "https://proxy.example", "GOPRIVATE": "example.com/*", "PATH": "/bin",
               "GONOSUMCHECK": "1", "EDITOR": "vi"}
    assert workenv.forwarded(environ) == {"GOPROXY": "https://proxy.example",
                                          "GOPRIVATE": "example.com/*", "GONOSUMCHECK": "1"}
    assert workenv.parse_env(("A=1", "B=x=y", "EDITOR", "UNSET", "C="), environ) == {
        "A": "1", "B": "x=y", "EDITOR": "vi", "C": ""}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        workenv.parse_env(("=1",), environ)


def test_user_is_numeric_uid_gid():
    assert workenv.parse_user("1234:99") == "1234:99"
    assert workenv.parse_user("1234") == "1234:1234"
    assert workenv.parse_user(None).split(":")[0].isdigit()
    for bad in ("root", "1000:staff", ""):
        with pytest.raises(ConfigError, match="--user"):
            workenv.parse_user(bad)


def test_exit_code_is_the_first_failure_and_the_table_names_it():
    def res(name, code, emulated=False):
        return workenv.CellResult(cell=name, image="i", platform="p", emulated=emulated,
                                  exit_code=code, seconds=1.5, oom=False, timed_out=False)

    result = workenv.RunResult(run_id="r", results=(res("go1.21-a", 0), res("go1.21-b", 0, True),
                                                    res("go1.22-a", 2), res("go1.22-b", 1, True)))
    assert result.exit_code == 2
    table = result.table().splitlines()
    assert table[2].split()[:2] == ["go1.21-b", "0"] and "emulated (qemu)" in table[2]
    assert table[3].split()[:2] == ["go1.22-a", "2"]
    assert table[-1] == "2 of 4 passed; failed: go1.22-a, go1.22-b"
    assert workenv.RunResult(run_id="r", results=(res("a", 0),)).exit_code == 0


def test_several_cells_are_refused_where_one_is_needed(matrix):
    cells = select(matrix, Selection(go=("1.22",), variants=("slim",)))
    with pytest.raises(ConfigError, match="match 4 .go1.22-slim-linux-amd64, go1.22-slim-linux-arm64, "
                                          "go1.22-slim-linux-arm-v7, go1.22-slim-linux-arm-v6.: narrow"):
        workenv.one_cell(cells, "gobuild shell")
    workenv.one_cell(cells[:1], "gobuild shell")


def test_shell_is_bash_in_bookworm_and_busybox_sh_in_slim(matrix):
    assert workenv.shell_command(target(matrix, variant="bookworm")) == ("bash",)
    assert workenv.shell_command(target(matrix, variant="slim")) == ("sh",)


def test_relay_prefixes_whole_lines_of_parallel_cells(capfdbinary):
    relay = workenv.Relay(prefix="go1.22")
    relay(b"ok  a\nFAIL", False)
    relay(b" b\n", False)
    relay(b"warn", True)
    relay.close()
    out, err = capfdbinary.readouterr()
    assert out == b"[go1.22] ok  a\n[go1.22] FAIL b\n"
    assert err == b"[go1.22] warn\n"
    plain = workenv.Relay(stdout_to_stderr=True)  # --json: stdout carries only the JSON
    plain(b"raw", False)
    out, err = capfdbinary.readouterr()
    assert (out, err) == (b"", b"raw")


def test_the_interactive_docker_run_is_the_same_container_as_the_api_one():
    spec = engine.Spec(image="gobuild/go:1.22.10-slim-arm64", command=("sh", "-c", "x", "--rm"),
                       role="shell", platform="linux/arm64", network=True,
                       environment={"SECRET": "s3cret", "GOFLAGS": "-p=1"},
                       limits=engine.Limits(cpus=1.5, memory=512 * 2**20, cpuset="0"),
                       volumes={"vol": "/c"}, user="1234:1234", working_dir="/work",
                       binds=(engine.Bind(source="/home/me/mod", target="/work"),))
    labels = engine.labels("run1")
    argv = engine.docker_run_argv(spec, name="gobuild-shell-run1-x", labels=labels, tty=True,
                                  env_file="/tmp/env")
    assert argv[:4] == ["docker", "run", "--interactive", "--pull=never"]
    assert "--tty" in argv and "--rm" in argv

    def after(flag):
        return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]

    assert after("--name") == ["gobuild-shell-run1-x"]
    assert sorted(after("--label")) == sorted(f"{k}={v}" for k, v in labels.items())
    assert after("--network") == ["bridge"] and after("--platform") == ["linux/arm64"]
    assert after("--cpus") == ["1.5"] and after("--memory") == after("--memory-swap") == [str(512 * 2**20)]
    assert after("--cpuset-cpus") == ["0"] and after("--pids-limit") == ["4096"]
    assert sorted(after("--volume")) == ["/home/me/mod:/work:rw", "vol:/c:rw"]
    assert after("--user") == ["1234:1234"] and after("--workdir") == ["/work"]
    assert after("--env-file") == ["/tmp/env"] and "--env" not in argv  # values stay off the command line
    assert "s3cret" not in " ".join(argv)
    with pytest.raises(ValueError, match="env_file"):
        engine.docker_run_argv(spec, name="n", labels={}, tty=False)
    end = argv.index("--", 4)
    assert argv[end + 1:] == ["gobuild/go:1.22.10-slim-arm64", "sh", "-c", "x", "--rm"]
    kept = engine.docker_run_argv(spec, name="n", labels={}, tty=False, keep=True, env_file="e")
    assert "--rm" not in kept[:kept.index("--")] and "--tty" not in kept
    none = engine.docker_run_argv(engine.Spec(image="i", command=("sh",), role="r"), name="n",
                                  labels={}, tty=False)
    assert none[none.index("--network") + 1] == "none"


def test_an_unknown_create_argument_is_not_silently_dropped(monkeypatch):
    real = engine.create_kwargs
    monkeypatch.setattr(engine, "create_kwargs",
                        lambda spec, **kw: {**real(spec, **kw), "shm_size": "1g"})
    with pytest.raises(ValueError, match="shm_size"):
        engine.docker_run_argv(engine.Spec(image="i", command=("sh",), role="r"), name="n",
                               labels={}, tty=False)


def test_caches_to_prune_by_last_use():
    now = 1_000_000

    def info(name, last_use, created=now - 10):
        return cache.CacheInfo(name=name, kind="build", go="1.22.10", platform="linux/amd64",
                               user="0:0", size=1, created=created, last_use=last_use)

    caches = [info("fresh", now - 60), info("old", now - 40 * 86400),
              info("never-used-old", None, created=now - 40 * 86400), info("never-used-new", None)]
    assert [c.name for c in cache.stale(caches, 30 * 86400, now)] == ["old", "never-used-old"]
    assert len(cache.stale(caches, None, now)) == 4


def test_timeout_parses_durations():
    assert workenv.parse_timeout("90m") == 5400
    with pytest.raises(ConfigError, match="--timeout"):
        workenv.parse_timeout("soon")


def test_run_refuses_a_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        workenv.check_folder(Path(tmp_path / "nope"))


def test_commands_have_help_with_examples(cli):
    for args in (("run",), ("shell",), ("fit",), ("cache",), ("cache", "ls"), ("cache", "prune")):
        result = cli(*args, "--help")
        assert result.exit_code == 0 and "Examples" in result.output, args


def test_run_takes_the_command_after_its_options_with_or_without_dashes(cli, monkeypatch):
    seen = []
    monkeypatch.setattr(workenv, "run", lambda inputs, opts, **kw: seen.append(opts) or
                        workenv.RunResult(run_id="r", results=()))
    assert cli("run", "--go", "1.22", "--", "go", "test", "-v", "./...").exit_code == 0
    assert cli("run", "-e", "A=1", "go", "vet", "-x").exit_code == 0
    assert [o.command for o in seen] == [("go", "test", "-v", "./..."), ("go", "vet", "-x")]
    assert seen[1].environment == {"A": "1"} and seen[1].network and seen[1].images.build
    bad = cli("run", "--no-build", "--registry", "r.example/x", "--", "true")
    assert bad.exit_code == 2 and "exclude each other" in bad.output


def test_a_mistyped_option_is_a_usage_error_not_the_command(cli, monkeypatch):
    seen = []
    monkeypatch.setattr(workenv, "run", lambda inputs, opts, **kw: seen.append(opts) or
                        workenv.RunResult(run_id="r", results=()))
    for args in (("run", "--platfrom", "x", "--", "true"), ("fit", "--platfrom", "x", "--", "true")):
        done = cli(*args)
        assert done.exit_code == 2 and "--platfrom" in done.output, (args, done.output)
    assert seen == []


class FakeEngine:
    """Only what interactive() asks of the engine: its volumes, and a container by name."""

    def __init__(self):
        self.removed = []
        fake = self

        class Ctr:
            def __init__(self, name):
                self.name = name

            def remove(self, **kw):
                fake.removed.append((self.name, kw))

        self.volumes = type("V", (), {"get": staticmethod(lambda name: name)})()
        self.containers = type("C", (), {"get": staticmethod(Ctr)})()


@pytest.mark.parametrize("exit_code", [0, 3])
def test_interactive_runs_the_labelled_container_with_an_env_file_and_removes_both(
        monkeypatch, exit_code):
    monkeypatch.setattr(engine.shutil, "which", lambda name: "/usr/bin/docker")
    monkeypatch.setattr(engine.time, "time", lambda: 1_700_000_000.0)  # labels carry the time
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/mine.sock")
    seen = {}

    def fake_run(argv, env, check):
        path = argv[argv.index("--env-file") + 1]
        seen.update(argv=argv, env=env, path=path, mode=os.stat(path).st_mode & 0o777,
                    text=Path(path).read_text())
        return subprocess.CompletedProcess(argv, exit_code)

    monkeypatch.setattr(engine.subprocess, "run", fake_run)
    client = FakeEngine()
    spec = engine.Spec(image="img", command=("sh",), role="shell", volumes={"vol": "/c"},
                       environment={"DOCKER_HOST": "tcp://elsewhere:2375", "GOFLAGS": "-p=1"})
    assert engine.interactive(client, spec, "run1") == exit_code
    argv = seen["argv"]
    name = argv[argv.index("--name") + 1]
    assert argv[0] == "/usr/bin/docker" and "--rm" in argv and name.startswith("gobuild-shell-run1-")
    labels = [argv[i + 1] for i, a in enumerate(argv) if a == "--label"]
    assert sorted(labels) == sorted(f"{k}={v}" for k, v in engine.labels("run1").items())
    # The container's DOCKER_HOST is the container's: the CLI keeps talking to our engine.
    assert seen["env"]["DOCKER_HOST"] == "unix:///run/mine.sock" and "GOFLAGS" not in seen["env"]
    assert seen["text"] == "DOCKER_HOST=tcp://elsewhere:2375\nGOFLAGS=-p=1\n"
    assert seen["mode"] == 0o600 and not Path(seen["path"]).exists()  # removed afterwards
    assert client.removed == [(name, {"force": True, "v": True})]


def test_interactive_removes_the_container_and_env_file_when_interrupted(monkeypatch):
    monkeypatch.setattr(engine.shutil, "which", lambda name: "/usr/bin/docker")
    paths = []

    def interrupted(argv, env, check):
        paths.append(argv[argv.index("--env-file") + 1])
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.subprocess, "run", interrupted)
    client = FakeEngine()
    spec = engine.Spec(image="img", command=("sh",), role="shell", environment={"A": "1"})
    with pytest.raises(KeyboardInterrupt):
        engine.interactive(client, spec, "run2")
    assert len(client.removed) == 1 and not Path(paths[0]).exists()


def test_a_line_break_in_a_value_cannot_go_to_an_interactive_container():
    with pytest.raises(engine.EngineError, match="line break"):
        engine.env_file_text({"A": "one\ntwo"})


@pytest.mark.parametrize("engine_arch", ["amd64", "arm64"])
def test_targets_mark_as_emulated_the_cells_not_of_the_engines_architecture(root, monkeypatch,
                                                                            engine_arch):
    from builder.inputs import Inputs

    monkeypatch.setattr(engine, "facts", lambda client: engine.EngineFacts(**FACTS, arch=engine_arch))
    monkeypatch.setattr(workenv, "ensure_images",
                        lambda client, cells, lock, templates, opts, log: {c.id: f"img-{c.id}" for c in cells})
    inputs = Inputs(matrix_path=root / "images" / "matrix.yaml", lock_path=root / "images" / "lock.json",
                    templates=root / "images", selection=Selection(
                        go=("1.22",), platforms=("linux/amd64", "linux/arm64"), variants=("slim",)))
    chosen = workenv.targets(None, inputs, workenv.EnvOptions(), "1234:1234", lambda m: None)
    marked = {t.cell.arch: t.emulated for t in chosen}
    assert marked == {"amd64": engine_arch != "amd64", "arm64": engine_arch != "arm64"}
    assert [t.image for t in chosen] == [f"img-{t.cell.id}" for t in chosen]


def test_a_folder_with_a_colon_is_refused_before_anything_is_made(tmp_path):
    odd = tmp_path / "a:b"
    odd.mkdir()
    with pytest.raises(ConfigError, match="has ':' in its path") as caught:
        workenv.check_folder(odd)
    assert "\n" not in caught.value.message
    assert workenv.check_folder(tmp_path) == tmp_path.resolve()


def test_an_engine_refusal_in_one_cell_is_its_row_and_the_others_go_on(matrix, monkeypatch, tmp_path):
    def fake_run(client, spec, run_id, on_output=None):
        if spec.platform == "linux/arm64":
            raise engine.EngineError("the engine refused to create a container: no such platform")
        return engine.Finished(exit_code=0, output="", oom_killed=False, oom_events=0, timed_out=False)

    monkeypatch.setattr(engine, "run", fake_run)
    opts = workenv.RunOptions(command=("true",), folder=tmp_path, user="1234:1234")
    logged = []
    results = tuple(workenv.run_cell(None, target(matrix, platform=p), opts, "r", workenv.Relay(),
                                     logged.append)
                    for p in ("linux/arm64", "linux/amd64"))
    assert [r.exit_code for r in results] == [125, 0]
    assert results[0].refused and "engine refused" in results[0].note
    table = workenv.RunResult(run_id="r", results=results)
    assert table.exit_code == 125 and "failed: go1.22-slim-linux-arm64" in table.table()
    assert logged == ["go1.22-slim-linux-arm64: the engine refused to create a container: no such platform"]


@pytest.mark.parametrize(("docker_host", "local"), [
    (None, True), ("unix:///var/run/docker.sock", True), ("tcp://127.0.0.1:2375", True),
    ("tcp://localhost:2376", True), ("tcp://[::1]:2375", True),
    ("tcp://build.example:2376", False), ("ssh://me@build.example", False), ("ssh://me@localhost", True),
])
def test_run_and_shell_need_the_engine_on_this_machine(docker_host, local):
    if local:
        workenv.check_local_engine(docker_host, "gobuild run")
    else:
        with pytest.raises(ConfigError, match=r"^gobuild run needs the engine on this machine.*empty"):
            workenv.check_local_engine(docker_host, "gobuild run")


def test_run_refuses_a_remote_engine_before_asking_it_anything(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "tcp://build.example:2376")
    monkeypatch.setattr(engine, "client", lambda: pytest.fail("the engine was asked"))
    opts = workenv.RunOptions(command=("true",), folder=tmp_path, user="1234:1234")
    with pytest.raises(ConfigError, match="DOCKER_HOST=tcp://build.example:2376 is elsewhere"):
        workenv.run(None, opts)
