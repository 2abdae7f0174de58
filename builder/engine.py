"""The one seam around the Docker engine: docker-py for the engine API, buildx as a subprocess.

Command lines and API arguments are built by pure functions (unit-tested without a daemon);
containers are context managers that are removed on every path out, Ctrl-C included.
"""
from __future__ import annotations

import contextlib
import os
import platform as _platform
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests

from .errors import EngineError

RUN_LABEL = "io.gobuild.run"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
SETUP_HINT = "run 'make setup' (scripts/setup-host.sh) as root, or start dockerd"


def client() -> docker.DockerClient:
    try:
        c = docker.from_env(timeout=300)
        c.ping()
        return c
    except docker.errors.DockerException as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineError(
            f"no Docker engine answers at {host} ({type(exc).__name__}): {SETUP_HINT}"
        ) from None


def host_arch() -> str:
    machine = _platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )


@dataclass(frozen=True, kw_only=True)
class EngineFacts:
    version: str
    api_version: str
    os: str
    arch: str
    cgroup_version: str
    cgroup_driver: str
    storage_driver: str
    cpus: int
    memory_bytes: int
    kernel: str


def facts(c: docker.DockerClient) -> EngineFacts:
    info = c.info()
    ver = c.version()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(info.get("Architecture", ""), info.get("Architecture", ""))
    return EngineFacts(
        version=ver.get("Version", "?"),
        api_version=ver.get("ApiVersion", "?"),
        os=info.get("OSType", "linux"),
        arch=arch,
        cgroup_version=str(info.get("CgroupVersion", "1")),
        cgroup_driver=info.get("CgroupDriver", "?"),
        storage_driver=info.get("Driver", "?"),
        cpus=int(info.get("NCPU", 0)),
        memory_bytes=int(info.get("MemTotal", 0)),
        kernel=info.get("KernelVersion", "?"),
    )


def buildx_version() -> str | None:
    if not shutil.which("docker"):
        return None
    try:
        out = subprocess.run(
            ["docker", "buildx", "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def emulators() -> dict[str, bool]:
    """Registered qemu binfmt handlers -> enabled."""
    found = {}
    if BINFMT.is_dir():
        for entry in sorted(BINFMT.glob("qemu-*")):
            with contextlib.suppress(OSError):
                found[entry.name] = entry.read_text().splitlines()[0].strip() == "enabled"
    return found


def image_labels(c: docker.DockerClient, ref: str) -> dict[str, str] | None:
    """The labels of a local image, or None when the engine has no such image."""
    try:
        img = c.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot inspect image {ref}: {exc.explanation}") from None
    return dict(img.labels or {})


def image_info(c: docker.DockerClient, ref: str) -> dict:
    try:
        return c.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        raise EngineError(f"no image {ref} in the engine: build or pull it first") from None


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def container_kwargs(*, image: str, command: list[str], run_id: str, name: str,
                     platform: str | None = None, network: bool = False,
                     environment: dict[str, str] | None = None,
                     nano_cpus: int | None = None, mem_limit: int | None = None,
                     cpuset_cpus: str | None = None, pids_limit: int | None = 4096,
                     volumes: dict | None = None, user: str | None = None,
                     working_dir: str | None = None) -> dict:
    """The arguments of containers.create for one gobuild container (pure, unit-tested)."""
    kw: dict = {
        "image": image,
        "command": command,
        "name": name,
        "labels": {RUN_LABEL: run_id},
        "detach": True,
        "environment": environment or {},
        "network_mode": "bridge" if network else "none",
    }
    if platform:
        kw["platform"] = platform
    if nano_cpus:
        kw["nano_cpus"] = nano_cpus
    if mem_limit:
        kw["mem_limit"] = mem_limit
        kw["memswap_limit"] = mem_limit  # no swap: a memory limit means what it says
    if cpuset_cpus:
        kw["cpuset_cpus"] = cpuset_cpus
    if pids_limit:
        kw["pids_limit"] = pids_limit
    if volumes:
        kw["volumes"] = volumes
    if user is not None:
        kw["user"] = user
    if working_dir:
        kw["working_dir"] = working_dir
    return kw


@dataclass(frozen=True, kw_only=True)
class Finished:
    exit_code: int
    output: str
    oom_killed: bool
    timed_out: bool = False


@contextlib.contextmanager
def container(c: docker.DockerClient, **kw) -> Iterator[docker.models.containers.Container]:
    """A created (not started) container, removed with its anonymous volumes on every way out."""
    kw.setdefault("name", f"gobuild-{kw.get('labels', {}).get(RUN_LABEL, 'x')}-{uuid.uuid4().hex[:8]}")
    try:
        ctr = c.containers.create(**kw)
    except docker.errors.ImageNotFound:
        raise EngineError(f"no image {kw.get('image')} in the engine: build or pull it first") from None
    except docker.errors.APIError as exc:
        raise EngineError(f"the engine refused to create a container: {exc.explanation}") from None
    try:
        yield ctr
    finally:
        # Never let a failed removal hide what ended the block (an interrupted connection can
        # fail here); the run-level cleanup (remove_labelled) removes whatever is left.
        with contextlib.suppress(Exception):
            ctr.remove(force=True, v=True)


def run(c: docker.DockerClient, timeout: float = 3600, **kw) -> Finished:
    """Run a container to its end (or kill it after timeout seconds) and return its exit code,
    output and OOM flag."""
    with container(c, **kw) as ctr:
        ctr.start()
        timed_out = False
        try:
            status = ctr.wait(timeout=timeout)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            with contextlib.suppress(docker.errors.APIError):
                ctr.kill()
            status = {"StatusCode": -1}
        output = ctr.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        state = c.api.inspect_container(ctr.id)["State"]
        return Finished(
            exit_code=int(status.get("StatusCode", -1)),
            output=output,
            oom_killed=bool(state.get("OOMKilled")),
            timed_out=timed_out,
        )


def remove_labelled(c: docker.DockerClient, run_id: str | None = None) -> int:
    """Remove containers (and volumes) left by gobuild runs; all runs when run_id is None."""
    label = RUN_LABEL if run_id is None else f"{RUN_LABEL}={run_id}"
    n = 0
    for ctr in c.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound):
            ctr.remove(force=True, v=True)
            n += 1
    for vol in c.volumes.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            vol.remove(force=True)
            n += 1
    return n


@contextlib.contextmanager
def cleanup_on_exit(c: docker.DockerClient, run_id: str) -> Iterator[None]:
    """Remove the run's containers and volumes however the block ends.

    The first Ctrl-C (or SIGTERM) stops the run; any further one is ignored, so that a second
    press cannot break off the cleanup half-way."""
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        stopping = True
        try:
            remove_labelled(c, run_id)
        except Exception:  # noqa: BLE001 - the interrupted connection may be broken: retry anew
            remove_labelled(client(), run_id)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
