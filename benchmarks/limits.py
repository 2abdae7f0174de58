"""Bench figures, measured in one run on this machine.

    .venv/bin/python benchmarks/limits.py [--image TAG] [--runs 5] [--cpus 2] [--fidelity]

The command is `go build -a ./...` of the embedded workload. gobuild's measured runs (the
runner probe in a limited container) are interleaved with the same command in a plain
container: the same image, limits and prepared volume (workload, module cache), a fresh GOCACHE
each time, no probe, timed by `busybox time` inside the container. One warm-up of each first.
Container start-up is on neither side: both times are taken inside the container.

1. Harness overhead: gobuild's median wall time / the plain container's. Goal: at most 1.03.
2. Process peak: gobuild's peak-RSS-bytes of each run against an independent measurement of
   the same run: the largest VmHWM of the container's processes, read from the host (through
   the container's cgroup.procs) every 10 ms by this script while the run goes on. Goal:
   within 10%. (busybox's own "Maximum resident set size" is not used: busybox 1.35 reports
   ru_maxrss times the page size in KiB, four times too large on 4 KiB pages.)
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
import threading
import time
from pathlib import Path

from builder import engine
from builder.bench.options import BenchOptions
from builder.bench.run import choose_images
from builder.bench.runner import ENV, MOUNT, RUNNER, Bench, configs, to_sample
from builder.inputs import Inputs

GOBUILD = str(Path(sys.executable).parent / "gobuild")
_ELAPSED = re.compile(r"Elapsed \(wall clock\) time.*?: (?:(\d+)m |(\d+):)?([\d.]+)s?$", re.MULTILINE)


def elapsed(output: str) -> float:
    """The wall seconds of busybox's or GNU time -v output."""
    m = _ELAPSED.search(output)
    if not m:
        sys.exit(f"no time -v figures in: {output[-500:]}")
    return int(m.group(1) or m.group(2) or 0) * 60 + float(m.group(3))


class HostPeak(threading.Thread):
    """The largest VmHWM among one container's processes, read from the host every 10 ms."""

    def __init__(self, engine_client, container_id: str):
        super().__init__(daemon=True)
        self.client, self.id, self.peak, self.stop = engine_client, container_id, -1, threading.Event()

    def _procs_file(self) -> Path | None:
        pid = 0
        while not pid and not self.stop.is_set():
            pid = self.client.api.inspect_container(self.id)["State"].get("Pid") or 0
            time.sleep(0.005)
        if not pid:
            return None
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "memory":  # cgroup v1
                return Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "cgroup.procs"
            if controllers == "":  # cgroup v2
                return Path("/sys/fs/cgroup") / path.lstrip("/") / "cgroup.procs"
        return None

    def run(self) -> None:
        try:
            procs = self._procs_file()
        except OSError:
            return
        while procs and not self.stop.is_set():
            try:
                pids = procs.read_text().split()
            except OSError:
                return  # the container ended
            for pid in pids:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
                if m:
                    self.peak = max(self.peak, int(m.group(1)) * 1024)
            time.sleep(0.01)


def measured(engine_client, spec: engine.Spec, run_id: str) -> tuple[engine.Finished, int]:
    """Run one container to its end while HostPeak watches it."""
    with engine.Container(engine_client, spec, run_id) as ctr:
        watch = HostPeak(engine_client, ctr.id)
        watch.start()
        try:
            done = ctr.run()
        finally:
            watch.stop.set()
            watch.join()
    return done, watch.peak


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
            # locked down like gobuild's measured runs (GOCACHE in tmpfs, read-only volume): the
            # ratio then measures the harness only, not the lockdown
            plain = engine.locked_down(engine.Spec(
                image=target.ref, command=("busybox", "time", "-v", *ours_cfg.argv), role="plain",
                platform=target.platform, environment={**ENV, "GOMAXPROCS": str(procs)},
                limits=engine.Limits(cpus=cpus, memory=opts.memory), volumes={target.volume: MOUNT},
                read_only_mounts=(MOUNT,), working_dir=f"{MOUNT}/work"))
            ours, theirs = [], []
            rng = random.Random(1)
            for i in range(runs + 1):
                order = ["ours", "plain"]
                rng.shuffle(order)
                for who in order:
                    if who == "ours":
                        spec = bench.spec(target, [RUNNER, "-quiet", *ours_cfg.argv], role="run",
                                           env={"GOMAXPROCS": str(procs)})
                        done, host_peak = measured(client, spec, run_id)
                        sample = to_sample(ours_cfg, done, opts.memory)
                        if sample.failed:
                            sys.exit(f"gobuild's run failed: {sample.error}")
                        figures = (sample.values["wall_ns"] / 1e9, sample.values["peak_rss_bytes"],
                                   host_peak)
                    else:
                        done, host_peak = measured(client, plain, run_id)
                        if done.exit_code != 0:
                            sys.exit(f"the plain run failed: {done.tail()}")
                        figures = (elapsed(done.output), None, host_peak)
                    reported = f", reported {figures[1] / 2**20:.1f} MiB" if figures[1] else ""
                    print(f"limits: run {i} {who}: {figures[0]:.2f} s{reported}, host-polled peak "
                          f"{figures[2] / 2**20:.1f} MiB{' (warm-up)' if i == 0 else ''}",
                          file=sys.stderr)
                    if i:
                        (ours if who == "ours" else theirs).append(figures)
    wall_ours = statistics.median(f[0] for f in ours)
    wall_plain = statistics.median(f[0] for f in theirs)
    gaps = [abs(reported - polled) / polled for _, reported, polled in ours]
    print(f"image {images[0]}, go build -a ./... of the workload, {cpus:g} CPUs, GOMAXPROCS={procs}, "
          f"{runs} interleaved runs each")
    print(f"harness overhead: gobuild median {wall_ours:.2f} s / plain container (busybox time) "
          f"{wall_plain:.2f} s = {wall_ours / wall_plain:.3f} (goal <= 1.03)")
    print(f"process peak: gobuild's peak-RSS-bytes against the host-polled VmHWM of the same run: "
          f"median difference {statistics.median(gaps) * 100:.1f}%, largest {max(gaps) * 100:.1f}% "
          f"(goal within 10%); medians {statistics.median(f[1] for f in ours) / 2**20:.1f} MiB "
          f"reported, {statistics.median(f[2] for f in ours) / 2**20:.1f} MiB polled; the plain "
          f"container's polled peak {statistics.median(f[2] for f in theirs) / 2**20:.1f} MiB")


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
    ap.add_argument("--cpus", type=float, default=1.0,
                    help="CPU limit of both containers; leave a core to this script's poller")
    ap.add_argument("--fidelity", action="store_true", help="also measure limit fidelity")
    args = ap.parse_args()
    overhead_and_peak(args.image, args.runs, args.cpus)
    if args.fidelity:
        fidelity(args.image, args.runs)


if __name__ == "__main__":
    main()
