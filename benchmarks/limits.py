"""Bench figures for the bench issue, measured in one run on this machine.

    .venv/bin/python benchmarks/limits.py [--image TAG] [--runs 3]

1. Limit fidelity: compile-suite median at --cpus 0.5 / the same at --cpus 1. Goal: 1.7 to 2.3.
2. Harness overhead: `go build -a std` median measured by gobuild bench / the same command
   timed around a plain `docker run` with the same limits. Goal: at most 1.05.
3. Memory: the go test process's own peak (VmHWM) against the cgroup's own peak counter, in
   the memory suite's go-test-binary phase. Goal: within 10%.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOBUILD = str(Path(sys.executable).parent / "gobuild")


def bench(out: Path, *args: str) -> dict:
    proc = subprocess.run([GOBUILD, "bench", *args, "--output", str(out)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"gobuild bench {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads((out / "results.json").read_text())


def compile_median(results: dict) -> float:
    return results["suites"]["compile"][0]["summary"]["wall_ns"]["median"] / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", help="image to bench [default: gobuild bench's default]")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    image = ["--image", args.image] if args.image else []
    common = [*image, "--memory", "2g", "--runs", str(args.runs), "--warmup", "1", "--suite", "compile"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        # 1. fidelity: the same work at two quotas.
        half = compile_median(bench(t / "half", *common, "--cpus", "0.5", "--gomaxprocs", "1"))
        one = compile_median(bench(t / "one", *common, "--cpus", "1", "--gomaxprocs", "1"))
        print(f"limit fidelity: compile median {half:.1f} s at 0.5 CPU / {one:.1f} s at 1 CPU "
              f"= {half / one:.2f} (goal 1.7-2.3)")

        # 2. overhead: go build -a std at 2 CPUs, gobuild bench against plain docker run.
        res = bench(t / "std", *common, "--cpus", "2", "--gomaxprocs", "2", "--compile-target", "std")
        ref = res["targets"][0]["image"]
        ours = compile_median(res)
        plain = []
        for i in range(args.runs + 1):
            start = time.monotonic()
            subprocess.run(["docker", "run", "--rm", "--pull=never", "--network=none", "--cpus", "2",
                            "--memory", "2g", "--memory-swap", "2g", "-e", "GOMAXPROCS=2",
                            "-e", "GOCACHE=/tmp/gocache", ref, "go", "build", "-a", "std"],
                           check=True, capture_output=True)
            if i:  # the first run is a warm-up, as in gobuild bench
                plain.append(time.monotonic() - start)
        base = statistics.median(plain)
        print(f"harness overhead: go build -a std median {ours:.2f} s in gobuild bench / "
              f"{base:.2f} s around docker run = {ours / base:.3f} (goal <= 1.05)")

        # 3. memory of a go test process: its own VmHWM against the cgroup's peak.
        res = bench(t / "mem", *image, "--cpus", "1", "--memory", "2g", "--runs", str(args.runs),
                    "--warmup", "0", "--suite", "memory")
        phase = next(r for r in res["suites"]["memory"] if r["name"].endswith("go-test-binary"))
        hwm = statistics.median(s["vmhwm_bytes"] for s in phase["samples"])
        peak = statistics.median(s["cgroup_peak_bytes"] for s in phase["samples"])
        print(f"go test process: VmHWM {hwm / 2**20:.1f} MiB, cgroup peak {peak / 2**20:.1f} MiB, "
              f"difference {abs(hwm - peak) / peak * 100:.1f}% (goal within 10%)")


if __name__ == "__main__":
    main()
