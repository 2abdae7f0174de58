"""The one seam around the Docker engine: docker-py for the engine API, buildx as a subprocess.

Command lines and API arguments are built by pure functions (unit-tested without a daemon);
containers are context managers that are removed on every path out, Ctrl-C included.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import platform as _platform
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import docker
import docker.errors
import requests

from .errors import EngineError
from .matrix import goarch, machine_platform

BINFMT = Path("/proc/sys/fs/binfmt_misc")
SETUP_HINT = "run 'make setup' (scripts/setup-host.sh) as root, or start dockerd"


def client() -> docker.DockerClient:
    try:
        engine_client = docker.from_env(timeout=300)
        engine_client.ping()
        return engine_client
    except docker.errors.DockerException as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineError(
            f"no Docker engine answers at {host} ({type(exc).__name__}): {SETUP_HINT}"
        ) from None


def host_arch() -> str:
    """This machine's architecture as a Go arch."""
    return goarch(_platform.machine())


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
    machine: str = ""  # the engine's Architecture as it said it (uname -m): "armv6l"

    @property
    def platform(self) -> str:
        """The platform that runs natively there, CPU variant included ("linux/arm/v6" on a Pi
        Zero, where arch is only "arm")."""
        return machine_platform(self.machine) if self.machine else f"linux/{self.arch}"


def facts(engine_client: docker.DockerClient) -> EngineFacts:
    info = engine_client.info()
    ver = engine_client.version()
    arch = goarch(info.get("Architecture", ""))
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
        machine=str(info.get("Architecture", "")),
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


def image_labels(engine_client: docker.DockerClient, ref: str) -> dict[str, str] | None:
    """The labels of a local image, or None when the engine has no such image."""
    try:
        img = engine_client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot inspect image {ref}: {exc.explanation}") from None
    return dict(img.labels or {})


def image_info(engine_client: docker.DockerClient, ref: str) -> dict:
    try:
        return engine_client.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        raise EngineError(f"no image {ref} in the engine: build or pull it first") from None


def arch(docker_client: docker.DockerClient) -> str:
    """The engine's own architecture as a Go arch (what runs natively there)."""
    return facts(docker_client).arch


def platform(docker_client: docker.DockerClient) -> str:
    """The engine's own platform, CPU variant included: what a command with no --platform
    selects ("linux/arm/v7" on a 32-bit Raspberry Pi OS board)."""
    return facts(docker_client).platform


# Every container and volume gobuild makes carries these labels: the run it belongs to, the
# gobuild process that owns it (so that a cleanup removes only what a dead process left), and
# when it was made.
RUN_LABEL = "io.gobuild.run"
OWNER_LABEL = "io.gobuild.owner"
CREATED_LABEL = "io.gobuild.created"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def _start_ticks(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat): with the
    pid, it names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner() -> str:
    """This gobuild process as "<host>:<pid>:<start ticks>"."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '?'}"


def owner_alive(value: str | None) -> bool | None:
    """Whether the process named by an owner label still runs: None when this machine cannot
    tell (another host, no owner label)."""
    host, _, rest = (value or "").partition(":")
    pid, _, ticks = rest.partition(":")
    if not value or host != socket.gethostname() or not pid.isdigit():
        return None
    now = _start_ticks(int(pid))
    if now is not None and ticks != "?":
        return now == ticks  # a reused pid has another start time
    try:  # no /proc here (or hidden): only whether some process has the pid
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def labels(run_id: str) -> dict[str, str]:
    return {RUN_LABEL: run_id, OWNER_LABEL: owner(), CREATED_LABEL: str(int(time.time()))}


@dataclass(frozen=True, kw_only=True)
class Limits:
    """cgroup limits as `docker run` takes them; memory means memory: swap is off."""

    cpus: float | None = None
    memory: int | None = None
    cpuset: str | None = None
    pids: int | None = 4096


@dataclass(frozen=True, kw_only=True)
class Bind:
    """A host folder mounted into a container (gobuild run's working folder)."""

    source: str  # an absolute path on the engine's host
    target: str
    read_only: bool = False


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What to run: built once, by value, and handed to the engine seam."""

    image: str
    command: tuple[str, ...]
    role: str  # a word for the container's name: smoke, prepare, run, ...
    platform: str | None = None
    network: bool | str = False  # True: the default bridge; False: none; a name: that network
    environment: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = Limits()
    volumes: Mapping[str, str] = field(default_factory=dict)  # volume name -> mount point
    read_only_mounts: tuple[str, ...] = ()  # mount points of volumes mounted read-only
    user: str | None = None
    working_dir: str | None = None
    timeout: float = 3600
    binds: tuple[Bind, ...] = ()
    # Lockdown (measured bench runs, smoke tests; see locked_down): capabilities dropped,
    # setuid and file capabilities powerless, the image's filesystem read-only, tmpfs scratch.
    cap_drop: tuple[str, ...] = ()
    no_new_privileges: bool = False
    read_only_root: bool = False
    tmpfs: Mapping[str, str] = field(default_factory=dict)  # mount point -> tmpfs options


# Who a locked-down container runs as when its image names root: nobody, whose ids own nothing
# in any image (the bench volume is a+rwX; scratch is a tmpfs).
UNPRIVILEGED_USER = "65534:65534"
# exec: go test and go run execute what they build in GOTMPDIR; the size is bounded by the
# cgroup's memory limit, which tmpfs pages count against (README "Locked-down containers").
SCRATCH_TMPFS = "rw,nosuid,nodev,exec,mode=1777"


def is_root(user: str) -> bool:
    """Whether a container user ("uid[:gid]" or "name[:group]") is root, whatever its group
    ("0", "root", "0:1000", "root:root") (pure)."""
    return user.split(":", 1)[0].strip() in ("0", "root")


def locked_down(spec: Spec, *, scratch: tuple[str, ...] = ("/tmp",), user: str | None = None,
                pids: int | None = None) -> Spec:
    """spec with every privilege it does not need taken away (pure): no capabilities,
    no-new-privileges, a read-only root with tmpfs scratch folders, a non-root user (the
    spec's own when it is not root, else nobody) and a pids limit. The network stays what the
    spec says (none unless asked); mounts stay the spec's volumes and binds."""
    if user is None:
        user = spec.user if spec.user and not is_root(spec.user) else UNPRIVILEGED_USER
    return replace(spec, cap_drop=("ALL",), no_new_privileges=True, read_only_root=True,
                   tmpfs={path: SCRATCH_TMPFS for path in scratch}, user=user,
                   limits=replace(spec.limits, pids=pids or spec.limits.pids or 4096))


def create_kwargs(spec: Spec, *, name: str, labels: Mapping[str, str]) -> dict:
    """The arguments of containers.create for one gobuild container (pure, unit-tested)."""
    kw: dict = {
        "image": spec.image,
        "command": list(spec.command),
        "name": name,
        "labels": dict(labels),
        "detach": True,
        "environment": dict(spec.environment),
        "network_mode": spec.network if isinstance(spec.network, str) else
                        ("bridge" if spec.network else "none"),
    }
    lim = spec.limits
    if spec.platform:
        kw["platform"] = spec.platform
    if lim.cpus:
        kw["nano_cpus"] = round(lim.cpus * 1e9)
    if lim.memory:
        kw["mem_limit"] = lim.memory
        kw["memswap_limit"] = lim.memory  # no swap: a memory limit means what it says
    if lim.cpuset:
        kw["cpuset_cpus"] = lim.cpuset
    if lim.pids:
        kw["pids_limit"] = lim.pids
    if spec.volumes or spec.binds:
        kw["volumes"] = {vol: {"bind": path, "mode": "ro" if path in spec.read_only_mounts else "rw"}
                         for vol, path in spec.volumes.items()}
        kw["volumes"].update({b.source: {"bind": b.target, "mode": "ro" if b.read_only else "rw"}
                              for b in spec.binds})
    if spec.user is not None:
        kw["user"] = spec.user
    if spec.working_dir:
        kw["working_dir"] = spec.working_dir
    if spec.cap_drop:
        kw["cap_drop"] = list(spec.cap_drop)
    if spec.no_new_privileges:
        kw["security_opt"] = ["no-new-privileges:true"]
    if spec.read_only_root:
        kw["read_only"] = True
    if spec.tmpfs:
        kw["tmpfs"] = dict(spec.tmpfs)
    return kw


def oom_reasons(*, oom_killed: bool = False, oom_events: int = 0, exit_code: int | None = None,
                counter_delta: int | None = None, peak: int | None = None,
                limit: int | None = None) -> tuple[str, ...]:
    """Every sign that the kernel's OOM killer ended something in a container (pure).

    Docker's OOMKilled flag alone misses kills of child processes and is unreliable on cgroup
    v2, so any one of these counts: the flag, an engine `oom` event for the container, the
    cgroup's own oom_kill counter having moved (read inside by the runner probe), or exit 137
    (SIGKILL) with the cgroup's peak usage at the limit."""
    reasons = []
    if oom_killed:
        reasons.append("State.OOMKilled")
    if oom_events:
        reasons.append(f"{oom_events} engine oom event(s)")
    if counter_delta:
        reasons.append(f"cgroup oom_kill counter +{counter_delta}")
    if exit_code == 137 and peak and limit and peak >= limit - max(4 * 2**20, limit // 100):
        reasons.append("exit 137 with usage at the limit")
    return tuple(reasons)


OnOutput = Callable[[bytes, bool], None]  # (data, is_stderr): a container's output, live


@dataclass(frozen=True, kw_only=True)
class Finished:
    exit_code: int
    output: str
    oom_killed: bool  # State.OOMKilled
    oom_events: int  # `oom` events the engine reported for the container
    timed_out: bool

    @property
    def oom(self) -> bool:
        """By the signs seen from outside; the bench adds the cgroup's own counters."""
        return bool(oom_reasons(oom_killed=self.oom_killed, oom_events=self.oom_events,
                                exit_code=self.exit_code))

    def tail(self, lines: int = 3) -> str:
        return " | ".join(self.output.strip().splitlines()[-lines:])


def keep_containers() -> bool:
    """GOBUILD_KEEP_CONTAINERS=1: keep containers and volumes for debugging."""
    return os.environ.get("GOBUILD_KEEP_CONTAINERS") == "1"


def block_stop_signals() -> None:
    """For a helper thread: Ctrl-C and SIGTERM then reach the main thread, whose blocking
    wait they interrupt (Python runs signal handlers in the main thread only, and a signal
    the kernel hands to another thread would leave the main thread waiting)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def container_name(spec: Spec, run_id: str) -> str:
    return f"gobuild-{spec.role}-{run_id}-{uuid.uuid4().hex[:8]}"


class Container:
    """The one lifecycle of every container gobuild starts.

    `with Container(engine_client, spec, run_id) as ctr:` creates it (unique name, run and
    owner labels, limits, no network unless asked); `ctr.put_archive`, `ctr.run()` (start, wait
    with the spec's timeout, kill on timeout, logs, OOM signs) and `ctr.fetch` work inside the
    block; leaving the block removes the container and its anonymous volumes, however it is
    left. Set GOBUILD_KEEP_CONTAINERS=1 to keep them for debugging (`gobuild bench --cleanup`
    removes them once this process is gone)."""

    def __init__(self, engine_client: docker.DockerClient, spec: Spec, run_id: str):
        self.client, self.spec, self.run_id = engine_client, spec, run_id
        self.name = container_name(spec, run_id)
        self._ctr = None

    @property
    def id(self) -> str:
        return self._ctr.id

    def __enter__(self) -> Container:  # noqa: PYI034 - a final class
        kw = create_kwargs(self.spec, name=self.name, labels=labels(self.run_id))
        for volume in self.spec.volumes:  # else the engine would quietly make an empty one
            try:
                self.client.volumes.get(volume)
            except docker.errors.NotFound:
                raise EngineError(f"volume {volume} is gone (removed by another program?): "
                                  "run again") from None
        try:
            self._ctr = self.client.containers.create(**kw)
        except docker.errors.ImageNotFound:
            raise EngineError(f"no image {self.spec.image} in the engine: build or pull it first") from None
        except docker.errors.APIError as exc:
            raise EngineError(f"the engine refused to create a container: {exc.explanation}") from None
        return self

    def __exit__(self, *exc) -> None:
        if keep_containers():
            return
        # Never let a failed removal hide what ended the block (an interrupted connection can
        # fail here); the run-level cleanup (cleanup_on_exit) removes whatever is left.
        with contextlib.suppress(Exception):
            self._ctr.remove(force=True, v=True)

    def put_archive(self, path: str, data: bytes) -> None:
        self._ctr.put_archive(path, data)

    def run(self, on_output: OnOutput | None = None) -> Finished:
        """Start, wait for the end (killing it after the spec's timeout), and report.

        on_output(data, is_stderr) gets the container's output as it is written (gobuild run
        shows CMD's output live); Finished.output still holds all of it."""
        try:
            self._ctr.start()
        except docker.errors.APIError as exc:
            raise EngineError(f"the engine could not start {self.name}: {exc.explanation}") from None
        # Followed logs, not attach: logs also work when the container has already exited.
        streams = [] if on_output is None else [
            threading.Thread(target=self._follow, args=(on_output, is_stderr), daemon=True)
            for is_stderr in (False, True)]
        for stream in streams:
            stream.start()
        finished = self._wait()  # on Ctrl-C, no join: removing the container ends the streams
        for stream in streams:
            stream.join(timeout=30)
        return finished

    def _follow(self, on_output: OnOutput, is_stderr: bool) -> None:
        block_stop_signals()
        with contextlib.suppress(Exception):  # a broken stream must not end the run
            for chunk in self._ctr.logs(stdout=not is_stderr, stderr=is_stderr, stream=True,
                                        follow=True):
                on_output(chunk, is_stderr)

    def _wait(self) -> Finished:
        try:
            return self._wait_answered()
        except requests.exceptions.ConnectionError:  # the engine went away (stopped, crashed)
            raise EngineError(f"the engine stopped answering while {self.name} ran: start it "
                              "again; 'gobuild bench --cleanup' then removes what was left") from None

    def _wait_answered(self) -> Finished:
        timed_out = False
        try:
            status = self._ctr.wait(timeout=self.spec.timeout)
        except requests.exceptions.ConnectionError as exc:
            # docker-py reports a wait past its timeout as a ConnectionError wrapping a read
            # timeout; anything else is an engine that no longer answers.
            if not isinstance(exc, requests.exceptions.ReadTimeout) and "timed out" not in str(exc):
                raise
            timed_out = True
            with contextlib.suppress(docker.errors.APIError):
                self._ctr.kill()
            status = {"StatusCode": -1}
        except requests.exceptions.ReadTimeout:
            timed_out = True
            with contextlib.suppress(docker.errors.APIError):
                self._ctr.kill()
            status = {"StatusCode": -1}
        output = self._ctr.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        state = self.client.api.inspect_container(self._ctr.id)["State"]
        code = int(status.get("StatusCode", -1))
        return Finished(exit_code=code, output=output, oom_killed=bool(state.get("OOMKilled")),
                        oom_events=self.oom_events() if code != 0 else 0, timed_out=timed_out)

    def oom_events(self) -> int:
        """The engine's `oom` events for this container: the cgroup's OOM notification, which
        also fires when a child process (not the container's first) is killed. `run` asks only
        when the container failed; a caller whose wrapper exits 0 after a failed child (the
        bench's runner probe) asks itself."""
        state = self.client.api.inspect_container(self._ctr.id)["State"]
        until = _engine_time(state.get("FinishedAt")) or int(time.time())
        try:
            events = self.client.events(since=until - 24 * 3600, until=until + 1, decode=True,
                                        filters={"container": self._ctr.id, "event": "oom"})
            return sum(1 for _ in events)
        except docker.errors.APIError:
            return 0

    def fetch(self, path: str) -> dict[str, bytes]:
        """The files under path in the container (name -> bytes); {} when there is none."""
        try:
            stream, _ = self._ctr.get_archive(path)
        except docker.errors.NotFound:
            return {}
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
            return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}

    def owners(self, path: str) -> dict[str, str]:
        """The owner ("uid:gid") of each file under path in the container; {} when there is
        none. For small paths: the whole of path is read."""
        try:
            stream, _ = self._ctr.get_archive(path)
        except docker.errors.NotFound:
            return {}
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
            return {m.name: f"{m.uid}:{m.gid}" for m in tf.getmembers() if m.isfile()}

    def serve(self) -> None:
        """Start without waiting: a server the run's other containers talk to (the bench's
        module proxy); leaving the block stops and removes it."""
        try:
            self._ctr.start()
        except docker.errors.APIError as exc:
            raise EngineError(f"the engine could not start {self.name}: {exc.explanation}") from None

    def status(self) -> tuple[str, str]:
        """The container's state ("running", "exited", ...) and its output so far."""
        self._ctr.reload()
        return self._ctr.status, self._ctr.logs(stdout=True, stderr=True).decode("utf-8", "replace")


def _engine_time(stamp: str | None) -> int | None:
    """An engine timestamp (RFC 3339 with nanoseconds) as unix seconds."""
    if not stamp or stamp.startswith("0001"):
        return None
    try:
        return int(dt.datetime.fromisoformat(stamp[:19] + "+00:00").timestamp())
    except ValueError:
        return None


def run(engine_client: docker.DockerClient, spec: Spec, run_id: str,
        files: Mapping[str, bytes] | None = None, on_output: OnOutput | None = None) -> Finished:
    """Run one container to its end: files (path -> tar bytes) are put in before it starts."""
    with Container(engine_client, spec, run_id) as ctr:
        for path, data in (files or {}).items():
            ctr.put_archive(path, data)
        return ctr.run(on_output)


# An interactive container (gobuild shell) is the one other way a container starts. It needs a
# terminal: raw mode, window size, Ctrl-C as a key, which docker-py cannot drive (it can only
# hand over the attach socket), and the docker CLI does well. So `docker run -it` runs as a
# subprocess, its arguments translated from the same create_kwargs as every other container
# (name scheme, run and owner labels, limits, mounts, user), and the container is removed by
# --rm and again by name on every way out, as Container does.
_CLI_FLAGS = {"name": "--name", "network_mode": "--network", "platform": "--platform",
              "cpuset_cpus": "--cpuset-cpus", "pids_limit": "--pids-limit", "user": "--user",
              "working_dir": "--workdir", "mem_limit": "--memory", "memswap_limit": "--memory-swap"}


def env_file_text(environment: Mapping[str, str]) -> str:
    """The container's environment as `docker run --env-file` reads it (pure): NAME=VALUE
    lines, taken as they are. A line break cannot be written there."""
    for name, value in environment.items():
        if "\n" in name + value or "=" in name:
            raise EngineError(f"variable {name.splitlines()[0]!r} cannot be passed to an interactive "
                              "container (a line break, or = in its name): drop it or use gobuild run")
    return "".join(f"{name}={value}\n" for name, value in environment.items())


def docker_run_argv(spec: Spec, *, name: str, labels: Mapping[str, str], tty: bool,
                    keep: bool = False, env_file: str | None = None) -> list[str]:
    """`docker run --interactive` for spec (pure). Environment values are neither on the
    command line (other users can read it) nor in the CLI's own environment (where
    DOCKER_HOST=... would redirect the CLI): they are in env_file, which interactive() writes.
    A create_kwargs key this does not know is a bug, never dropped."""
    kw = create_kwargs(spec, name=name, labels=labels)
    argv = ["docker", "run", "--interactive", "--pull=never"]
    argv += ["--tty"] if tty else []
    argv += [] if keep else ["--rm"]
    for key, value in kw.items():
        if key in ("image", "command", "detach"):
            continue
        if key in _CLI_FLAGS:
            argv += [_CLI_FLAGS[key], str(value)]
        elif key == "labels":
            argv += [arg for k, v in value.items() for arg in ("--label", f"{k}={v}")]
        elif key == "environment":
            if value and env_file is None:
                raise ValueError("docker_run_argv needs env_file for a spec with an environment")
            argv += ["--env-file", env_file] if value else []
        elif key == "nano_cpus":
            argv += ["--cpus", f"{value / 1e9:g}"]
        elif key == "volumes":
            argv += [arg for src, m in value.items()
                     for arg in ("--volume", f"{src}:{m['bind']}:{m['mode']}")]
        elif key in ("cap_drop", "security_opt"):
            argv += [arg for v in value for arg in (f"--{key.replace('_', '-')}", v)]
        elif key == "read_only":
            argv += ["--read-only"] if value else []
        elif key == "tmpfs":
            argv += [arg for path, opts in value.items() for arg in ("--tmpfs", f"{path}:{opts}")]
        else:
            raise ValueError(f"docker_run_argv does not know create_kwargs key {key!r}")
    return [*argv, "--", kw["image"], *kw["command"]]


def interactive(engine_client: docker.DockerClient, spec: Spec, run_id: str) -> int:
    """Run spec with this terminal attached (a TTY when stdin and stdout are one); returns the
    command's exit code. The spec's timeout does not apply: a person is at the keyboard."""
    docker_cli = shutil.which("docker")
    if not docker_cli:
        raise EngineError("an interactive container needs the docker CLI, which is not on PATH: "
                          "install docker-cli (or docker.io)")
    name, keep = container_name(spec, run_id), keep_containers()
    for volume in spec.volumes:  # else the engine would quietly make an empty one
        try:
            engine_client.volumes.get(volume)
        except docker.errors.NotFound:
            raise EngineError(f"volume {volume} is gone (removed by another program?): "
                              "run again") from None
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    text = env_file_text(spec.environment)
    # The same engine docker-py talks to (without DOCKER_HOST a docker CLI context could point
    # the CLI elsewhere), and the CLI's own config. The container's variables go in a file
    # only this user can read (mkstemp: 0600), so none of them reaches the CLI itself.
    env = {"DOCKER_HOST": "unix:///var/run/docker.sock",
           "DOCKER_CONFIG": str(Path.home() / ".docker"), **os.environ}
    fd, env_file = tempfile.mkstemp(prefix="gobuild-env-")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        argv = docker_run_argv(spec, name=name, labels=labels(run_id), tty=tty, keep=keep,
                               env_file=env_file)
        return subprocess.run([docker_cli, *argv[1:]], env=env, check=False).returncode
    finally:
        os.unlink(env_file)
        if not keep:
            with contextlib.suppress(Exception):
                engine_client.containers.get(name).remove(force=True, v=True)


def create_volume(engine_client: docker.DockerClient, name: str, run_id: str) -> str:
    """A named volume with the run's labels (removed by the run's cleanup)."""
    try:
        return engine_client.volumes.create(name=name, labels=labels(run_id)).name
    except docker.errors.APIError as exc:
        raise EngineError(f"the engine refused to create volume {name}: {exc.explanation}") from None


def isolated_network_kwargs(name: str, item_labels: Mapping[str, str]) -> dict:
    """The arguments of networks.create for a network whose containers reach each other and
    nothing else (pure): internal (no route out, no published ports), and no address of the
    host on its bridge (inhibit_ipv4), so that the host's own services cannot be reached
    through its gateway either."""
    return {"name": name, "driver": "bridge", "internal": True, "labels": dict(item_labels),
            "options": {"com.docker.network.bridge.inhibit_ipv4": "true"}}


def create_network(engine_client: docker.DockerClient, name: str, run_id: str) -> str:
    """An isolated network with the run's labels (removed by the run's cleanup)."""
    try:
        return engine_client.networks.create(**isolated_network_kwargs(name, labels(run_id))).name
    except docker.errors.APIError as exc:
        raise EngineError(f"the engine refused to create network {name}: {exc.explanation}") from None


def remove_network(engine_client: docker.DockerClient, name: str) -> None:
    """Remove a network once its containers are gone; a missing one is already removed."""
    with contextlib.suppress(docker.errors.NotFound):
        engine_client.networks.get(name).remove()


def network_gateway(engine_client: docker.DockerClient, name: str = "bridge") -> str | None:
    """A network's gateway address (on the default bridge: the host as its containers see it)."""
    try:
        config = engine_client.networks.get(name).attrs.get("IPAM", {}).get("Config") or []
    except docker.errors.NotFound:
        return None
    return next((c["Gateway"] for c in config if c.get("Gateway")), None)


def remove_labelled(engine_client: docker.DockerClient, run_id: str) -> int:
    """Remove the containers, volumes and networks of one run."""
    label = f"{RUN_LABEL}={run_id}"
    n = 0
    for ctr in engine_client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound):
            ctr.remove(force=True, v=True)
            n += 1
    for vol in engine_client.volumes.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            vol.remove(force=True)
            n += 1
    for net in engine_client.networks.list(filters={"label": label}):  # once its containers are gone
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            net.remove()
            n += 1
    return n


def is_stale(item_labels: Mapping[str, str], running: bool, now: float,
             older_than: float | None) -> bool:
    """Whether a labelled container or volume was left behind.

    Left behind: its owning gobuild process on this machine is gone. Where this machine cannot
    see the owner (another host, or a gobuild from before owners were recorded): when it is
    older than older_than seconds, or, with no owner label at all, when it is not running.
    What a live gobuild on this machine owns is never stale, however old."""
    alive = owner_alive(item_labels.get(OWNER_LABEL))
    if alive is not None:
        return not alive
    created = item_labels.get(CREATED_LABEL, "")
    if older_than is not None and created.isdigit() and now - int(created) > older_than:
        return True
    return OWNER_LABEL not in item_labels and not running


def remove_stale(engine_client: docker.DockerClient, older_than: float | None = None) -> list[str]:
    """Remove the containers, then the volumes and networks, that gobuild processes left behind; return one
    line for each ("removed container NAME", or "kept volume NAME: why"). What a running
    gobuild on this machine owns is left alone."""
    now, said = time.time(), []
    for ctr in engine_client.containers.list(all=True, filters={"label": RUN_LABEL}):
        if is_stale(ctr.labels, ctr.status == "running", now, older_than):
            said.append(_remove(f"container {ctr.name}", lambda it=ctr: it.remove(force=True, v=True)))
    for vol in engine_client.volumes.list(filters={"label": RUN_LABEL}):
        if is_stale(vol.attrs.get("Labels") or {}, False, now, older_than):
            # force=False: the engine refuses a volume that a container still uses
            said.append(_remove(f"volume {vol.name}", lambda it=vol: it.remove(force=False)))
    for net in engine_client.networks.list(filters={"label": RUN_LABEL}):
        if is_stale(net.attrs.get("Labels") or {}, False, now, older_than):
            # the engine refuses a network that a container is still connected to
            said.append(_remove(f"network {net.name}", net.remove))
    return [line for line in said if line]


def _remove(what: str, remove) -> str | None:
    """'removed WHAT', or why it could not be; None when it was already gone."""
    try:
        remove()
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        return f"kept {what}: {exc.explanation}"
    return f"removed {what}"


@contextlib.contextmanager
def cleanup_on_exit(engine_client: docker.DockerClient, run_id: str) -> Iterator[None]:
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
            if keep_containers():
                print(f"gobuild: kept the containers and volumes of run {run_id} "
                      "(GOBUILD_KEEP_CONTAINERS=1)", file=sys.stderr)
            else:
                _remove_run(engine_client, run_id)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def _remove_run(engine_client: docker.DockerClient, run_id: str) -> None:
    """remove_labelled, retried on a new connection (an interrupted one can be broken), and
    never raising: what ended the run is the error to show; `gobuild bench --cleanup` removes
    whatever is left once this process is gone."""
    for attempt in (1, 2):
        try:
            remove_labelled(engine_client if attempt == 1 else client(), run_id)
            return
        except Exception as exc:  # noqa: BLE001 - see the docstring
            if attempt == 2:
                print(f"gobuild: could not remove the containers of run {run_id} ({exc}): "
                      "run 'gobuild bench --cleanup'", file=sys.stderr)
