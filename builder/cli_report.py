"""`gobuild report` and `gobuild bench compare`: parse, call the library, print."""
from __future__ import annotations

from pathlib import Path

import click

from .bench import compare, report
from .errors import RegressionFound
from .inputs import emit, json_option

_paths = click.argument("paths", nargs=-1, required=True, metavar="PATH...",
                        type=click.Path(path_type=Path))


@click.command("compare")
@_paths
@click.option("--col", type=click.Choice(compare.COLUMNS),
              help="Compare the configurations of ONE run that differ in this (benchstat's -col): "
                   "the run's first image (or Go version, or platform) is the base "
                   "[default with one PATH: image].")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json", "csv"]),
              default="text", show_default=True, help="Output format.")
@json_option
@click.option("--fail-on-regression", "fail_pct", type=click.FloatRange(min=0), metavar="PCT",
              help="Exit 9 when a metric got significantly worse (slower, bigger; lower for rates "
                   "such as MB/s) by more than PCT percent (a CI gate); warns when it could judge "
                   "nothing.")
def compare_cmd(paths: tuple[Path, ...], col, fmt: str, as_json: bool, fail_pct: float | None) -> None:
    """Compare two bench runs metric by metric, as benchstat does: medians, change in percent,
    and a Mann-Whitney U test (alpha 0.05; ~ where the change is not significant; fewer than 4
    runs a side: no verdict).

    OLD and NEW are results folders (or their results.json). Separate invocations drift with
    the host's state: to compare A with B, bench them interleaved in one run and compare
    within it with --col image.

    \b
    Examples:
      gobuild bench compare results/OLD results/NEW
      gobuild bench --image A --image B --output results/ab && gobuild bench compare results/ab --col image
      gobuild bench --go 1.22 --go 1.27 --output results/go && gobuild bench compare results/go --col go
      gobuild bench compare OLD NEW --format markdown >> "$GITHUB_STEP_SUMMARY"
      gobuild bench compare OLD NEW --fail-on-regression 10      # exit 9 on a >10% regression
    """
    result = compare.compare_paths(list(paths), col)
    fmt = "json" if as_json else fmt
    click.echo(compare.render(result, fmt), nl=fmt != "markdown")
    if fmt == "csv":  # the table stays machine-readable: what a reader must know goes to stderr
        for line in [*(f"only one side: {u}" for u in result.unmatched),
                     *(f"warning: {w}" for w in result.warnings)]:
            click.echo(line, err=True)
    if fail_pct is not None and not result.judged:
        click.echo(f"warning: --fail-on-regression {fail_pct:g} judged nothing: no metric in both "
                   f"runs had >= {compare.MIN_SAMPLES} runs a side; bench more runs (--runs) "
                   "for the gate to mean anything", err=True)
    if fail_pct is not None and (worse := result.regressions(fail_pct)):
        worst = max(worse, key=lambda r: r.delta_pct or 0)
        raise RegressionFound(
            f"{len(worse)} metric(s) significantly worse by more than {fail_pct:g}% (worst: "
            f"{worst.benchmark} {worst.unit} {worst.delta_pct:+.1f}%, p={worst.p:.3f}): "
            "fix the regression or raise --fail-on-regression")


@click.command("report")
@_paths
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="One folder: write report.md and its plots here instead of into it. Several: "
                   "where summary.md goes, while each folder's own report.md and plots are re-rendered "
                   "in place [default: results/summary-<UTC timestamp>].")
@json_option
def report_cmd(paths: tuple[Path, ...], output: Path | None, as_json: bool) -> None:
    """Render report.md and its plots again from results folders (or results.json files).

    With several PATHs, each folder's report.md and plots are re-rendered in place (overwritten)
    and --output is only where summary.md goes.

    With several folders, also writes one summary: rows Go versions, columns platforms, one
    table per headline metric (compile time per GOMAXPROCS, peak memory per phase, goroutine
    P95, tooling P95, module download), and a plot of each across Go versions per platform.
    Emulated cells are marked.

    \b
    Examples:
      gobuild report results/20261130T102416Z
      gobuild report results/go122 results/go127 --output results/summary
      gobuild report results/*/ --output docs/bench
    """
    written = report.render(list(paths), output)
    emit({"written": [str(p) for p in written]}, as_json, "\n".join(f"wrote {p}" for p in written))
