"""`gobuild ci ...`: what CI workflows ask of gobuild. Parse, call builder.ci, print."""
from __future__ import annotations

import json

import click

from . import ci
from .inputs import Inputs, inputs_options, json_option


@click.group("ci")
def ci_group() -> None:
    """Helpers for CI workflows (GitHub Actions).

    \b
    Examples:
      gobuild ci matrix --json
      echo "matrix=$(gobuild ci matrix --json)" >> "$GITHUB_OUTPUT"
    """


@ci_group.command("matrix")
@inputs_options
@click.option("--runner", "runners", multiple=True, metavar="PLATFORM=LABEL",
              help="Runner label for a platform, repeatable [defaults: "
                   + ", ".join(f"{p}={label}" for p, label in ci.DEFAULT_RUNNERS.items()) + "].")
@click.option("--emulate", is_flag=True,
              help="Run every platform on the linux/amd64 runner under qemu (a fallback when no "
                   "native runner is at hand); such entries have \"emulated\": true.")
@json_option
def matrix_cmd(inputs: Inputs, runners: tuple[str, ...], emulate: bool, as_json: bool) -> None:
    """The selected cells as a workflow's strategy.matrix, one entry per platform.

    Each entry has platform, arch, runner (the runs-on label), emulated and the cells it
    builds. --json prints it on one line, as fromJSON reads it from a job output:

    \b
      {"include": [{"platform": "linux/amd64", "arch": "amd64", "runner": "ubuntu-24.04",
                    "emulated": false, "cells": ["go1.21-bookworm-linux-amd64", ...]}, ...]}

    \b
    Examples:
      gobuild ci matrix
      gobuild ci matrix --go latest --variant slim --json
      gobuild ci matrix --runner linux/arm64=my-arm64-runner --json
      gobuild ci matrix --emulate --json     # no arm64 runner: qemu on the amd64 one
    """
    result = ci.strategy_matrix(inputs.cells(), runners=ci.runner_labels(runners), emulate=emulate)
    if as_json:
        click.echo(json.dumps(result, separators=(",", ":")))
        return
    for job in result["include"]:
        how = "emulated on " if job["emulated"] else ""
        click.echo(f"{job['platform']:<12} {how}{job['runner']}: {' '.join(job['cells'])}")
