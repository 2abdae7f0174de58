"""A/A test of `gobuild bench compare --col image`, measured in one run on this machine.

    .venv/bin/python benchmarks/aa.py [--image TAG] [--runs 10] [--suite tooling --suite sched ...]

The same image is benched as two configurations, interleaved and shuffled in one run
(`gobuild bench --image X --image X`: the configurations are labelled X#1 and X#2), then
`gobuild bench compare RUN --col image` compares the two. Nothing differs but chance and the
host's noise, so at alpha 0.05 about 1 metric in 20 is expected to come out "significant".

Goal: at most 1 in 20 metrics reported significant (the share is printed with the count).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from builder import engine

GOBUILD = str(Path(sys.executable).parent / "gobuild")
GOAL = 1 / 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="gobuild/go:1.27.3-slim-amd64")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--cpus", default="1")
    ap.add_argument("--gomaxprocs", default="1,2")
    ap.add_argument("--suite", action="append", dest="suites",
                    help="suites to run [default: tooling, sched, memstats: quick ones]")
    ap.add_argument("--output", type=Path, help="results folder [default: a temporary one]")
    args = ap.parse_args()
    suites = args.suites or ["tooling", "sched", "memstats"]
    client = engine.client()
    if engine.image_labels(client, args.image) is None:
        sys.exit(f"no image {args.image}: build it first (gobuild images) or pass --image TAG")
    out = args.output or Path(tempfile.mkdtemp(prefix="gobuild-aa-")) / "run"
    bench = [GOBUILD, "bench", "--image", args.image, "--image", args.image, "--runs", str(args.runs),
             "--warmup", str(args.warmup), "--cpus", args.cpus, "--gomaxprocs", args.gomaxprocs,
             "--output", str(out),
             *[a for s in suites for a in ("--suite", s)]]
    print("$ " + " ".join(bench), file=sys.stderr, flush=True)
    done = subprocess.run(bench, stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        sys.exit(f"gobuild bench failed (exit {done.returncode})")
    cmp = subprocess.run([GOBUILD, "bench", "compare", str(out), "--col", "image", "--format", "json"],
                         check=True, capture_output=True, text=True)
    rows = json.loads(cmp.stdout)["rows"]
    judged = [r for r in rows if r["verdict"] != "no verdict"]
    significant = [r for r in judged if r["significant"]]
    share = len(significant) / len(judged) if judged else 1.0
    for r in significant:
        print(f"significant: {r['benchmark']} {r['unit']} {r['delta_pct']:+.1f}% (p={r['p']:.3f})")
    verdict = "met" if share <= GOAL else "missed"
    print(f"A/A: {len(significant)} of {len(judged)} metrics significant ({share:.1%}) at alpha 0.05, "
          f"{args.runs} interleaved runs, suites {', '.join(suites)}; goal <= {GOAL:.0%}: {verdict}")
    print(f"results: {out}")
    return 0 if share <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
