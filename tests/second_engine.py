"""A second Docker engine on this machine, for tests that need two hosts (fleets, engine faults).

The daemon runs in a network namespace of its own, as ../shared/ENVIRONMENT.md says works here:

    ip netns add N; ip -n N link set lo up
    ip link add H type veth peer name P netns N     (a /30 on a test subnet this helper picks)
    nsenter --net=/var/run/netns/N dockerd --data-root D/data --exec-root X --pidfile X/pid \
        -H unix://X/docker.sock -H tcp://ADDR:2375 --iptables=false --cgroup-parent gobuild-second-ID

Two traps it avoids: `ip netns exec N dockerd` remounts /sys and hides the cgroup mounts ("Devices
cgroup isn't mounted"), and a second dockerd with `--bridge none` in the host's own namespace deletes
the main engine's docker0. The TCP endpoint is plain TCP on the namespace's private link only (no
route to it from anywhere but this machine); the unix socket is for the test's own client.

    with SecondEngine(tmp_path) as second:     # start() on enter, close() on exit
        second.load("gobuild/go:1.22.10-slim-amd64")   # docker save (main) | docker load (second)
        gobuild("bench", "--host", second.host, ...)   # second.host == "tcp://10.x.y.2:2375"
        second.cut_link(); second.restore_link()       # the host side of the veth down / up
        second.stop()    # SIGTERM to the recorded dockerd pid, wait (its containerd stops with it)
        second.kill()    # SIGKILL to dockerd and its containerd: an engine lost mid-run
        second.start()   # again, on the same data-root

close() tears down by what it recorded: the dockerd and containerd pids, processes left in its own
cgroup parent or started with its own exec-root (shims of a killed engine), mounts under its own
folders, the veth, the namespace, the folders. Nothing is found or killed by a program's name.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker

PORT = 2375
# Test subnets are picked in here, one /30 per engine, skipping any network this machine routes.
POOL = ipaddress.ip_network("10.231.0.0/16")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def _routed_networks() -> list[ipaddress.IPv4Network]:
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    nets = []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or ":" in dst:
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    return nets


def pick_subnet() -> ipaddress.IPv4Network:
    """A free /30 of POOL (nothing on this machine routes to it)."""
    used = _routed_networks()
    candidates = list(POOL.subnets(new_prefix=30))
    random.shuffle(candidates)
    for net in candidates[:2000]:
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /30 in {POOL}")


class SecondEngine:
    """One extra dockerd in its own network namespace; see the module docstring."""

    def __init__(self, folder: Path | str | None = None, *, start_timeout: float = 90):
        self.id = uuid.uuid4().hex[:6]
        self.netns = f"gbsecond-{self.id}"
        self.veth_host = f"gbh{self.id}"  # interface names are at most 15 characters
        self.veth_ns = f"gbn{self.id}"
        self.cgroup_parent = f"gobuild-second-{self.id}"
        self.subnet = pick_subnet()
        host_addr, ns_addr = list(self.subnet.hosts())[:2]
        self.host_addr, self.addr = str(host_addr), str(ns_addr)
        self.host = f"tcp://{self.addr}:{PORT}"
        self._own_folder = folder is None
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="gbsecond-"))
        self.data_root = self.folder / f"second-{self.id}"
        # Unix socket paths are limited to 108 bytes: the exec-root (containerd's sockets) is short.
        self.exec_root = Path(tempfile.mkdtemp(prefix=f"gb2{self.id}-", dir="/tmp"))
        self.socket = self.exec_root / "docker.sock"
        self.log = self.folder / f"dockerd-{self.id}.log"
        # a daemon.json of its own: the machine's /etc/docker/daemon.json (hosts, data-root...)
        # would otherwise apply to this daemon too, and clash with its flags
        self.config_file = self.folder / f"daemon-{self.id}.json"
        self.start_timeout = start_timeout
        self.pid: int | None = None
        self.containerd_pid: int | None = None
        self._proc: subprocess.Popen | None = None
        self._network_made = False

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> SecondEngine:  # noqa: PYI034 - a final class
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _make_network(self) -> None:
        _ip("netns", "add", self.netns)
        self._network_made = True
        _ip("-n", self.netns, "link", "set", "lo", "up")
        _ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns,
            "netns", self.netns)
        prefix = self.subnet.prefixlen
        _ip("addr", "add", f"{self.host_addr}/{prefix}", "dev", self.veth_host)
        _ip("link", "set", self.veth_host, "up")
        _ip("-n", self.netns, "addr", "add", f"{self.addr}/{prefix}", "dev", self.veth_ns)
        _ip("-n", self.netns, "link", "set", self.veth_ns, "up")

    def argv(self) -> list[str]:
        return ["nsenter", f"--net=/var/run/netns/{self.netns}",
                "dockerd", "--config-file", str(self.config_file),
                "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                "--pidfile", str(self.exec_root / "dockerd.pid"),
                "-H", f"unix://{self.socket}", "-H", f"tcp://{self.addr}:{PORT}",
                "--iptables=false", "--ip6tables=false", "--cgroup-parent", self.cgroup_parent,
                "--log-level", "warn"]

    def start(self) -> None:
        if self.running():
            return
        if not self._network_made:
            self._make_network()
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("{}\n")
        with open(self.log, "ab") as log:
            # nsenter execs dockerd: the pid recorded here is the daemon's own.
            self._proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self._proc.pid
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the second dockerd exited {self._proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                self.client(timeout=5).ping()
                self.containerd_pid = self._read_pid(self.exec_root / "containerd" / "containerd.pid")
                return
            time.sleep(0.5)
        raise RuntimeError(f"the second dockerd did not answer in {self.start_timeout:.0f} s: "
                           f"{self.log.read_text()[-2000:]}")

    @staticmethod
    def _read_pid(path: Path) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text().strip())
        return None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to the recorded dockerd pid and wait (dockerd stops its own containerd)."""
        if not self.running():
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(30)
        self._wait_gone(self.containerd_pid, 30)

    def kill(self) -> None:
        """SIGKILL to dockerd and its containerd, as an engine that dies mid-run."""
        if self.running():
            self._proc.kill()
            self._proc.wait(30)
        self._signal(self.containerd_pid, signal.SIGKILL)
        self._wait_gone(self.containerd_pid, 30)

    @staticmethod
    def _signal(pid: int | None, sig: int) -> None:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    @staticmethod
    def _wait_gone(pid: int | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while pid and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)

    # -- the link --------------------------------------------------------------------------
    def cut_link(self) -> None:
        """The host side of the veth down: the engine's TCP endpoint stops answering."""
        _ip("link", "set", self.veth_host, "down")

    def restore_link(self) -> None:
        _ip("link", "set", self.veth_host, "up")

    # -- use -------------------------------------------------------------------------------
    def client(self, timeout: int = 300) -> docker.DockerClient:
        """A client on the unix socket (works while the link is cut)."""
        return docker.DockerClient(base_url=f"unix://{self.socket}", timeout=timeout)

    def env(self) -> dict[str, str]:
        """Environment for the docker CLI aimed at this engine."""
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def load(self, image_ref: str) -> None:
        """docker save from the main engine | docker load into this one; nothing when this
        engine has that image already (the same image ID): an engine shared by several tests
        loads each image once."""
        main_env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        with contextlib.suppress(docker.errors.DockerException):
            main_id = docker.from_env(environment=main_env).images.get(image_ref).id
            if main_id and self.client().images.get(image_ref).id == main_id:
                return
        save = subprocess.Popen(["docker", "save", image_ref], stdout=subprocess.PIPE, env=main_env)
        load = subprocess.run(["docker", "load", "-q"], stdin=save.stdout, capture_output=True,
                              text=True, env=self.env(), timeout=600, check=False)
        save.stdout.close()
        if save.wait(600) != 0 or load.returncode != 0:
            raise RuntimeError(f"cannot load {image_ref} into the second engine: {load.stderr}")

    # -- teardown --------------------------------------------------------------------------
    def _own_cgroups(self) -> list[Path]:
        """Its cgroup parent: under each controller (cgroup v1), or at the root (v2)."""
        root = Path("/sys/fs/cgroup")
        return [*root.glob(f"*/{self.cgroup_parent}"), *root.glob(self.cgroup_parent)]

    def _own_pids(self) -> set[int]:
        """Processes this engine left: in its own cgroup parent, or started with its exec-root
        (containerd and shims of a killed engine)."""
        pids: set[int] = set()
        for procs in (p for cgroup in self._own_cgroups() for p in cgroup.glob("**/cgroup.procs")):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
        marker = str(self.exec_root).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    pids.add(int(entry.name))
        pids.discard(os.getpid())
        return pids

    def _unmount_own(self) -> None:
        mine = []
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/mounts").read_text().splitlines():
                point = line.split()[1]
                # dockerd bind-mounts its data-root onto itself: the roots count too
                if any(point == str(root) or point.startswith(f"{root}/")
                       for root in (self.data_root, self.exec_root)):
                    mine.append(point)
        for point in sorted(mine, key=len, reverse=True):
            with contextlib.suppress(subprocess.TimeoutExpired):  # the other mounts still go
                subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=30)

    def close(self) -> None:
        """Every step tried, whatever an earlier one raised (a stop or umount that times out
        must not leave the veth, the namespace and the folders); the first error re-raised."""
        errors: list[BaseException] = []

        def step(fn, *args) -> None:
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - the remaining steps still run
                errors.append(exc)

        step(self.stop)
        step(self._kill_left)
        step(self._remove_cgroups)
        step(self._unmount_own)
        if self._network_made:
            step(_ip, "link", "del", self.veth_host)
            step(_ip, "netns", "del", self.netns)
            self._network_made = False
        shutil.rmtree(self.exec_root, ignore_errors=True)
        shutil.rmtree(self.data_root, ignore_errors=True)
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        if errors:
            raise errors[0]

    def _kill_left(self) -> None:
        if self.running():  # stop() gave up: the daemon itself
            self._proc.kill()
        for _ in range(3):
            left = self._own_pids()
            if not left:
                break
            for pid in left:
                self._signal(pid, signal.SIGKILL)
            time.sleep(0.5)

    def _remove_cgroups(self) -> None:
        for cgroup in sorted(self._own_cgroups(), reverse=True):
            for sub in sorted(cgroup.glob("**/"), key=lambda p: len(str(p)), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()


if __name__ == "__main__":  # smoke test: python -m tests.second_engine IMAGE
    import sys

    with SecondEngine() as second:
        print("up:", second.host, second.client().version()["Version"])
        if len(sys.argv) > 1:
            second.load(sys.argv[1])
            out = second.client().containers.run(sys.argv[1], ["go", "version"], remove=True,
                                                 network_mode="none", mem_limit="256m")
            print(out.decode().strip())
        remote = docker.DockerClient(base_url=second.host, timeout=10)
        print("tcp:", remote.info()["Name"], remote.info()["Architecture"])
        second.cut_link()
        try:
            docker.DockerClient(base_url=second.host, timeout=3).ping()
            print("link cut but still answering")
        except Exception as exc:  # noqa: BLE001
            print("cut:", type(exc).__name__)
        second.restore_link()
        second.kill()
    print("left:", _ip("netns", "list").stdout.strip() or "-")
