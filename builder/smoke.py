"""Smoke test of a built image, run the way a CI container job would run it (sh -c, offline)."""
from __future__ import annotations

import sys
from dataclasses import dataclass

import docker

from . import engine
from .build import Built
from .errors import BuildError
from .matrix import GOARM_BY_PLATFORM, platform_arch

# A module with a test, built and tested with no network; in cgo images a cgo program too.
SCRIPT = r"""
set -eu
go version
echo "goarm=$(go env GOARM)"
export GOFLAGS=-mod=mod GOPROXY=off GOCACHE=/tmp/smoke/cache
mkdir -p /tmp/smoke/m && cd /tmp/smoke/m
printf 'module example.com/smoke\n\ngo 1.21\n' > go.mod
cat > main.go <<'EOF'
package main

import (
	"fmt"
	"runtime"
)

func Sum(xs ...int) (s int) {
	for _, x := range xs {
		s += x
	}
	return s
}

func main() { fmt.Printf("smoke ok %s/%s sum=%d\n", runtime.GOOS, runtime.GOARCH, Sum(1, 2, 3)) }
EOF
cat > main_test.go <<'EOF'
package main

import "testing"

func TestSum(t *testing.T) {
	if Sum(1, 2, 3) != 6 {
		t.Fatal("bad sum")
	}
}
EOF
go build -o /tmp/smoke/hello .
/tmp/smoke/hello
go test -count=1 ./...
if [ "${CGO_ENABLED:-0}" = 1 ]; then
  mkdir -p /tmp/smoke/cgo && cd /tmp/smoke/cgo
  printf 'module example.com/cgo\n\ngo 1.21\n' > go.mod
  cat > main.go <<'EOF'
package main

// static int answer(void) { return 42; }
import "C"
import "fmt"

func main() { fmt.Println("cgo ok", int(C.answer())) }
EOF
  go build -o /tmp/smoke/cgohello .
  /tmp/smoke/cgohello
  git --version
fi
echo SMOKE-PASSED
"""


@dataclass(frozen=True, kw_only=True)
class SmokeResult:
    id: str
    ok: bool
    emulated: bool
    output: str


def check_output(image: Built, output: str, cgo: bool) -> list[str]:
    """What is wrong with a smoke run's output ([] when nothing)."""
    problems = []
    goos_goarch = "linux/" + platform_arch(image.platform)  # linux/arm/v7 runs as linux/arm
    want = f"go version go{image.go_version} {goos_goarch}"
    if want not in output:
        problems.append(f"expected {want!r}")
    goarm = GOARM_BY_PLATFORM.get(image.platform)
    if goarm is not None and f"goarm={goarm}\n" not in output:
        problems.append(f"expected go env GOARM {goarm} (the image's go.env)")
    if f"smoke ok {goos_goarch} sum=6" not in output:
        problems.append("the test program did not run")
    if "ok  \texample.com/smoke" not in output:
        problems.append("go test did not pass")
    if cgo and "cgo ok 42" not in output:
        problems.append("the cgo program did not run")
    if cgo and "git version" not in output:
        problems.append("git is missing")
    if "SMOKE-PASSED" not in output:
        problems.append("the script did not finish")
    return problems


# A smoke test takes about 15 s natively and 2 minutes under qemu. qemu-user (7.2 in Debian
# bookworm) now and then deadlocks a Go process that forks; such a run is killed at the
# timeout and tried again rather than waited on for ever.
NATIVE_TIMEOUT, EMULATED_TIMEOUT, EMULATED_TRIES = 600, 600, 3


def smoke(engine_client: docker.DockerClient, image: Built, cgo: bool, run_id: str,
          engine_arch: str | None = None) -> SmokeResult:
    emulated = platform_arch(image.platform) != (engine_arch or engine.arch(engine_client))
    tries = EMULATED_TRIES if emulated else 1
    # Locked down like a measured bench run: what a CI job needs of the image must work so.
    spec = engine.locked_down(engine.Spec(
        image=image.tag, command=("sh", "-c", SCRIPT), role="smoke", platform=image.platform,
        network=False, environment={"HOME": "/tmp"},
        timeout=EMULATED_TIMEOUT if emulated else NATIVE_TIMEOUT))
    for attempt in range(1, tries + 1):
        finished = engine.run(engine_client, spec, run_id)
        if not finished.timed_out:
            break
        print(f"gobuild: smoke test of {image.tag} hung under emulation (try {attempt} of {tries})",
              file=sys.stderr)
    problems = check_output(image, finished.output, cgo)
    if finished.timed_out:
        problems.insert(0, "timed out")
    elif finished.oom:
        problems.insert(0, "OOM-killed")
    elif finished.exit_code != 0:
        problems.insert(0, f"exit code {finished.exit_code}")
    if problems:
        raise BuildError(f"smoke test of {image.tag} failed ({'; '.join(problems)}): {finished.tail()}")
    return SmokeResult(id=image.id, ok=True, emulated=emulated, output=finished.output)
