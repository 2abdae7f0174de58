"""`gobuild doctor`: what this machine has for gobuild, and the command that fixes each gap."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

from . import engine
from .errors import EngineError
from .inputs import Defaults

# What gobuild's builds use of the engine's BuildKit (buildx's docker driver builds with the
# engine's own), the first engine release whose BuildKit has it, and what is lost without it.
# Engine -> BuildKit: 20.10 -> 0.8, 23.0 -> 0.10, 24.0 -> 0.11, 25.0 -> 0.12, 26.0 -> 0.13.
ENGINE_FEATURES: tuple[tuple[tuple[int, int], str, str], ...] = (
    ((19, 3), "buildx (the docker driver)",
     "gobuild images cannot build with buildx: it falls back to the classic builder"),
    ((24, 0), "SOURCE_DATE_EPOCH (BuildKit 0.11)",
     "the image's created time and history are the build's time, not the Go release's date"),
    ((26, 0), "rewrite-timestamp (BuildKit 0.13)",
     "layer file times are not clamped to SOURCE_DATE_EPOCH: the same inputs give other layer digests"),
)
MIN_ENGINE = (20, 10)  # cgroup v2 limits, and the oldest engine gobuild's templates build on

SETUP = "make setup   (scripts/setup-host.sh, as root)"


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True, kw_only=True)
class Report:
    checks: list[Check] = field(default_factory=list)
    inputs: Defaults | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks
                   if check.name in ("engine", "buildx")
                   or (check.name.startswith("host ") and not check.name.endswith(" features")))

    @property
    def exit_code(self) -> int:
        return EngineError.exit_code

    def as_json(self) -> dict:
        out = {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}
        if self.inputs is not None:
            out["inputs"] = self.inputs.as_json()
        return out

    def text(self) -> str:
        lines = []
        width = max([15, *(len(check.name) for check in self.checks)])  # host names are longer
        for check in self.checks:
            mark = "ok     " if check.ok else "MISSING"
            lines.append(f"{mark} {check.name:<{width}} {check.detail}")
            if not check.ok and check.fix:
                lines.append(f"        {'':<{width}} fix: {check.fix}")
        if self.inputs is not None:
            lines.append(f"inputs  {'from':<15} {self.inputs.source}")
            for name in ("matrix", "lock", "templates"):
                lines.append(f"        {name:<15} {getattr(self.inputs, name).absolute()}")
        return "\n".join(lines)


def engine_release(version: str) -> tuple[int, int] | None:
    """(major, minor) of an engine version ('20.10.24', '26.1.5+dfsg1', '23.0.6-1'); None if unknown."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def engine_gaps(facts: engine.EngineFacts) -> list[str]:
    """What an engine lacks that gobuild uses, each with what it costs (pure)."""
    release = engine_release(facts.version)
    if release is None:
        return [f"engine version {facts.version!r} not understood: cannot tell what it supports"]
    gaps = []
    if release < MIN_ENGINE:
        gaps.append(f"engine {facts.version} is older than {MIN_ENGINE[0]}.{MIN_ENGINE[1]}, the oldest "
                    "gobuild supports (cgroup v2 limits, the templates' COPY --chown with BuildKit)")
    for needed, feature, cost in ENGINE_FEATURES:
        if release < needed:
            gaps.append(f"no {feature} before engine {needed[0]}.{needed[1]}: {cost}")
    if facts.cgroup_version == "2" and release < (20, 10):
        gaps.append("cgroup v2 without engine 20.10: bench limits are not applied")
    return gaps


def host_checks(reached) -> list[Check]:
    """One fleet host (hosts.Reached): reachable, and its architecture, CPUs, memory, cgroup
    version, engine gaps and the BuildKit buildx finds on it."""
    from .fleet import environment_for

    host, name = reached.host, f"host {reached.host.label}"
    if not reached.ok:
        return [Check(name=name, ok=False, detail=f"{host.endpoint}: {reached.error}",
                      fix="check the address, that the engine runs there and, for ssh://, that "
                          "'ssh HOST docker version' works (keys, the docker group)")]
    f = reached.facts
    checks = [Check(name=name, ok=True, detail=(
        f"{host.endpoint}: Docker {f.version} (API {f.api_version}), {f.os}/{f.arch}, "
        f"{f.cpus} CPUs, {f.memory_bytes / 2**30:.1f} GiB, cgroup v{f.cgroup_version} "
        f"({f.cgroup_driver}), kernel {f.kernel}"
        + (f"; declared platforms {', '.join(host.platforms)}" if host.platforms else "")))]
    gaps = engine_gaps(f)
    checks.append(Check(name=f"{name} features", ok=not gaps,
                        detail="; ".join(gaps) or "has everything gobuild's builds use",
                        fix="upgrade the engine there (Debian: docker.io from trixie, 26.1)"))
    checks.append(_buildx_on(name, environment_for(host, os.environ)))
    return checks


def _buildx_on(name: str, env: dict[str, str]) -> Check:  # env: the whole environment
    """`docker buildx inspect` of the default builder aimed at the host: its BuildKit."""
    if not shutil.which("docker"):
        return Check(name=f"{name} buildx", ok=False, detail="docker CLI not found",
                     fix="apt-get install docker-cli docker-buildx")
    try:
        out = subprocess.run(["docker", "buildx", "inspect", "--bootstrap", "default"], capture_output=True,
                             text=True, timeout=60, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name=f"{name} buildx", ok=False, detail=f"docker buildx inspect: {exc}",
                     fix="apt-get install docker-buildx")
    kit = re.search(r"BuildKit version:\s*(\S+)", out.stdout)
    if out.returncode != 0 or not kit:
        said = (out.stderr.strip().splitlines() or ["no BuildKit version"])[-1]
        return Check(name=f"{name} buildx", ok=False, detail=f"docker buildx inspect: {said}",
                     fix="apt-get install docker-buildx on this machine; the engine needs 19.03 or newer")
    return Check(name=f"{name} buildx", ok=True, detail=f"BuildKit {kit.group(1)} (buildx's docker driver)")


def diagnose_hosts(hosts) -> Report:
    """`gobuild doctor --host ...`: every host asked at once."""
    from .hosts import reach_all

    checks = [c for r in reach_all(hosts) for c in host_checks(r)]
    return Report(checks=checks)


def diagnose(inputs: Defaults | None = None) -> Report:
    """What this machine has; inputs (the matrix, lock and templates gobuild would read from
    the current directory) is reported as it is given."""
    checks = []
    try:
        facts = engine.facts(engine.client())
        checks.append(Check(
            name="engine", ok=True,
            detail=f"Docker {facts.version} (API {facts.api_version}), {facts.os}/{facts.arch}, "
                   f"cgroup v{facts.cgroup_version} ({facts.cgroup_driver}), storage "
                   f"{facts.storage_driver}, {facts.cpus} CPUs, {facts.memory_bytes / 2**30:.1f} GiB",
        ))
        gaps = engine_gaps(facts)
        checks.append(Check(name="engine features", ok=not gaps,
                            detail="; ".join(gaps) or "has everything gobuild's builds use",
                            fix="upgrade the engine (make setup installs Debian's docker.io 26.1)"))
    except EngineError as exc:
        checks.append(Check(name="engine", ok=False, detail=exc.message.split(" (")[0] + " (no daemon running)",
                            fix=f"{SETUP}, or start it: dockerd &"))
    bx = engine.buildx_version()
    checks.append(Check(name="buildx", ok=bx is not None, detail=bx or "docker buildx not found",
                        fix=f"{SETUP}, or apt-get install docker-buildx"))
    emus = engine.emulators()
    arm = emus.get("qemu-aarch64", False)
    checks.append(Check(
        name="qemu", ok=arm or engine.host_arch() == "arm64",
        detail=", ".join(f"{k}{'' if v else ' (disabled)'}" for k, v in emus.items()) or "no emulators registered",
        fix=f"{SETUP}, or apt-get install qemu-user-static binfmt-support and register "
            "/usr/lib/binfmt.d/qemu-aarch64.conf in /proc/sys/fs/binfmt_misc/register",
    ))
    arm32 = emus.get("qemu-arm", False)
    checks.append(Check(
        name="qemu-arm", ok=arm32 or engine.host_arch() == "arm",
        detail=("registered: linux/arm/v7 and linux/arm/v6 smoke tests and benches run emulated"
                if arm32 else "not registered: linux/arm/v7 and linux/arm/v6 containers cannot run "
                "here (their images still build: slim is files only)"),
        fix=f"{SETUP}, or register /usr/lib/binfmt.d/qemu-arm.conf in "
            "/proc/sys/fs/binfmt_misc/register (an arm64 host whose CPU runs 32-bit code needs none)",
    ))
    for tool, why in (("mmdebstrap", "for 'gobuild base'"), ("docker-registry", "for the integration tests")):
        path = shutil.which(tool)
        checks.append(Check(name=tool, ok=bool(path), detail=path or f"not installed ({why})",
                            fix=f"apt-get install {tool}"))
    return Report(checks=checks, inputs=inputs)
