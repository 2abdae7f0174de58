"""`gobuild fit` figures for the run/shell/fit issue, measured in one run on this machine.

    .venv/bin/python benchmarks/fit.py [--go 1.27] [--cpus 2] [--variant slim]

Runs `gobuild fit --workload embedded` (the bench's embedded workload: 20 modules, 100
packages; `go build ./...`, cold build cache, warm module cache) in the native cell and
checks what the issue asks of it:
1. the search finds a limit that works, and the limit below it was tried and OOMed;
2. the search took at most 10 runs;
3. GOFLAGS=-p=1 works at a lower limit than the build as is.
Prints the table, the recommendation and one line per check; exits 1 when a check fails.
Times are wall-clock on a shared machine: compare them within one run only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GOBUILD = str(Path(sys.executable).parent / "gobuild")
MiB = 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--go", default="latest")
    ap.add_argument("--variant", default="slim")
    ap.add_argument("--cpus", default="2")
    ap.add_argument("--max", default="2g")
    args = ap.parse_args()
    native = "arm64" if os.uname().machine == "aarch64" else "amd64"
    argv = [GOBUILD, "fit", "--workload", "embedded", "--go", args.go, "--variant", args.variant,
            "--platform", f"linux/{native}", "--cpus", args.cpus, "--max", args.max, "--json"]
    print("$ " + " ".join(["gobuild", *argv[1:]]), flush=True)
    start = time.monotonic()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)  # progress: stderr
    took = time.monotonic() - start
    if proc.returncode != 0:
        print(f"gobuild fit exited {proc.returncode}", file=sys.stderr)
        return 1
    data = json.loads(proc.stdout)
    print(f"cell {data['cell']}, {data['cpus']:g} CPUs, GOMAXPROCS={data['gomaxprocs']}; "
          f"{data['subject']}; caches: {data['cache_state']}")
    print(f"{'setting':<28} {'smallest that worked':>20} {'time there':>10} {'largest that did not':>21} {'runs':>5}")
    for s in data["settings"]:
        ok = f"{s['smallest_ok'] // MiB} MiB" if s["smallest_ok"] else "none"
        sec = f"{s['seconds']:.1f} s" if s["seconds"] is not None else "-"
        bad = f"{s['largest_failed'] // MiB} MiB" if s["largest_failed"] else "-"
        print(f"{s['setting']:<28} {ok:>20} {sec:>10} {bad:>21} {s['runs']:>5}")
    print(data["recommendation"])
    print(f"probes: {len(data['probes'])} in {took / 60:.1f} min "
          f"({data['search_runs']} for the search)")

    base, by_key = data["settings"][0], {s["key"]: s for s in data["settings"]}
    below = next((p for p in data["probes"] if p["setting"] == "as-is"
                  and p["limit"] == base["largest_failed"]), None)
    p1 = by_key.get("p1") or {}
    checks = {
        "a limit was found and the one below it OOMed": bool(
            base["smallest_ok"] and below and below["outcome"] == "oom"),
        "the search took at most 10 runs": data["search_runs"] <= 10,
        "GOFLAGS=-p=1 lowers the limit": bool(
            p1.get("smallest_ok") and p1["smallest_ok"] < base["smallest_ok"]),
    }
    for what, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    if base["smallest_ok"] and p1.get("smallest_ok"):
        print(f"-p=1: {p1['smallest_ok'] / base['smallest_ok']:.2f}x the memory, "
              f"{p1['seconds'] / base['seconds']:.2f}x the time (one run each)")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
