"""Bench figures, measured in one run on this machine.

    .venv/bin/python benchmarks/limits.py [--image TAG] [--runs 5] [--cpus 2] [--fidelity]

Both figures below compare gobuild's measurement of `go build -a ./...` of the embedded
workload with the same command in a plain container: the same image, the same limits, the
same prepared volume (workload and module cache), a fresh GOCACHE each time, but no probe,
timed by `busybox time -v` inside the container. Runs of the two are interleaved, after one
warm-up of each, so that container start-up is on neither side and drift hits both alike.

1. Harness overhead: gobuild's median wall time / the plain container's. Goal: at most 1.03.
2. Process peak: gobuild's peak-RSS-bytes (the largest resident peak of the go command and its
   children) against `time -v`'s "Maximum resident set size" of the same command. Goal:
   within 10%.
3. With --fidelity: limit fidelity, the compile suite's median at --cpus 0.5 over the same at
   --cpus 1 (through `gobuild bench`). Goal: 1.7 to 2.3.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from builder import engine
from builder.bench.options import BenchOptions
from builder.bench.run import choose_images
from builder.bench.runner import ENV, MOUNT, Bench, configs
from builder.inputs import Inputs

GOBUILD = str(Path(sys.executable).parent / "gobuild")
_ELAPSED = re.compile(r"Elapsed \(wall clock\) time.*?: (?:(\d+)m |(\d+):)?([\d.]+)s?$", re.MULTILINE)
_MAXRSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def time_v(output: str) -> tuple[float, int]:
    """busybox's or GNU time -v output -> (wall seconds, max RSS bytes)."""
    m, r = _ELAPSED.search(output), _MAXRSS.search(output)
    if not m or not r:
        sys.exit(f"no time -v figures in: {output[-500:]}")
    minutes = int(m.group(1) or m.group(2) or 0)
    return minutes * 60 + float(m.group(3)), int(r.group(1)) * 1024


def overhead_and_peak(ref: str | None, runs: int, cpus: float) -> None:
    client = engine.client()
    images = choose_images(client, Inputs.resolve(), (ref,) if ref else ())
    procs = max(1, round(cpus))
    with tempfile.TemporaryDirectory() as tmp:
        opts = BenchOptions(images=images, cpus=cpus, memory=2 * 2**30, cpuset=None,
                            suites=("compile",), runs=runs, warmup=1, gomaxprocs=(procs,),
                            workload=None, workload_modules=20, workload_packages=100,
                            compile_target="workload", bench_package="./benchpkg",
                            output=Path(tmp), seed=1)
        run_id = engine.new_run_id()
        with engine.cleanup_on_exit(client, run_id):
            bench = Bench(client, opts, run_id, engine.arch(client),
                          lambda m: print(f"limits: {m}", file=sys.stderr))
            target = bench.prepare(images[0], 0)
            ours_cfg = configs(opts, [target])[0]
            plain = engine.Spec(
                image=target.ref, command=("busybox", "time", "-v", *ours_cfg.argv), role="plain",
                platform=target.platform, environment={**ENV, "GOMAXPROCS": str(procs)},
                limits=engine.Limits(cpus=cpus, memory=opts.memory), volumes={target.volume: MOUNT},
                working_dir=f"{MOUNT}/work")
            ours, theirs = [], []
            rng = random.Random(1)
            for i in range(runs + 1):
                order = ["ours", "plain"]
                rng.shuffle(order)
                for who in order:
                    if who == "ours":
                        sample, _ = bench.sample(ours_cfg)
                        if sample.failed:
                            sys.exit(f"gobuild's run failed: {sample.error}")
                        figures = (sample.values["wall_ns"] / 1e9, sample.values["peak_rss_bytes"])
                    else:
                        done = engine.run(client, plain, run_id)
                        if done.exit_code != 0:
                            sys.exit(f"the plain run failed: {done.tail()}")
                        figures = time_v(done.output)
                    print(f"limits: run {i} {who}: {figures[0]:.2f} s, {figures[1] / 2**20:.1f} MiB"
                          f"{' (warm-up)' if i == 0 else ''}", file=sys.stderr)
                    if i:
                        (ours if who == "ours" else theirs).append(figures)
    wall_ours = statistics.median(w for w, _ in ours)
    wall_plain = statistics.median(w for w, _ in theirs)
    peak_ours = statistics.median(p for _, p in ours)
    peak_plain = statistics.median(p for _, p in theirs)
    print(f"image {images[0]}, go build -a ./... of the workload, {cpus:g} CPUs, GOMAXPROCS={procs}, "
          f"{runs} interleaved runs each")
    print(f"harness overhead: gobuild median {wall_ours:.2f} s / plain container (busybox time) "
          f"{wall_plain:.2f} s = {wall_ours / wall_plain:.3f} (goal <= 1.03)")
    print(f"process peak: gobuild peak-RSS-bytes median {peak_ours / 2**20:.1f} MiB, time -v max RSS "
          f"{peak_plain / 2**20:.1f} MiB, difference {abs(peak_ours - peak_plain) / peak_plain * 100:.1f}% "
          "(goal within 10%)")


def fidelity(ref: str | None, runs: int) -> None:
    image = ["--image", ref] if ref else []

    def median(out: Path, cpus: str) -> float:
        proc = subprocess.run([GOBUILD, "bench", *image, "--memory", "2g", "--runs", str(runs),
                               "--warmup", "1", "--suite", "compile", "--gomaxprocs", "1",
                               "--cpus", cpus, "--output", str(out)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"gobuild bench --cpus {cpus} failed:\n{proc.stderr[-2000:]}")
        res = json.loads((out / "results.json").read_text())
        return res["suites"]["compile"][0]["summary"]["wall_ns"]["median"] / 1e9

    with tempfile.TemporaryDirectory() as tmp:
        half, one = median(Path(tmp) / "half", "0.5"), median(Path(tmp) / "one", "1")
    print(f"limit fidelity: compile median {half:.1f} s at 0.5 CPU / {one:.1f} s at 1 CPU "
          f"= {half / one:.2f} (goal 1.7-2.3)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", help="image to bench [default: gobuild bench's default]")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cpus", type=float, default=2.0)
    ap.add_argument("--fidelity", action="store_true", help="also measure limit fidelity")
    args = ap.parse_args()
    overhead_and_peak(args.image, args.runs, args.cpus)
    if args.fidelity:
        fidelity(args.image, args.runs)


if __name__ == "__main__":
    main()
