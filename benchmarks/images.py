"""Image build figures for the images issue, measured in one run on this machine.

    .venv/bin/python benchmarks/images.py [--go 1.22 --go 1.27] [--sizes-only]

1. Cold build of the linux/arm64 images / cold build of the linux/amd64 images (same Go
   versions and variants; toolchains already in the cache, image and BuildKit caches pruned
   before each platform). Goal: at most 1.3.
2. The full default matrix rebuilt with nothing changed. Goal: under 5 s.
3. Size of the slim image of every Go release of the default matrix on linux/amd64 and
   linux/arm64, uncompressed (docker image inspect's Size, 1 MB = 10^6 bytes). Goal: at most
   90 MB each. --sizes-only prints just these (building what is missing).
4. Bytes downloaded by a forced rebuild with a warm toolchain cache. Goal: 0.
Prints one line per figure; timings are wall-clock and drift on a shared machine: compare
ratios taken in the same run.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

GOBUILD = str(Path(sys.executable).parent / "gobuild")


def gobuild(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.monotonic()
    proc = subprocess.run([GOBUILD, *args], capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"gobuild {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return took, proc


def prune(tags: list[str]) -> None:
    for tag in tags:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
    subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True, check=True)


PLATFORMS = ("--platform", "linux/amd64", "--platform", "linux/arm64")
GOAL_MB = 90


def slim_sizes() -> None:
    """Figure 3: one line per slim image, then how many meet the goal (builds what is missing;
    slim needs no emulator, so both platforms build natively)."""
    _, proc = gobuild("images", "--variant", "slim", "--json", *PLATFORMS)
    images = sorted(json.loads(proc.stdout), key=lambda i: (
        tuple(int(x) for x in i["go_version"].split(".")), i["platform"]))
    for i in images:
        mb = i["size"] / 1e6
        print(f"slim size go{i['go_version']} {i['platform']}: {mb:.1f} MB ({i['size'] / 2**20:.1f} MiB)"
              f" {'ok' if mb <= GOAL_MB else 'OVER'} (goal <= {GOAL_MB} MB)")
    within = sum(i["size"] / 1e6 <= GOAL_MB for i in images)
    print(f"slim images within {GOAL_MB} MB: {within} of {len(images)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--go", action="append", default=None, help="Go versions for the cold-build ratio")
    ap.add_argument("--sizes-only", action="store_true", help="print only the slim sizes (figure 3)")
    args = ap.parse_args()
    versions = args.go or ["1.22", "1.27"]
    sel = [a for v in versions for a in ("--go", v)]

    if args.sizes_only:
        slim_sizes()
        return

    # Make sure every toolchain is cached and every image exists (not timed).
    _, full = gobuild("images", "--json", *PLATFORMS)
    images = json.loads(full.stdout)

    # 1. cold builds, per platform, both variants.
    times = {}
    for platform in ("linux/amd64", "linux/arm64"):
        tags = [i["tag"] for i in images if i["platform"] == platform
                and any(i["id"].startswith(f"go{v}-") for v in versions)]
        prune(tags)
        times[platform], _ = gobuild("images", *sel, "--platform", platform)
    ratio = times["linux/arm64"] / times["linux/amd64"]
    print(f"cold build {', '.join(versions)} x bookworm+slim: amd64 {times['linux/amd64']:.1f} s, "
          f"arm64 {times['linux/arm64']:.1f} s, arm64/amd64 = {ratio:.2f} (goal <= 1.3)")

    # 2. nothing changed: the whole default matrix.
    took, proc = gobuild("images", "--json", *PLATFORMS)
    statuses = {i["status"] for i in json.loads(proc.stdout)}
    print(f"full matrix ({len(json.loads(proc.stdout))} images) with nothing changed: {took:.2f} s, "
          f"statuses {sorted(statuses)} (goal < 5 s)")

    # 3. slim sizes, every release, both 64-bit platforms.
    slim_sizes()

    # 4. warm cache, forced rebuild: bytes downloaded.
    _, proc = gobuild("images", "--go", versions[0], "--variant", "slim", "--platform", "linux/arm64", "--force")
    n = int(re.search(r"downloaded (\d+) bytes", proc.stderr).group(1))
    print(f"bytes downloaded by a forced rebuild with a warm cache: {n} (goal 0)")


if __name__ == "__main__":
    main()
