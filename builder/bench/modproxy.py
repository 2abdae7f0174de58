"""The moddownload suite's module proxy: a real HTTP server in the Go module proxy layout, on a
network made for the run that reaches nothing else.

For the run, one isolated network (internal: no route out; no address of the host on its
bridge, so not even the host's own services). Per image, a proxy container of that image serves
the workload's modules from the image's bench volume with the probe's file server (built by the
image's own toolchain in the preparation): the embedded workload's generated proxy folder, or,
for --workload, the module cache's download folder the preparation filled (the same layout).
Before anything is measured, a probe container on the network checks that the proxy answers and
that nothing else does (the default bridge's gateway, the network's own gateway, no gateway
route), then one unmeasured `go mod download` fills the persistent (warm) module cache.
Measured runs then download with an empty cache (cold: the container's own /tmp) or with the
warm one, by GOPROXY=http://<proxy container>:8080. The proxies and the network are removed on
every way out (and by the run's labelled cleanup after Ctrl-C).
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import docker

from .. import engine
from ..errors import BenchError
from .options import BenchOptions
from .progress import Progress
from .results import Target


class Bench(Protocol):
    """What this module uses of runner.Bench (which imports this module)."""

    client: docker.DockerClient
    run_id: str
    opts: BenchOptions
    progress: Progress

    def spec(self, target: Target, command: list[str], **kw: Any) -> engine.Spec: ...

MOUNT = "/gobuild"
PORT = 8080
PROXY = f"{MOUNT}/bin/modproxy"
NETCHECK = f"{MOUNT}/bin/netcheck"
WARM_MOUNT = "/gobuild-warm"  # a volume of its own, writable: the bench volume is read-only to runs
WARM_CACHE = f"{WARM_MOUNT}/modcache"  # kept from run to run
COLD_CACHE = "/tmp/gomodcache"  # in the container's own layer: empty every run
READY_TIMEOUT = 60.0
ZIP_LINE = "GOBUILD-PROXY-ZIP "  # the proxy's line per .zip served
NO_ROUTE = ("unreachable", "timeout")


def proxy_dir(user_workload: bool) -> str:
    """What the proxy serves: the generated proxy folder, or for --workload the download
    folder of the module cache the preparation filled (which has the proxy layout)."""
    return f"{MOUNT}/modcache/cache/download" if user_workload else f"{MOUNT}/proxy"


def download_argv(user_workload: bool) -> tuple[str, ...]:
    """The measured command: the same download the preparation ran."""
    return ("go", "mod", "download") if user_workload else ("go", "mod", "download", "all")


def network_name(run_id: str) -> str:
    return f"gobuild-net-{run_id}"


def isolation_problems(check: dict) -> list[str]:
    """What the network check saw that an isolated network must not show (pure)."""
    problems = []
    if not check.get("reached"):
        problems.append(f"the proxy did not answer ({check.get('reach_result')})")
    for addr, outcome in sorted((check.get("others") or {}).items()):
        if outcome not in NO_ROUTE:
            problems.append(f"{addr} was reachable ({outcome})")
    if check.get("gateway_routes"):
        problems.append(f"routes through a gateway: {'; '.join(check['gateway_routes'])}")
    return problems


@dataclass(frozen=True, kw_only=True)
class Proxies:
    """The running proxies: the network and each configuration's GOPROXY URL."""

    network: str
    urls: Mapping[str, str] = field(default_factory=dict)  # target label -> GOPROXY
    checks: Mapping[str, Mapping] = field(default_factory=dict)  # target label -> netcheck's view
    containers: Mapping[str, engine.Container] = field(default_factory=dict)  # label -> proxy

    def zips_served(self, label: str) -> int:
        """How many .zip files label's proxy has served so far (its GOBUILD-PROXY-ZIP lines):
        the difference around a measured run says what that run fetched through the proxy."""
        _, said = self.containers[label].status()
        return sum(line.startswith(ZIP_LINE) for line in said.splitlines())

    def facts(self) -> dict:
        """How the suite's network was made and what a probe inside it reached (results.json)."""
        made = engine.isolated_network_kwargs(self.network, {})
        return {"name": self.network, "internal": made["internal"], "options": made["options"],
                "proxies": dict(self.urls), "checks": {k: dict(v) for k, v in self.checks.items()},
                "other_routes": sorted({p for c in self.checks.values()
                                        for p in isolation_problems(c)})}


@contextlib.contextmanager
def serving(bench: Bench, targets: list[Target]) -> Iterator[Proxies]:
    """Make the network, start and check one proxy per target and fill its warm cache; on
    leaving, remove the proxies, then the network."""
    client, run_id = bench.client, bench.run_id
    net = engine.create_network(client, network_name(run_id), run_id)
    urls, checks, containers = {}, {}, {}
    try:
        with contextlib.ExitStack() as stack:
            for t in targets:
                with bench.progress.step(f"module proxy for {t.label}: start, check the "
                                         "network, fill the warm module cache"):
                    urls[t.label], checks[t.label], containers[t.label] = stack.enter_context(
                        _proxy(bench, t, net))
            yield Proxies(network=net, urls=urls, checks=checks, containers=containers)
    finally:
        if not engine.keep_containers():
            with contextlib.suppress(Exception):  # never hide what ended the block
                engine.remove_network(client, net)


@contextlib.contextmanager
def _proxy(bench: Bench, target: Target, network: str) -> Iterator[tuple[str, dict, engine.Container]]:
    """One proxy for target, checked and its warm cache filled: yields (GOPROXY, check, proxy)."""
    user_workload = bench.opts.workload is not None
    spec = bench.spec(target, [PROXY, "-dir", proxy_dir(user_workload), "-addr", f":{PORT}"],
                      role="proxy", limits=False, network=network, working_dir=MOUNT)
    with engine.Container(bench.client, spec, bench.run_id) as ctr:
        ctr.serve()
        url = f"http://{ctr.name}:{PORT}"
        check = _check(bench, target, network, f"{ctr.name}:{PORT}")
        if problems := isolation_problems(check):
            state, said = ctr.status()
            tail = " | ".join(said.strip().splitlines()[-3:]) or "no output"
            if state != "running":  # the proxy's own failure, not the network's
                raise BenchError(f"moddownload: the module proxy of {target.label} stopped "
                                 f"({state}: {tail}): run with GOBUILD_KEEP_CONTAINERS=1 and "
                                 "look at the proxy container")
            raise BenchError(f"moddownload: the network of {target.label} is not isolated as it "
                             f"must be: {'; '.join(problems)} (proxy {state}: {tail}); "
                             "does this engine support internal networks?")
        fill = bench.spec(target, list(download_argv(user_workload)), role="fill", limits=False,
                          network=network, env={"GOPROXY": url, "GOMODCACHE": WARM_CACHE},
                          warm_cache=True)
        done = engine.run(bench.client, fill, bench.run_id)
        if done.exit_code != 0:
            raise BenchError(f"moddownload: go mod download from the local proxy failed for "
                             f"{target.label} ({done.tail()}): run with GOBUILD_KEEP_CONTAINERS=1 "
                             "and look at the proxy container")
        yield url, check, ctr


def _check(bench: Bench, target: Target, network: str, proxy_addr: str) -> dict:
    """Run the network probe beside the proxy: it waits for the proxy, then tries the hosts
    that a container with any other route would reach."""
    others = [gw for name in ("bridge", network)
              if (gw := engine.network_gateway(bench.client, name))]
    argv = [NETCHECK, "-reach", proxy_addr, "-wait", f"{READY_TIMEOUT:g}s",
            "-unreachable", ",".join(f"{gw}:{PORT}" for gw in others)]
    spec = bench.spec(target, argv, role="netcheck", limits=False, network=network,
                      timeout=READY_TIMEOUT + 60)
    done = engine.run(bench.client, spec, bench.run_id)
    for line in reversed(done.output.splitlines()):
        if line.startswith("GOBUILD-NET "):
            return json.loads(line[len("GOBUILD-NET "):])
    raise BenchError(f"moddownload: the network probe said nothing ({done.tail()}): "
                     "was the image prepared by this gobuild version?")
