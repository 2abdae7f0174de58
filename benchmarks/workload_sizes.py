"""How long each embedded workload size takes: generation, preparation, and the tooling suite
at 1 CPU, measured on this machine (the figures in the README's bench section).

    .venv/bin/python benchmarks/workload_sizes.py [--image TAG] [--runs 5] [--size large ...]

For each size: the graph generated in this process (timed), then one
`gobuild bench --suite tooling --workload-size SIZE --cpus 1` (timed as a whole), whose
results.json gives the preparation's wall time (not CPU-limited) and the medians and P95s of
`go list -deps`, `go mod graph` and `go list -m all`. The host's load average at the start is
printed beside the figures: on a busy host every figure is inflated.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builder.bench import workload

GOBUILD = str(Path(sys.executable).parent / "gobuild")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="gobuild/go:1.22.10-slim-amd64")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cpus", default="1")
    ap.add_argument("--size", action="append", dest="sizes", choices=list(workload.SIZES))
    args = ap.parse_args()
    rows = []
    for size in args.sizes or list(workload.SIZES):
        modules, packages = workload.SIZES[size]
        start = time.monotonic()
        files = workload.module_graph(modules, packages)
        workload.tarball(files)
        generated = time.monotonic() - start
        with tempfile.TemporaryDirectory(prefix=f"gobuild-size-{size}-") as tmp:
            out = Path(tmp) / "run"
            load = Path("/proc/loadavg").read_text().split()[0]
            cmd = [GOBUILD, "bench", "--image", args.image, "--suite", "tooling", "--workload-size",
                   size, "--cpus", args.cpus, "--runs", str(args.runs), "--warmup", "1",
                   "--output", str(out)]
            print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
            start = time.monotonic()
            done = subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)
            whole = time.monotonic() - start
            if done.returncode != 0:
                sys.exit(f"gobuild bench failed for size {size} (exit {done.returncode})")
            results = json.loads((out / "results.json").read_text())
        tooling = {r["name"].split("=")[1]: r["summary"]["wall_ns"] for r in results["suites"]["tooling"]}
        rows.append([size, f"{modules} / {packages}", f"{generated:.1f} s",
                     f"{results['targets'][0]['prepare_s']:.0f} s"]
                    + [f"{tooling[c]['median'] / 1e9:.2f} / {tooling[c]['p95'] / 1e9:.2f} s"
                       for c in ("go-list-deps", "go-mod-graph", "go-list-m-all")]
                    + [f"{whole:.0f} s", load])
    header = ["size", "modules / packages", "generation", "preparation",
              "go list -deps (median / P95)", "go mod graph", "go list -m all",
              f"whole bench ({args.runs} runs + 1 warm-up)", "load at start"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"image {args.image}, --cpus {args.cpus}, tooling suite", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
