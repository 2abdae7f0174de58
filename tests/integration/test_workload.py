"""The generated workload compiles: several shapes built with a real Go toolchain in a real
container (a gobuild slim image), offline, through the file:// GOPROXY the bench uses.

The container is started with testcontainers-python. Its reaper (ryuk) image cannot be pulled
here, so it is disabled and the test removes its container itself, by id.
"""
from __future__ import annotations

import os
import platform
import shlex
import uuid

import pytest

from builder.bench import workload
from builder.lock import load_lock
from builder.matrix import goarch

from .conftest import ROOT, gobuild

# Before testcontainers is first used: it would otherwise start the ryuk reaper from Docker Hub.
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"

SHAPES = [(1, 1), (3, 4), (8, 8), (30, 100), (20, 100)]  # (8, 8): two imports named p0
LABEL = "io.gobuild.test"


@pytest.fixture(scope="module")
def image(docker_client) -> str:
    """The Go 1.22 slim image for this host's architecture, built when missing (once)."""
    arch = goarch(platform.machine())
    version = load_lock(ROOT / "images" / "lock.json").go["1.22"].version
    tag = f"gobuild/go:{version}-slim-{arch}"
    if not docker_client.images.list(name=tag):
        if not docker_client.images.list(name=f"gobuild/base:bookworm-{arch}"):
            gobuild("base", "--platform", f"linux/{arch}", timeout=1200)
        gobuild("images", "--go", "1.22", "--variant", "slim", "--platform", f"linux/{arch}",
                timeout=1200)
    return tag


@pytest.fixture(scope="module")
def container(image, docker_client):
    """One container of the image, idle until the tests exec into it; removed by its id."""
    from testcontainers.core.container import DockerContainer

    run_id = uuid.uuid4().hex[:12]
    box = (DockerContainer(image)
           .with_command(["sleep", "1800"])
           .with_kwargs(labels={LABEL: run_id}, network_disabled=True))
    box.start()
    wrapped = box.get_wrapped_container()
    try:
        yield wrapped
    finally:
        docker_client.containers.get(wrapped.id).remove(force=True)
        assert docker_client.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"}) == []


@pytest.mark.parametrize("modules, packages", SHAPES, ids=[f"{m}x{p}" for m, p in SHAPES])
def test_generated_workload_compiles_and_runs(container, modules, packages):
    root = f"/tmp/wl-{modules}x{packages}"
    files = workload.module_graph(modules, packages)
    uid = int(container.attrs["Config"]["User"].split(":")[0] or 0)
    assert container.put_archive("/tmp", workload.tarball(
        {f"{root[5:]}/{name}": data for name, data in files.items()}, uid=uid))
    script = (f"cd {root}/work && go mod download all && go build ./... "
              f"&& go build -o {root}/workload . && {root}/workload")
    code, (out, err) = container.exec_run(
        ["timeout", "900", "sh", "-c", script],
        environment={"GOPROXY": f"file://{root}/proxy", "GOFLAGS": "-mod=mod", "GOSUMDB": "off",
                     "GOCACHE": "/tmp/gocache", "GOMODCACHE": f"{root}/modcache",
                     "CGO_ENABLED": "0"},
        demux=True,
    )
    text = (out or b"").decode(errors="replace")
    assert code == 0, f"{shlex.quote(script)} exited {code}:\n{(err or b'').decode()[-3000:]}"
    # main prints one line per package it imports: every package was compiled, linked and run
    assert len(text.splitlines()) == packages, text[-2000:]
