"""results.json read back: a results folder (or the file itself) as frozen values for reports
and comparisons.

Generic over the metrics a file holds: a record's metrics are the keys of its `summary`, so
suites and metrics added later (the schema only grows) are read without a change here. What
each metric is measured in comes from its name (`_ns`, `_bytes`) or from results.METRICS.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ..errors import ConfigError
from . import benchfmt
from .results import METRICS, SCHEMA

Unit = Literal["ns", "bytes", "count"]
_SCHEMA = re.compile(r"^gobuild\.bench/v(\d+)$")
SCHEMA_VERSION = int(_SCHEMA.match(SCHEMA).group(1))  # type: ignore[union-attr]
# memstats figures are bytes without saying so in their names
_BYTES = {"heap_alloc", "heap_sys", "heap_inuse", "sys"}


def higher_is_better(unit: str) -> bool:
    """Whether more is better, decided from the unit as benchstat decides it: a rate (`*/s`,
    such as go test's MB/s from b.SetBytes) is a throughput; every other unit (time, bytes,
    counts) is better lower."""
    return unit.endswith("/s")


def unit_of(metric: str) -> Unit:
    """What a metric counts: results.json names (wall_ns, peak_rss_bytes) or go test's own
    units (ns/op, B/op)."""
    if metric.endswith("_ns") or metric == "ns/op":
        return "ns"
    if (metric.endswith("_bytes") or metric in _BYTES or metric.startswith("cgroup_")
            or metric == "B/op"):
        return "bytes"
    return "count"


def go_unit(suite: str, metric: str) -> str:
    """The Go benchmark unit bench.txt gives this metric (what benchstat shows)."""
    return dict(METRICS.get(suite, ())).get(metric, metric.replace("_", "-"))


@dataclass(frozen=True, kw_only=True)
class Target:
    config: str  # the configuration label: the image, or IMAGE#N when one image is benched twice
    image: str
    platform: str
    go_version: str
    emulated: bool
    host: str = ""  # a fleet host's label ("" for one engine)


@dataclass(frozen=True, kw_only=True)
class Record:
    """One configuration of a run: its measured values per metric, in run order."""

    suite: str
    name: str
    config: str  # the target's configuration label (group by this, not by image)
    image: str
    gomaxprocs: int | None
    emulated: bool
    values: Mapping[str, tuple[float, ...]]
    failed: int
    oom: int
    argv: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The Go benchmark name without 'Benchmark' (GoBuildA/pkg=workload-2)."""
        return f"{self.name}-{self.gomaxprocs}" if self.gomaxprocs else self.name


@dataclass(frozen=True, kw_only=True)
class Run:
    """One results.json: the run's facts and every record."""

    path: Path  # the results folder
    run_id: str
    started: str
    finished: str | None
    status: str
    rounds_done: int | None
    options: Mapping[str, Any]
    limits: Mapping[str, Any]
    host: Mapping[str, Any]
    targets: tuple[Target, ...]
    records: tuple[Record, ...]
    warnings: tuple[str, ...]
    raw: Mapping[str, Any]  # the whole document, for figures read by name (memstats divergence)

    def target(self, config: str) -> Target:
        return next(t for t in self.targets if t.config == config)

    @property
    def hosts(self) -> tuple[Mapping[str, Any], ...]:
        """A fleet run's hosts (results.json's `hosts`); () for one engine."""
        return tuple(self.raw.get("hosts") or ())

    @property
    def host_label(self) -> str | None:
        """A name for the host that ran this, once results carry one (fleets)."""
        label = self.host.get("label") or self.host.get("name")
        return str(label) if label else None


def results_file(path: Path) -> Path:
    return path / "results.json" if path.is_dir() else path


def load(path: Path) -> Run:
    """A results folder or results.json as a Run; any problem is one ConfigError line."""
    file = results_file(Path(path))
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file: give a results folder written by gobuild bench "
                          "(it holds results.json) or a results.json") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot be read ({exc}): give a readable results.json") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        what = "truncated" if exc.pos >= len(text.rstrip()) else "not JSON"
        raise ConfigError(f"{file}: {what} ({exc.msg} at line {exc.lineno}): rerun the bench "
                          "or give another results folder") from None
    return from_json(data, file)


def from_json(data: Any, file: Path) -> Run:
    """The document results.json holds (Results.to_json()) as a Run."""
    schema = data.get("schema") if isinstance(data, dict) else None
    match = _SCHEMA.match(schema) if isinstance(schema, str) else None
    if match is None:
        raise ConfigError(f"{file}: not a gobuild bench result (schema {schema!r}, expected "
                          f"{SCHEMA!r}): give a results.json written by gobuild bench")
    if int(match.group(1)) > SCHEMA_VERSION:
        raise ConfigError(f"{file}: written by a newer gobuild (schema {schema}, this one reads "
                          f"{SCHEMA}): upgrade gobuild to read it")
    try:
        return _run(data, file)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{file}: malformed {SCHEMA} document ({type(exc).__name__}: {exc}): "
                          "rerun the bench or give another results folder") from None


def _record(rec: dict) -> Record:
    declared = [m for m, _ in METRICS.get(rec["suite"], ())]  # the writer's order where known
    metrics = sorted(rec.get("summary") or {}, key=lambda m: (m not in declared, declared.index(m)
                                                             if m in declared else 0, m))
    values = {m: tuple(float(v) for s in rec["samples"] if isinstance(v := s.get(m, -1), (int, float))
                       and not isinstance(v, bool) and v >= 0)
              for m in metrics}
    return Record(
        suite=rec["suite"], name=rec["name"], config=rec.get("config") or rec["image"],
        image=rec["image"], gomaxprocs=rec.get("gomaxprocs"),
        emulated=bool(rec.get("emulated")), values=MappingProxyType(values),
        failed=len(rec.get("failed") or ()), oom=sum(bool(f.get("oom")) for f in rec.get("failed") or ()),
        argv=tuple(str(a) for a in rec.get("argv") or ()),
    )


def _gotest_records(rec: dict) -> list[Record]:
    """go test's own benchmarks of the gotest suite, one record each (units as metrics:
    ns/op, B/op, allocs/op), from the result lines every measured run kept."""
    values: dict[str, dict[str, list[float]]] = {}
    for sample in rec["samples"]:
        for result in benchfmt.parse("\n".join(sample.get("benchmarks") or [])):
            for unit, v in result.values.items():
                values.setdefault(result.name.removeprefix("Benchmark"), {}).setdefault(unit, []).append(v)
    return [Record(suite="gotest", name=f"GoTest/{name}", config=rec.get("config") or rec["image"],
                   image=rec["image"], gomaxprocs=None, emulated=bool(rec.get("emulated")),
                   values=MappingProxyType({u: tuple(vs) for u, vs in units.items()}), failed=0, oom=0)
            for name, units in values.items()]


def _run(data: dict, file: Path) -> Run:
    targets = tuple(Target(config=t.get("config") or t["image"], image=t["image"],
                           platform=t["platform"], go_version=str(t["go_version"]),
                           emulated=bool(t["emulated"]), host=str(t.get("host") or ""))
                    for t in data["targets"])
    records = tuple(_record(r) for recs in data["suites"].values() for r in recs)
    records += tuple(g for r in data["suites"].get("gotest", ()) for g in _gotest_records(r))
    return Run(
        path=file.parent, run_id=data["run_id"], started=data["started"], finished=data.get("finished"),
        status=data.get("status", "complete"), rounds_done=data.get("rounds_done"),
        options=MappingProxyType(dict(data.get("options") or {})),
        limits=MappingProxyType(dict(data.get("limits") or {})),
        host=MappingProxyType(dict(data.get("host") or {})), targets=targets, records=records,
        warnings=tuple(data.get("warnings") or ()), raw=MappingProxyType(data),
    )
