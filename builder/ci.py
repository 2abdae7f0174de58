"""What CI workflows take from the matrix: the selected cells as the JSON that a job's
``strategy.matrix`` reads with ``fromJSON``, one entry per platform with its runner label, so
that the workflows follow images/matrix.yaml instead of repeating it.

Each platform builds on a native runner (no qemu): GitHub's ``ubuntu-24.04`` for amd64 and
``ubuntu-24.04-arm`` for arm64, overridable (self-hosted labels). ``emulate`` is the fallback
when no runner of an architecture is at hand: every platform goes to the amd64 runner and the
entries that need qemu say so (``emulated``), for the workflow to set qemu up. A platform with
no runner label (32-bit ARM: GitHub has none) always goes there, emulated, unless ``--runner``
names one.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ConfigError
from .matrix import PLATFORMS, Cell, closest, parse_platform, platform_tag

DEFAULT_RUNNERS: dict[str, str] = {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}
# No hosted runner is a 32-bit ARM machine: linux/arm/v7 and v6 build on the amd64 runner under
# qemu (emulated), unless --runner names a runner of theirs (a self-hosted Raspberry Pi).
EMULATION_HOST = "linux/amd64"  # where every platform runs with emulate
# A runner label as a workflow's runs-on takes it: no spaces, no expression syntax.
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True, kw_only=True)
class RunnerJob:
    """One entry of strategy.matrix.include: the cells one runner builds."""

    platform: str
    runner: str
    emulated: bool
    cells: tuple[str, ...]

    @property
    def arch(self) -> str:
        return platform_tag(self.platform)

    def as_json(self) -> dict:
        return {"platform": self.platform, "arch": self.arch, "runner": self.runner,
                "emulated": self.emulated, "cells": list(self.cells)}


def parse_runner(text: str) -> tuple[str, str]:
    """PLATFORM=LABEL of --runner -> (platform, label)."""
    platform, sep, label = text.partition("=")
    if not sep:
        raise ConfigError(f"--runner {text[:60]!r} is not PLATFORM=LABEL (for example "
                          "linux/arm64=ubuntu-24.04-arm)")
    if platform not in PLATFORMS:
        raise ConfigError(f"--runner: unknown platform {platform[:40]!r}{closest(platform, PLATFORMS)}: "
                          f"choose from {', '.join(PLATFORMS)}")
    if not LABEL_RE.match(label):
        raise ConfigError(f"--runner {platform}={label[:60]!r}: a runner label is letters, digits, "
                          "'.', '_' and '-' (for example ubuntu-24.04-arm)")
    return parse_platform(platform), label


def runner_labels(overrides: Sequence[str] = ()) -> dict[str, str]:
    """The default labels with the --runner overrides applied (the last one of a platform wins)."""
    return {**DEFAULT_RUNNERS, **dict(parse_runner(text) for text in overrides)}


def strategy_matrix(cells: Sequence[Cell], *, runners: Mapping[str, str] = DEFAULT_RUNNERS,
                    emulate: bool = False) -> dict:
    """{"include": [one entry per platform, in the matrix's order]}: what fromJSON hands to
    strategy.matrix. With emulate, every platform runs on the amd64 runner."""
    if not cells:
        raise ConfigError("no cell selected: a workflow matrix needs at least one")
    by_platform: dict[str, list[str]] = {}
    for cell in cells:
        by_platform.setdefault(cell.platform, []).append(cell.id)
    jobs = []
    for platform, ids in by_platform.items():
        host = EMULATION_HOST if emulate or platform not in runners else platform
        jobs.append(RunnerJob(platform=platform, runner=runners[host],
                              emulated=host != platform, cells=tuple(ids)))
    return {"include": [job.as_json() for job in jobs]}
