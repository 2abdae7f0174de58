"""Integration fixtures: the real engine (required when CI is set), bases, a local registry.

Everything a test starts here is stopped by its own id or pid; nothing is killed by name.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOBUILD = str(Path(sys.executable).parent / "gobuild")


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def gobuild(*args: str, cwd: Path = ROOT, env: dict | None = None, check: bool = True,
            timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run the installed console script as a user would."""
    proc = subprocess.run([GOBUILD, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"gobuild {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        c = docker.from_env(timeout=600)
        c.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no engine
        msg = f"no Docker engine answers ({type(exc).__name__}): run 'make setup'"
        if os.environ.get("CI"):
            pytest.fail(f"integration tests are required in CI: {msg}")
        pytest.skip(msg)
    return c


@pytest.fixture(scope="session")
def bases(docker_client):
    """The local Debian bases (no registry is reachable here): built once, kept afterwards."""
    gobuild("base", "--platform", "linux/amd64", "--platform", "linux/arm64", timeout=1200)


@pytest.fixture(scope="session")
def _second_engine_once(tmp_path_factory, docker_client):
    """One second dockerd for the whole session (tests/second_engine.py: its own network
    namespace, data-root and cgroup parent), torn down by what it recorded."""
    from tests.second_engine import SecondEngine

    try:
        engine = SecondEngine(tmp_path_factory.mktemp("second"))
        engine.__enter__()
    except Exception as exc:  # noqa: BLE001 - the tests that need it cannot run without it
        pytest.fail(f"cannot start a second dockerd (root, ip, nsenter and dockerd needed): {exc}")
    yield engine
    engine.close()


@pytest.fixture
def second_engine(_second_engine_once):
    """The session's second engine, running and linked: a test may cut its link, stop or kill
    it (it is started again here, on the same data-root, so what was loaded stays). Each test
    gets it without containers, volumes or networks (a failed test's leftovers are not the next
    one's); its images stay."""
    engine = _second_engine_once
    engine.restore_link()
    engine.start()
    client = engine.client()
    for container in client.containers.list(all=True):
        container.remove(force=True)
    for volume in client.volumes.list():
        volume.remove(force=True)
    client.networks.prune()
    return engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def registry(tmp_path_factory, docker_client):
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1, with its own config and storage."""
    exe = shutil.which("docker-registry")
    if not exe:
        pytest.fail("docker-registry is not installed: run 'make setup'")
    folder = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = folder / "config.yml"
    config.write_text(json.dumps({
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    log = open(folder / "registry.log", "w")  # noqa: SIM115 - open for the server's lifetime
    proc = subprocess.Popen([exe, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"docker-registry exited: {(folder / 'registry.log').read_text()[-500:]}")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
