"""`gobuild doctor`: what this machine has for gobuild, and the command that fixes each gap."""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field

from . import engine
from .errors import EngineError
from .inputs import Defaults

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
        return all(check.ok for check in self.checks if check.name in ("engine", "buildx"))

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
        for check in self.checks:
            mark = "ok     " if check.ok else "MISSING"
            lines.append(f"{mark} {check.name:<15} {check.detail}")
            if not check.ok and check.fix:
                lines.append(f"        {'':<15} fix: {check.fix}")
        if self.inputs is not None:
            lines.append(f"inputs  {'from':<15} {self.inputs.source}")
            for name in ("matrix", "lock", "templates"):
                lines.append(f"        {name:<15} {getattr(self.inputs, name).absolute()}")
        return "\n".join(lines)


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
    for tool, why in (("mmdebstrap", "for 'gobuild base'"), ("docker-registry", "for the integration tests")):
        path = shutil.which(tool)
        checks.append(Check(name=tool, ok=bool(path), detail=path or f"not installed ({why})",
                            fix=f"apt-get install {tool}"))
    return Report(checks=checks, inputs=inputs)
