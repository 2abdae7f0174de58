"""Bench options: one frozen object, with the limits parsed the way `docker run` parses them."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

_MEMORY = re.compile(r"^(?P<n>\d+(\.\d+)?)(?P<unit>[bkmg]?)$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
MIN_MEMORY = 6 * 2**20  # the engine refuses less


def parse_cpus(text: str) -> float:
    """'0.5', '1.5', '2' -> CPUs as a float; refuse what docker run refuses."""
    try:
        cpus = float(text)
    except ValueError:
        raise ConfigError(f"--cpus {text!r} is not a number of CPUs (for example 0.5 or 2)") from None
    if not math.isfinite(cpus) or not cpus > 0 or round(cpus * 1e9) < 1:
        raise ConfigError(f"--cpus {text!r} must be more than 0 (for example 0.5 or 2)")
    return cpus


def parse_memory(text: str) -> int:
    """'512m', '2g', '1073741824', '1.5g' -> bytes, as docker run reads them."""
    m = _MEMORY.match(text.strip())
    if not m:
        raise ConfigError(
            f"--memory {text!r} is not a size: write bytes or a number with b, k, m or g (512m, 2g)"
        )
    n = int(float(m.group("n")) * _UNITS[m.group("unit").lower()])
    if n < MIN_MEMORY:
        raise ConfigError(f"--memory {text} is below the engine's minimum of 6m")
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

    def __post_init__(self) -> None:
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
                "compile_target": self.compile_target, "bench_package": self.bench_package}


_DURATION = re.compile(r"^(?P<n>\d+(\.\d+)?)(?P<unit>[smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90m', '12h', '2d', '3600' -> seconds."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise ConfigError(f"--older-than {text!r} is not an age: write a number with s, m, h or d (12h, 2d)")
    return float(m.group("n")) * _SECONDS[m.group("unit")]
