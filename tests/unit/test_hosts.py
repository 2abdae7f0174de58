"""Fleets without engines: --host and gobuild.yaml parsing, routing of platforms to hosts, the
buildx multi-node command lines, the merge of per-host results (results.json, bench.txt with
host: lines, compare --col host), a lost host's remaining runs, and doctor on an old engine."""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from builder import doctor, fleet, hosts
from builder.bench import benchfmt, compare, loaded, output
from builder.bench.options import BenchOptions
from builder.bench.results import Config, Record, Results, Sample, Target
from builder.cli import main
from builder.engine import EngineFacts
from builder.errors import BenchError, ConfigError, EngineError

# ---- --host values ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "label", "endpoint", "platforms"), [
    ("local", "local", "local", ()),
    ("ssh://pi@pi5.local", "pi5.local", "ssh://pi@pi5.local", ()),
    ("pi5=ssh://pi@pi5.local:2222", "pi5", "ssh://pi@pi5.local:2222", ()),
    ("tcp://10.0.0.5:2375", "10.0.0.5-2375", "tcp://10.0.0.5:2375", ()),
    ("unix:///var/run/docker.sock", "local", "unix:///var/run/docker.sock", ()),
    ("unix:///tmp/x/second.sock", "second", "unix:///tmp/x/second.sock", ()),
    ("graviton", "graviton", "graviton", ()),  # a Docker context
    ("label=board,platforms=linux/arm64,url=tcp://10.0.0.7:2375", "board", "tcp://10.0.0.7:2375",
     ("linux/arm64",)),
    ("url=ssh://pi@pi5,platforms=linux/arm64+linux/arm/v7", "pi5", "ssh://pi@pi5",
     ("linux/arm64", "linux/arm/v7")),
    # the short forms take ,KEY=VALUE options after the endpoint (README, --help)
    ("pi5=tcp://127.0.0.1:9,platforms=linux/arm64", "pi5", "tcp://127.0.0.1:9", ("linux/arm64",)),
    ("tcp://10.0.0.5:2375,platforms=linux/arm64", "10.0.0.5-2375", "tcp://10.0.0.5:2375", ("linux/arm64",)),
    ("pi5=ssh://pi@pi5.local,platforms=linux/arm64+linux/arm/v7", "pi5", "ssh://pi@pi5.local",
     ("linux/arm64", "linux/arm/v7")),
    ("graviton,platforms=linux/arm64", "graviton", "graviton", ("linux/arm64",)),
    ("tcp://[::1]:9", "1-9", "tcp://[::1]:9", ()),  # IPv6: a label without colons
    ("tcp://[fe80::1]:2375", "fe80-1-2375", "tcp://[fe80::1]:2375", ()),
])
def test_host_forms(text, label, endpoint, platforms):
    h = hosts.parse(text)
    assert (h.label, h.endpoint, h.platforms) == (label, endpoint, platforms)


@pytest.mark.parametrize(("text", "says"), [
    ("http://pi5:2375", "unknown scheme http://"),
    ("tcp://", "names no address"),
    ("label=x,url=tcp://a:1,colour=red", "unknown key(s) colour"),
    ("label=x,url=tcp://a:1,platforms=linux/sparc", "unknown platform"),
    ("label=x,url=tcp://a:1,timeout=soon", "timeout='soon'"),
    ("label=x,url=ssh://pi@pi5,tls=/tmp", "TLS files go with tcp://"),
    ("label=x,url=tcp://a:2376,tls=/nonexistent/certs", "no TLS file /nonexistent/certs/ca.pem"),
    ("bad label=tcp://a:1", "label 'bad label'"),
    ("", "give an endpoint"),
    ("tcp://:", "names no host"),
    ("tcp://a:notaport", "the port is not a number"),
    ("tcp://127.0.0.1:2376,tls", "'tls' is not KEY=VALUE"),
    ("x=tcp://a:1,timeout=5,timeout=6", "timeout= given twice"),
    ("x=tcp://a:1,colour=red", "unknown key(s) colour"),
])
def test_bad_hosts_are_one_line_with_the_fix(text, says):
    with pytest.raises(ConfigError) as err:
        hosts.parse(text)
    assert says in err.value.message and "\n" not in err.value.message


def test_tls_folder_names_the_three_files(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    three = hosts.TLSFiles(ca=tmp_path / "ca.pem", cert=tmp_path / "cert.pem", key=tmp_path / "key.pem")
    for text in (f"label=x86,url=tcp://10.0.0.5:2376,tls={tmp_path}", f"x86=tcp://10.0.0.5:2376,tls={tmp_path}",
                 f"tcp://10.0.0.5:2376,tls={tmp_path}",
                 (f"x86=tcp://10.0.0.5:2376,tlscacert={tmp_path}/ca.pem,tlscert={tmp_path}/cert.pem,"
                  f"tlskey={tmp_path}/key.pem")):
        h = hosts.parse(text)
        assert (h.endpoint, h.tls) == ("tcp://10.0.0.5:2376", three), text
    assert fleet.docker_env(h, {}) == {"DOCKER_HOST": "tcp://10.0.0.5:2376", "DOCKER_TLS_VERIFY": "1",
                                       "DOCKER_CERT_PATH": str(tmp_path)}


def test_tls_files_of_several_folders_are_refused_at_parse_time(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem", "other-key.pem"):
        (tmp_path / name).write_text("x")
    with pytest.raises(ConfigError, match="one folder"):
        hosts.parse(f"x=tcp://a:2376,tlscacert={tmp_path}/ca.pem,tlscert={tmp_path}/cert.pem,"
                    f"tlskey={tmp_path}/other-key.pem")


def test_config_file_hosts_and_the_order_of_sources(tmp_path):
    (tmp_path / "gobuild.yaml").write_text(
        "hosts:\n  - local\n  - label: pi5\n    url: ssh://pi@pi5.local\n    platforms: [linux/arm64]\n"
        "  - board=tcp://10.0.0.7:2375\n")
    found = hosts.resolve((), None, tmp_path)
    assert [(h.label, h.endpoint, h.platforms) for h in found] == [
        ("local", "local", ()), ("pi5", "ssh://pi@pi5.local", ("linux/arm64",)),
        ("board", "tcp://10.0.0.7:2375", ())]
    # --host wins over the file; no file and no --host: no fleet
    assert [h.label for h in hosts.resolve(("x=tcp://a:1",), None, tmp_path)] == ["x"]
    assert hosts.resolve((), None, tmp_path / "nothing-here") == ()
    with pytest.raises(ConfigError, match="given twice"):
        hosts.resolve(("a=tcp://a:1", "a=tcp://b:1"), None, None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: local\n")
    with pytest.raises(ConfigError, match="must be a list"):
        hosts.resolve((), bad, None)


def test_cli_refuses_a_bad_host_before_any_engine():
    result = CliRunner().invoke(main, ["bench", "--host", "ftp://pi5"])
    assert result.exit_code == ConfigError.exit_code
    assert "unknown scheme ftp://" in result.output and "Traceback" not in result.output


# ---- routing and buildx ---------------------------------------------------------------------

def _facts(arch: str, version: str = "26.1.5", cgroup: str = "1") -> EngineFacts:
    return EngineFacts(version=version, api_version="1.45", os="linux", arch=arch, cgroup_version=cgroup,
                       cgroup_driver="cgroupfs", storage_driver="overlay2", cpus=4,
                       memory_bytes=8 * 2**30, kernel="6.1")


def _reached(text: str, arch: str | None) -> hosts.Reached:
    h = hosts.parse(text)
    if arch is None:
        return hosts.Reached(host=h, error="does not answer")
    return hosts.Reached(host=h, client=object(), facts=_facts(arch))


def test_each_platform_goes_to_the_host_that_builds_it_natively():
    fleet_ = [_reached("local", "amd64"), _reached("label=board,platforms=linux/arm64,url=tcp://a:1", "amd64"),
              _reached("pi=tcp://b:1", "arm")]
    routes = fleet.route(["linux/amd64", "linux/arm64", "linux/arm/v7"], fleet_)
    assert [(r.platform, r.host, r.native) for r in routes] == [
        ("linux/amd64", "local", True), ("linux/arm64", "board", True),
        ("linux/arm/v7", "local", False)]  # nobody declares arm/v7 (pi's engine says arm): emulated


def test_an_unreachable_host_gets_nothing():
    routes = fleet.route(["linux/arm64"], [_reached("local", "amd64"), _reached("pi5=tcp://b:1", None)])
    assert [(r.host, r.native) for r in routes] == [("local", False)]
    assert fleet.route(["linux/arm64"], [_reached("pi5=tcp://b:1", None)]) == []


def test_buildx_create_lines_one_node_per_host():
    argvs = fleet.buildx_create_argvs("fleet", [("fleet-local", "default", ("linux/amd64",)),
                                                ("fleet-pi5", "ssh://pi@pi5", ("linux/arm64", "linux/arm/v7"))])
    assert argvs == [
        ["docker", "buildx", "create", "--name", "fleet", "--driver", "docker-container",
         "--node", "fleet-local", "--platform", "linux/amd64", "default"],
        ["docker", "buildx", "create", "--append", "--name", "fleet", "--driver", "docker-container",
         "--node", "fleet-pi5", "--platform", "linux/arm64,linux/arm/v7", "ssh://pi@pi5"]]


def test_an_existing_builder_is_reused_and_a_failed_create_says_what_it_needs():
    ran = []
    assert fleet.ensure_builder("fleet", [_reached("local", "amd64")],
                                lambda argv: ran.append(argv) or 0) == []
    assert ran == [["docker", "buildx", "inspect", "fleet"]]
    with pytest.raises(Exception, match="moby/buildkit image"):
        fleet.ensure_builder("fleet", [_reached("local", "amd64")], lambda argv: 1)


def test_docker_env_per_kind():
    user = {"DOCKER_HOST": "tcp://127.0.0.1:2375", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/c",
            "PATH": "/bin"}
    assert fleet.docker_env(hosts.parse("local"), user) is None  # the user's engine, as it is
    assert fleet.environment_for(hosts.parse("local"), user) == user
    assert fleet.docker_env(hosts.parse("graviton"), user) == {"DOCKER_CONTEXT": "graviton"}
    assert fleet.environment_for(hosts.parse("graviton"), user) == {"DOCKER_CONTEXT": "graviton", "PATH": "/bin"}
    assert fleet.docker_env(hosts.parse("pi5=ssh://pi@pi5"), user) == {"DOCKER_HOST": "ssh://pi@pi5"}
    # a bare tcp:// takes the user's TLS settings, as the docker CLI's -H does
    assert fleet.docker_env(hosts.parse("x=tcp://10.0.0.5:2376"), user) == {
        "DOCKER_HOST": "tcp://10.0.0.5:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/c"}


def test_local_builds_on_the_engine_of_docker_host(monkeypatch):
    """--host local with DOCKER_HOST set: buildx (the docker CLI) gets the DOCKER_HOST the
    Python client also uses."""
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2999")
    monkeypatch.setenv("BUILDX_BUILDER", "mine")
    with fleet._docker_env(fleet.docker_env(hosts.parse("local"), os.environ)):
        assert os.environ["DOCKER_HOST"] == "tcp://127.0.0.1:2999"
        assert "BUILDX_BUILDER" not in os.environ
    with fleet._docker_env(fleet.docker_env(hosts.parse("b=tcp://10.0.0.9:2375"), os.environ)):
        assert os.environ["DOCKER_HOST"] == "tcp://10.0.0.9:2375"
    assert os.environ["DOCKER_HOST"] == "tcp://127.0.0.1:2999" and os.environ["BUILDX_BUILDER"] == "mine"


# ---- clients, built without an engine (version given: docker-py asks nothing) -------------

def test_an_ssh_client_is_built_with_the_ssh_binary():
    c = hosts.make_client(hosts.parse("pi5=ssh://pi@127.0.0.1:9"), version="1.45")
    adapter = c.api.adapters["http+docker://ssh"]
    assert type(adapter).__name__ == "SSHHTTPAdapter" and adapter.ssh_client is None  # shell_out: no paramiko session


def test_tcp_clients_have_keepalive_and_tls_speaks_https(tmp_path, monkeypatch):
    c = hosts.make_client(hosts.parse("x=tcp://10.0.0.5:2375"), version="1.45", environ={})
    assert c.api.base_url == "http://10.0.0.5:2375"
    for prefix in ("http://", "https://"):
        options = c.api.adapters[prefix].poolmanager.connection_pool_kw["socket_options"]
        assert all(o in options for o in hosts.KEEPALIVE) and len(hosts.KEEPALIVE) >= 4
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    c = hosts.make_client(hosts.parse(f"x=tcp://10.0.0.5:2376,tls={tmp_path}"), version="1.45")
    assert c.api.base_url == "https://10.0.0.5:2376"
    assert c.api.verify == str(tmp_path / "ca.pem") and c.api.cert == (str(tmp_path / "cert.pem"),
                                                                      str(tmp_path / "key.pem"))
    # DOCKER_TLS_VERIFY / DOCKER_CERT_PATH apply to a tcp:// without tls=
    c = hosts.make_client(hosts.parse("x=tcp://10.0.0.5:2376"), version="1.45",
                          environ={"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)})
    assert c.api.base_url == "https://10.0.0.5:2376" and c.api.verify == str(tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match="DOCKER_CERT_PATH"):
        hosts.make_client(hosts.parse("x=tcp://10.0.0.5:2376"), version="1.45",
                          environ={"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path / "none")})


def _context(tmp_path, monkeypatch, name: str, files: tuple[str, ...], skip: bool = False) -> None:
    """A Docker context as the docker CLI writes it, in a DOCKER_CONFIG of the test's own."""
    from docker.context import config as ctxconfig

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    meta = tmp_path / "contexts" / "meta" / ctxconfig.get_context_id(name)
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {
        "docker": {"Host": "tcp://10.0.0.5:2376", "SkipTLSVerify": skip}}}))
    tls = tmp_path / "contexts" / "tls" / ctxconfig.get_context_id(name) / "docker"
    tls.mkdir(parents=True)
    for f in files:
        (tls / f).write_text("x")


def test_a_context_with_only_a_ca_still_speaks_tls(tmp_path, monkeypatch):
    _context(tmp_path, monkeypatch, "caonly", ("ca.pem",))
    c = hosts.make_client(hosts.parse("caonly"), version="1.45")
    assert c.api.base_url == "https://10.0.0.5:2376" and c.api.verify.endswith("/ca.pem")


def test_a_context_with_a_client_cert_and_skip_verify(tmp_path, monkeypatch):
    _context(tmp_path, monkeypatch, "certs", ("cert.pem", "key.pem"), skip=True)
    c = hosts.make_client(hosts.parse("certs"), version="1.45")
    assert c.api.base_url == "https://10.0.0.5:2376" and c.api.verify is False
    assert c.api.cert[0].endswith("/cert.pem")


def test_an_unknown_context_is_one_missing_line_in_doctor(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    reached = hosts.reach(hosts.parse("nosuchctx"))
    assert not reached.ok and "no Docker context 'nosuchctx'" in reached.error
    lines = doctor.host_checks(reached)
    assert len(lines) == 1 and not lines[0].ok


def test_reason_shows_the_message_of_an_unknown_error():
    assert hosts.reason(RuntimeError("Install paramiko package to enable ssh:// support\nmore")) == \
        "RuntimeError: Install paramiko package to enable ssh:// support"
    assert hosts.reason(OSError("[Errno 111] Connection refused")) == "connection refused"


def test_one_engine_named_twice_is_one_host():
    a, b, c = _reached("local", "amd64"), _reached("me=tcp://127.0.0.1:2375", "amd64"), _reached("pi5=tcp://p:1", "arm64")
    said: list[str] = []
    kept = hosts.dedupe([replace(a, engine_id="E1"), replace(b, engine_id="E1"), replace(c, engine_id="E2")],
                        said.append)
    assert [r.host.label for r in kept] == ["local", "pi5"]
    assert len(said) == 1 and said[0].startswith("host me (tcp://127.0.0.1:2375) is the engine of host local")


# ---- merge --------------------------------------------------------------------------------

def _results(label: str, arch: str, runs: list[float], failed: int = 0) -> Results:
    t = Target(ref=f"gobuild/go:1.22.10-slim-{arch}", image_id="sha256:1", digest=None,
               platform=f"linux/{arch}", arch=arch, go_version="1.22.10", emulated=False, volume="v")
    cfg = Config(suite="tooling", name="GoTooling/cmd=list-deps", target=t, argv=("go", "list"), gomaxprocs=1)
    rec = Record(config=cfg)
    for v in runs:
        rec = rec.add(Sample(values={"wall_ns": v}))
    for _ in range(failed):
        rec = rec.add(Sample(exit_code=-1, error="boom"))
    return Results(run_id="r1", gobuild_version="0", started="s", finished="f", status="complete",
                   rounds_done=len(runs), options={}, limits={"requested": {}, "effective": {"cpus": 1}},
                   host={"label": label, "cpu_model": f"{label} CPU"}, targets=(t,), records=(rec,))


def _opts(tmp_path: Path, runs: int = 4) -> BenchOptions:
    return BenchOptions(images=(), cpus=1.0, memory=2**30, cpuset=None, suites=("tooling",), runs=runs,
                        warmup=0, gomaxprocs=(1,), workload=None, workload_modules=2, workload_packages=2,
                        workload_size=None, compile_target="workload", bench_package="./benchpkg",
                        output=tmp_path, seed=1, wait_quiet=None, quiet_load=None)


def _outcome(text: str, arch: str, results, status="complete", error=None) -> fleet.HostOutcome:
    return fleet.HostOutcome(host=hosts.parse(text), status=status, error=error, facts=_facts(arch),
                             results=results, profiles={})


def test_merged_results_name_every_host_and_bench_txt_has_a_host_line(tmp_path):
    outcomes = [_outcome("local", "amd64", _results("local", "amd64", [1e9, 1.1e9, 1.2e9, 1.3e9])),
                _outcome("pi5=tcp://b:1", "amd64", _results("pi5", "amd64", [2e9, 2.1e9, 2.2e9, 2.3e9])),
                fleet.HostOutcome(host=hosts.parse("gone=tcp://c:1"), status="unreachable",
                                  error="does not answer")]
    merged, _ = fleet.merge(outcomes, _opts(tmp_path), "r1", "s", tmp_path)
    data = merged.to_json()
    assert data["status"] == "partial"
    assert [(h["label"], h["status"]) for h in data["hosts"]] == [
        ("local", "complete"), ("pi5", "complete"), ("gone", "unreachable")]
    assert [t["config"] for t in data["targets"]] == ["gobuild/go:1.22.10-slim-amd64@local",
                                                      "gobuild/go:1.22.10-slim-amd64@pi5"]
    assert {r["host"] for r in data["suites"]["tooling"]} == {"local", "pi5"}
    parsed = benchfmt.parse(output.bench_txt(merged))
    assert sorted({r.config["host"] for r in parsed}) == ["local", "pi5"]
    assert {r.config["host"]: r.config["cpu"] for r in parsed} == {"local": "local CPU", "pi5": "pi5 CPU"}
    assert all("config" not in r.config for r in parsed)  # the host line keeps them apart
    by_host = {h: [r.values["ns/op"] for r in parsed if r.config["host"] == h] for h in ("local", "pi5")}
    assert by_host == {"local": [1e9, 1.1e9, 1.2e9, 1.3e9], "pi5": [2e9, 2.1e9, 2.2e9, 2.3e9]}
    # read back: compare --col host puts the hosts side by side
    run = loaded.from_json(json.loads(json.dumps(data)), tmp_path / "results.json")
    cmp = compare.compare_columns(run, "host")
    assert (cmp.base, cmp.others) == ("local", ("pi5",))
    assert [r.table for r in cmp.rows] == ["go1.22.10 linux/amd64"]
    assert cmp.rows[0].significant and cmp.rows[0].verdict == "worse"


def test_a_lost_hosts_remaining_runs_fail_with_the_reason_and_keep_what_was_measured():
    res = fleet.remaining_failed(_results("pi5", "arm64", [1e9, 1.1e9]), 5, "host pi5 lost: timed out")
    rec = res.records[0]
    assert rec.values("wall_ns") == [1e9, 1.1e9]
    assert [s.error for s in rec.failed] == ["host pi5 lost: timed out"] * 3
    assert res.failed_runs == 3


def test_fleet_warnings_in_compare(tmp_path):
    old, _ = fleet.merge([_outcome("local", "amd64", _results("local", "amd64", [1e9] * 4))],
                         _opts(tmp_path), "r1", "s", tmp_path)
    new, _ = fleet.merge([_outcome("local", "amd64", _results("local", "amd64", [1e9] * 4)),
                          _outcome("pi5=tcp://b:1", "arm64", None, "lost", "timed out")],
                         _opts(tmp_path), "r2", "s", tmp_path)
    runs = [loaded.from_json(json.loads(json.dumps(r.to_json())), tmp_path / "results.json") for r in (old, new)]
    warns = compare.fleet_warnings(runs[0], runs[1], "old", "new")
    assert "host pi5 only in new" in warns
    assert "new: host pi5 lost: timed out" in warns


# ---- doctor on an old engine --------------------------------------------------------------

def test_doctor_names_what_engine_20_10_lacks():
    gaps = doctor.engine_gaps(_facts("amd64", version="20.10.24+dfsg1"))
    assert any("SOURCE_DATE_EPOCH (BuildKit 0.11)" in g and "24.0" in g for g in gaps)
    assert any("rewrite-timestamp (BuildKit 0.13)" in g and "26.0" in g for g in gaps)
    assert not any("older than" in g for g in gaps)  # 20.10 is supported


def test_doctor_engine_gaps_by_release():
    assert doctor.engine_gaps(_facts("amd64", version="26.1.5+dfsg1")) == []
    assert [g.split(" before")[0] for g in doctor.engine_gaps(_facts("amd64", version="24.0.7"))] == [
        "no rewrite-timestamp (BuildKit 0.13)"]
    assert any("older than 20.10" in g for g in doctor.engine_gaps(_facts("amd64", version="19.03.15")))
    assert "not understood" in doctor.engine_gaps(_facts("amd64", version="dev"))[0]


def test_doctor_host_lines_for_an_unreachable_and_an_old_engine(monkeypatch):
    monkeypatch.setattr(doctor, "_buildx_on", lambda name, env: doctor.Check(name=f"{name} buildx", ok=True,
                                                                             detail="BuildKit v0.8.2"))
    old = hosts.Reached(host=hosts.parse("old=tcp://a:1"), client=object(), facts=_facts("arm64", "20.10.24"))
    gone = hosts.Reached(host=hosts.parse("gone=tcp://b:1"), error="host gone does not answer")
    report = doctor.Report(checks=[*doctor.host_checks(old), *doctor.host_checks(gone)])
    text = report.text()
    assert "host old" in text and "linux/arm64, 4 CPUs, 8.0 GiB, cgroup v1" in text
    assert "MISSING host old features" in text and "SOURCE_DATE_EPOCH" in text
    assert "MISSING host gone" in text
    assert not report.ok  # an unreachable host fails doctor; an old engine alone does not
    assert doctor.Report(checks=doctor.host_checks(old)).ok


# ---- the fan-out's exit codes (run_bench replaced: what each host's bench does) -------------

@pytest.fixture
def fan_out(monkeypatch, tmp_path):
    """`gobuild bench --host a=... --host b=...` with each host's bench given by `plays`:
    'ok' measures one round; an exception is raised (after one round with 'lost-late');
    'down' does not answer at the start."""
    plays: dict[str, object] = {}
    removed: list[str] = []

    def reach_all(fleet_hosts):
        return [_reached(f"{h.label}={h.endpoint}", None if plays.get(h.label) == "down" else "amd64")
                for h in fleet_hosts]

    def run_bench(client, opts, run_id, progress, *, sink, host_info):
        play = plays[host_info["label"]]
        res = replace(_results(host_info["label"], "amd64", [1e9]), status="running")
        if play == "ok":
            sink(replace(res, status="complete"), {})
            return
        if play == "interrupt":  # Ctrl-C reaches the main thread; the next run is refused
            sink(res, {})
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):
                progress.run_started("round 2")
                time.sleep(0.05)
        sink(res, {})
        raise play

    monkeypatch.setattr(hosts, "reach_all", reach_all)
    monkeypatch.setattr(fleet, "run_bench", run_bench)
    monkeypatch.setattr(fleet, "host_images", lambda r, *a, **k: (("gobuild/go:1.22.10-slim-amd64",), []))
    monkeypatch.setattr(fleet.engine, "remove_labelled", lambda client, run_id: removed.append(run_id))

    def invoke(**given):
        plays.clear()
        plays.update(given)
        args = ["bench", "--image", "gobuild/go:1.22.10-slim-amd64", "--runs", "1", "--output",
                str(tmp_path / "out")]
        for label in given:
            args += ["--host", f"{label}=tcp://{label}.example:2375"]
        result = CliRunner().invoke(main, args)
        data = json.loads((tmp_path / "out" / "results.json").read_text()) \
            if (tmp_path / "out" / "results.json").exists() else None
        return result, data
    return invoke


def _lost_error() -> Exception:
    try:
        raise requests.ConnectionError("Connection aborted")
    except requests.ConnectionError as exc:
        try:
            raise EngineError("the engine stopped answering") from exc
        except EngineError as outer:
            return outer


def test_a_host_that_fails_for_any_reason_makes_the_run_partial(fan_out):
    result, data = fan_out(a="ok", b=BenchError("the workload did not build"))
    assert result.exit_code == 10, result.output
    assert "partial results: host b failed: the workload did not build" in result.output
    assert data["status"] == "partial"
    assert {h["label"]: h["status"] for h in data["hosts"]} == {"a": "complete", "b": "failed"}
    result, _ = fan_out(a="ok", b=RuntimeError("a bug"))
    assert result.exit_code == 10 and "host b failed: a bug" in result.output


def test_when_no_host_completes_the_exit_is_the_class_of_what_stopped_them(fan_out):
    result, data = fan_out(a=BenchError("no workload"), b=BenchError("no workload"))
    assert result.exit_code == 8 and "no host completed the bench" in result.output
    assert data["status"] == "failed"
    result, data = fan_out(a=_lost_error(), b=_lost_error())  # every host lost mid-run
    assert result.exit_code == 5, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: no host completed the bench: host a lost: lost in the middle")
    assert "what was measured is in" in line
    assert {h["status"] for h in data["hosts"]} == {"lost"}


def test_every_host_unreachable_at_the_start_is_the_engines_exit(fan_out):
    result, data = fan_out(a="down", b="down")
    assert result.exit_code == 5, result.output
    assert "no host answers" in result.output and data is None
    result, data = fan_out(a="ok", b="down")
    assert result.exit_code == 10 and data["status"] == "partial"


def test_every_host_complete_is_exit_0(fan_out):
    result, data = fan_out(a="ok", b="ok")
    assert result.exit_code == 0, result.output
    assert data["status"] == "complete"


def test_ctrl_c_writes_what_was_measured_then_exits_130(fan_out):
    result, data = fan_out(a="interrupt")
    assert result.exit_code == 130, result.output
    assert data is not None and data["status"] == "interrupted"
    assert data["hosts"][0]["status"] == "interrupted" and data["rounds_done"] == 1
    assert "what was measured is in" in result.output


def test_cleanup_of_a_host_still_down_names_it(monkeypatch):
    monkeypatch.setattr(hosts, "reach_all", lambda fleet_hosts: [_reached("up=tcp://u:1", "amd64"),
                                                                hosts.Reached(host=hosts.parse("gone=tcp://g:1"),
                                                                              error="host gone (tcp://g:1) does not answer")])
    monkeypatch.setattr(fleet.engine, "remove_stale", lambda client, age: ["removed volume v"])
    result = CliRunner().invoke(main, ["bench", "--cleanup", "--host", "up=tcp://u:1", "--host", "gone=tcp://g:1"])
    assert result.exit_code == 5
    assert "up: removed volume v" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: not cleaned: host gone")


# ---- a bench preparation does only what the selected suites use (fleet tests: sched) ------

def test_preparation_builds_only_what_the_suites_use(tmp_path):
    from builder.bench import runner

    def script(*suites: str) -> str:
        return runner.prep_script(replace(_opts(tmp_path), suites=suites))

    assert "go mod download" not in script("sched") and "go test -c" not in script("sched", "memstats")
    assert "go build -o /gobuild/bin/ ./runner ./sched" in script("sched")
    assert "go mod download all" in script("tooling") and "go test -c" not in script("tooling")
    assert "go test -c" in script("gotest") and "go test -c" in script("sched", "memory")
    assert "go list -deps" in script("compile")


def test_images_with_every_host_unreachable_is_the_engines_exit(monkeypatch):
    monkeypatch.setattr(hosts, "reach_all", lambda fleet_hosts: [
        hosts.Reached(host=h, error=f"host {h.label} ({h.endpoint}) does not answer") for h in fleet_hosts])
    result = CliRunner().invoke(main, ["images", "--host", "a=tcp://a:1", "--host", "b=tcp://b:1",
                                       "--go", "1.22", "--variant", "slim", "--platform", "linux/amd64"])
    assert result.exit_code == 5, result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: no host answers: a: host a")


def test_a_cell_image_missing_on_a_host_is_built_there_without_a_registry(monkeypatch):
    from types import SimpleNamespace

    from builder.matrix import Selection

    tag = "gobuild/go:1.22.10-slim-amd64"
    cell = SimpleNamespace(id="go1.22-slim-linux-amd64")
    on_host: dict[str, dict] = {}
    built: list = []

    def build_images(cells, lock, templates, *, client, log):
        built.append((cells, os.environ.get("DOCKER_HOST")))
        on_host[tag] = {"io.gobuild": "1"}

    monkeypatch.setattr(fleet, "cells_by_tag", lambda client, inputs: {tag: cell})
    monkeypatch.setattr(fleet.pipeline, "build_images", build_images)
    monkeypatch.setattr(fleet.engine, "image_labels", lambda client, ref: on_host.get(ref))
    monkeypatch.setattr(fleet.engine, "image_info", lambda client, ref: {"Architecture": "amd64"})
    inputs = SimpleNamespace(selection=Selection(), lock=lambda: "LOCK", templates=None)
    said: list[str] = []
    refs, skipped = fleet.host_images(_reached("b=tcp://10.0.0.9:2375", "amd64"), inputs, (), False, None,
                                      said.append)
    assert refs == (tag,) and skipped == []
    assert built == [((cell,), "tcp://10.0.0.9:2375")]  # with that host's engine
    assert said[0].startswith("building go1.22-slim-linux-amd64 there")


def test_run_and_shell_on_a_host_elsewhere_are_refused_before_any_engine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hosts, "client", lambda host: pytest.fail("no engine is asked"))
    for args in (["run", "--host", "far=tcp://10.0.0.9:2375", "--", "true"],
                 ["shell", "--host", "far=ssh://pi@pi5.local"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert "needs the engine on this machine, and --host=" in result.output
