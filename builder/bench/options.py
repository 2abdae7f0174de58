"""Bench options: one frozen object, with the limits parsed the way `docker run` parses them."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

SUITES = ("compile", "memory", "sched", "tooling", "memstats", "gotest")
_MEMORY = re.compile(r"^(?P<n>\d+(\.\d+)?)(?P<unit>[bkmg]?)$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
MIN_MEMORY = 6 * 2**20  # the engine refuses less


def parse_cpus(text: str, host_cpus: int | None = None) -> float:
    """'0.5', '1.5', '2' -> CPUs as a float; refuse what docker run refuses, and more than the host."""
    try:
        cpus = float(text)
    except ValueError:
        raise ConfigError(f"--cpus {text!r} is not a number of CPUs (for example 0.5 or 2)") from None
    if not cpus > 0 or math.isnan(cpus) or round(cpus * 1e9) < 1:
        raise ConfigError(f"--cpus {text!r} must be more than 0 (for example 0.5 or 2)")
    if host_cpus and cpus > host_cpus:
        raise ConfigError(f"--cpus {text} is more than the engine's {host_cpus} CPUs: ask for at most {host_cpus}")
    return cpus


def parse_memory(text: str, host_bytes: int | None = None) -> int:
    """'512m', '2g', '1073741824', '1.5g' -> bytes, as docker run reads them."""
    m = _MEMORY.match(text.strip())
    if not m:
        raise ConfigError(
            f"--memory {text!r} is not a size: write bytes or a number with b, k, m or g (512m, 2g)"
        )
    n = int(float(m.group("n")) * _UNITS[m.group("unit").lower()])
    if n < MIN_MEMORY:
        raise ConfigError(f"--memory {text} is below the engine's minimum of 6m")
    if host_bytes and n > host_bytes:
        raise ConfigError(
            f"--memory {text} is more than the engine's {host_bytes / 2**30:.1f} GiB: ask for less"
        )
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
    images: tuple[str, ...]  # local image references, one per configuration
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

    @property
    def nano_cpus(self) -> int:
        return round(self.cpus * 1e9)
