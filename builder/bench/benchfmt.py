"""A reader for the Go benchmark text format (what benchstat reads), used to check what
gobuild writes: configuration lines, Unit lines and one result line per measured run."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_CONFIG = re.compile(r"^([a-z][^\s:A-Z]*):(?:\s+(.*))?$")
_UNIT = re.compile(r"^Unit\s+(\S+)(\s+\S+=\S+)+$")
_NAME = re.compile(r"^Benchmark[A-Z0-9_]\S*$|^Benchmark$")


@dataclass
class Result:
    name: str
    iterations: int
    values: dict[str, float]
    config: dict[str, str] = field(default_factory=dict)


def parse(text: str) -> list[Result]:
    """Results with the configuration in force for each; ValueError on a malformed line."""
    config: dict[str, str] = {}
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip():
            continue
        if m := _CONFIG.match(line):
            config[m.group(1)] = (m.group(2) or "").strip()
            continue
        if _UNIT.match(line):
            continue
        fields = line.split()
        if fields and fields[0].startswith("Benchmark"):
            if not _NAME.match(fields[0]) or len(fields) < 4 or len(fields) % 2 != 0:
                raise ValueError(f"line {n}: malformed benchmark line: {line!r}")
            try:
                iterations = int(fields[1])
                values = {fields[i + 1]: float(fields[i]) for i in range(2, len(fields), 2)}
            except ValueError:
                raise ValueError(f"line {n}: malformed values: {line!r}") from None
            out.append(Result(name=fields[0], iterations=iterations, values=values, config=dict(config)))
            continue
        raise ValueError(f"line {n}: neither configuration nor benchmark: {line!r}")
    return out
