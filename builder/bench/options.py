"""Bench options: one frozen object, with the limits parsed the way `docker run` parses them."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

_MEMORY = re.compile(r"^(?P<n>\d+(\.\d+)?)(?P<unit>[bkmg]?)\Z", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
MIN_MEMORY = 6 * 2**20  # the engine refuses less
MAX_MEMORY = 2**62  # the kernel's "no limit" is near 2**63: anything this large is a typo
# A plain decimal, as people write a CPU count: "1e9", "nan" and "inf" parse as floats but
# are not CPU counts; more than MAX_CPUS is a typo whatever the engine has.
_CPUS = re.compile(r"^\d+(\.\d+)?\Z")
MAX_CPUS = 1024
# The kernel's CFS quota has a floor of 1 ms per 100 ms period: less is refused by runc only
# after the engine created the container (and its cache volumes), so refuse it here.
MIN_CPUS = 0.01
_CPUSET = re.compile(r"^\d{1,4}(-\d{1,4})?(,\d{1,4}(-\d{1,4})?)*\Z")


def parse_cpus(text: str) -> float:
    """'0.5', '1.5', '2' -> CPUs as a float; refuse what docker run refuses."""
    if not _CPUS.match(text.strip()):
        raise ConfigError(f"--cpus {text!r} is not a number of CPUs: write a decimal such as 0.5 or 2")
    cpus = float(text)
    if not math.isfinite(cpus) or not cpus > 0 or round(cpus * 1e9) < 1:
        raise ConfigError(f"--cpus {text!r} must be more than 0 (for example 0.5 or 2)")
    if cpus < MIN_CPUS:
        raise ConfigError(f"--cpus {text!r} is below the kernel's minimum of {MIN_CPUS} CPUs "
                          "(1 ms per 100 ms): ask for at least 0.01")
    if cpus > MAX_CPUS:
        raise ConfigError(f"--cpus {text!r} is more than {MAX_CPUS}: ask for the CPUs the engine has")
    return cpus


def parse_memory(text: str, option: str = "--memory") -> int:
    """'512m', '2g', '1073741824', '1.5g' -> bytes, as docker run reads them; errors name
    option (fit's --min and --max are sizes too)."""
    m = _MEMORY.match(text.strip())
    if not m:
        raise ConfigError(
            f"{option} {text!r} is not a size: write bytes or a number with b, k, m or g (512m, 2g)"
        )
    n = int(float(m.group("n")) * _UNITS[m.group("unit").lower()])
    if n < MIN_MEMORY:
        raise ConfigError(f"{option} {text} is below the engine's minimum of 6m")
    if n > MAX_MEMORY:
        raise ConfigError(f"{option} {text!r} is larger than any machine: ask for what the engine has")
    return n


def parse_gomaxprocs(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 or v > 1024 for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"--gomaxprocs {text!r}: give distinct whole numbers, e.g. 1,2,4")
    return values


def format_memory(n: int) -> str:
    for unit, size in (("g", 2**30), ("m", 2**20), ("k", 2**10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}b"


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    images: tuple[str, ...]  # local image references; () asks for the selected cells' images
    cpus: float
    memory: int
    cpuset: str | None
    suites: tuple[str, ...]
    runs: int
    warmup: int
    gomaxprocs: tuple[int, ...]
    workload: Path | None  # None: the embedded synthetic module graph
    workload_modules: int
    workload_packages: int
    compile_target: str  # "workload" or "std"
    bench_package: str  # the package whose tests the memory and gotest suites run
    output: Path
    seed: int
    workload_size: str | None = None  # the --workload-size the shape came from, if any
    wait_quiet: float | None = None  # seconds to wait for a quiet host before measuring
    quiet_load: float | None = None  # its 1-minute load threshold [default: quiet_threshold()]
    run_timeout: float = 7200.0  # seconds a measured run may take before it is killed (--run-timeout)

    def __post_init__(self) -> None:
        from ..matrix import IMAGE_REF_RE

        for ref in self.images:
            if not IMAGE_REF_RE.match(ref):
                raise ConfigError(f"--image {ref!r} is not an image reference "
                                  "(for example gobuild/go:1.22.10-slim-amd64)")
        if not self.run_timeout > 0:
            raise ConfigError(f"--run-timeout {self.run_timeout:g} s: give a duration above 0 (90s, 10m)")
        if self.cpuset is not None and not _CPUSET.match(self.cpuset):
            raise ConfigError(f"--cpuset {self.cpuset!r} is not a CPU list: write it as docker "
                              "run --cpuset-cpus does (0-1, or 0,2)")
        if self.quiet_load is not None and self.wait_quiet is None:
            raise ConfigError("--quiet-load only goes with --wait-quiet: "
                              "gobuild bench --wait-quiet 120 --quiet-load 1")
        if self.workload is None and self.workload_packages < self.workload_modules:
            raise ConfigError(f"--packages {self.workload_packages} is fewer than --modules "
                              f"{self.workload_modules}: every module holds at least one package")

    def check_engine(self, engine_cpus: int, engine_memory: int) -> None:
        """Refuse limits beyond what the engine has (parsed once, checked once it answers)."""
        if engine_cpus and self.cpus > engine_cpus:
            raise ConfigError(f"--cpus {self.cpus:g} is more than the engine's {engine_cpus} CPUs: "
                              f"ask for at most {engine_cpus}")
        if engine_memory and self.memory > engine_memory:
            raise ConfigError(f"--memory {format_memory(self.memory)} is more than the engine's "
                              f"{engine_memory / 2**30:.1f} GiB: ask for less")

    def summary(self) -> dict:
        """The options as results.json records them."""
        return {"suites": list(self.suites), "runs": self.runs, "warmup": self.warmup,
                "gomaxprocs": list(self.gomaxprocs), "seed": self.seed,
                "workload": str(self.workload) if self.workload else "embedded",
                "workload_shape": None if self.workload else
                {"modules": self.workload_modules, "packages": self.workload_packages},
                "workload_size": None if self.workload else self.workload_size,
                "configs": list(config_labels(self.images)),
                "wait_quiet": self.wait_quiet, "quiet_load": self.quiet_load,
                "compile_target": self.compile_target, "bench_package": self.bench_package}


def config_labels(images: tuple[str, ...]) -> tuple[str, ...]:
    """One configuration label per image: the reference itself, or, for an image named more
    than once (an A/A check: the same image as two configurations, interleaved), the reference
    with #1, #2, ... in the order given."""
    seen: dict[str, int] = {}
    out = []
    for ref in images:
        seen[ref] = seen.get(ref, 0) + 1
        out.append(f"{ref}#{seen[ref]}" if images.count(ref) > 1 else ref)
    return tuple(out)


def quiet_threshold(engine_cpus: int) -> float:
    """The default load under which a host counts as quiet: half its CPUs. The 1-minute load
    average counts runnable tasks; below half the CPUs, a measured container limited to one
    CPU on a two-CPU host mostly finds a CPU free. It is also where the results start to warn
    that the host was busy, so a bench that waited is not warned about."""
    return 0.5 * max(1, engine_cpus)


def workload_shape(size: str | None, modules: int | None, packages: int | None) -> tuple[int, int]:
    """(modules, packages) of the embedded workload: --modules and --packages when given,
    else the named size's, else the small size's."""
    from .workload import SIZES

    base_modules, base_packages = SIZES[size or "small"]
    if packages is None and modules is not None:  # every module holds at least one package
        return modules, max(base_packages, modules)
    if modules is None and packages is not None and packages < base_modules:
        raise ConfigError(f"--packages {packages} is fewer than the {size or 'small'} size's "
                          f"{base_modules} modules: every module holds at least one package; "
                          "give more packages, --modules too, or a smaller --workload-size")
    return modules or base_modules, packages or base_packages


_DURATION = re.compile(r"^(?P<n>\d+(\.\d+)?)(?P<unit>[smhd]?)\Z")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str = "--older-than") -> float:
    """'90m', '12h', '2d', '3600' -> seconds."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise ConfigError(f"{option} {text!r} is not a duration: write a number with s, m, h or d (90s, 12h, 2d)")
    return float(m.group("n")) * _SECONDS[m.group("unit")]
