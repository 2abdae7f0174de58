"""Smoke test of a built image, run the way a CI container job would run it (sh -c, offline)."""
from __future__ import annotations

import re
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
go vet ./... && echo "vet ok"
# What every image keeps, whatever it prunes (README: slim and its prune groups): a rebuild of
# the unchanged module compiles nothing (the tools' build IDs still key the cache), build info.
go build -x -o /tmp/smoke/hello2 . 2>/tmp/smoke/rebuild.log
if grep -q '/compile ' /tmp/smoke/rebuild.log; then echo "rebuild compiled"; else echo "rebuild cached"; fi
go version -m /tmp/smoke/hello | grep -q 'path.*example.com/smoke' && echo "buildinfo ok"
go version -m "$(go env GOTOOLDIR)/compile" | grep -q 'path.*cmd/compile' && echo "tool buildinfo ok"
echo "certs $(grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt)"
echo "owners $(stat -c %u /go /go/src /go/bin /home/gopher 2>/dev/null | tr '\n' ' ')"
# Each pruned group: what the README says stops working does stop (GOBUILD_PRUNE: the image's
# io.gobuild.prune label); the module above still built, tested and vetted.
GOROOT=$(go env GOROOT) TOOLS=$(go env GOTOOLDIR)
for g in $(echo "${GOBUILD_PRUNE:-}" | tr , ' '); do
  case $g in
    docs) test ! -e "$GOROOT/doc" && test ! -e "$GOROOT/api" ;;
    tests) go test fmt 2>&1 | grep -q 'no test files' ;;
    generators) test -z "$(find "$GOROOT/src" -type d -name '_*')" ;;
    cmd-source) go list cmd/go 2>&1 | grep -q 'not in std' ;;
    tools) go fmt ./... 2>&1 | grep -q gofmt && go tool nm -h 2>&1 | grep -q 'no such tool' ;;
    cgo) go tool cgo -V 2>&1 | grep -q 'no such tool' ;;
    fips-snapshots) test ! -e "$GOROOT/lib/fips140" ;;
    cover) go tool cover -h 2>&1 | grep -q 'no such tool' ;;  # what go test -cover runs
    pgo) test ! -e "$TOOLS/preprofile" ;;
    other-platforms) GOOS=windows go build -o /dev/null . 2>&1 | grep -q 'exclude all Go files' ;;
    symbols) true ;;  # proved by "rebuild cached" and "tool buildinfo ok"
    *) false ;;
  esac && echo "pruned $g: as documented"
done
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

    @property
    def summary(self) -> str:
        """What the image said of itself: its go version line, and GOARM where it sets one."""
        lines = self.output.splitlines()
        said = next((line for line in lines if line.startswith("go version ")), "")
        goarm = next((line[len("goarm="):] for line in lines if line.startswith("goarm=")), "")
        return said + (f", GOARM={goarm}" if goarm else "")


def check_output(image: Built, output: str, cgo: bool, pruned: tuple[str, ...] = ()) -> list[str]:
    """What is wrong with a smoke run's output ([] when nothing)."""
    problems = []
    if pruned:  # what the README promises of a pruned toolchain, and slim's file-made userland
        problems += [f"{what} failed" for line, what in (
            ("vet ok", "go vet"), ("rebuild cached", "a rebuild from the build cache"),
            ("buildinfo ok", "go version -m of the program"),
            ("tool buildinfo ok", "go version -m of the compiler"))
            if line not in output]
        certs = re.search(r"^certs (\d+)$", output, re.MULTILINE)
        if not certs or int(certs.group(1)) < 100:
            problems.append("the CA bundle is missing or has under 100 certificates")
        if "owners 1000 1000 1000 1000" not in output:
            problems.append("/go, /go/src, /go/bin and /home/gopher must belong to uid 1000")
    problems += [f"prune group {g}: what it removes still works (or the check failed)"
                 for g in pruned if f"pruned {g}: as documented" not in output]
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


def smoke_spec(image: Built, *, pruned: tuple[str, ...], emulated: bool,
               image_user: str | None) -> engine.Spec:
    """The smoke container of image (pure): locked down like a measured bench run (what a CI
    job needs of the image must work so), as the image's own user when it is not root (slim's
    1000), else nobody; HOME on the tmpfs, as the root filesystem is read-only."""
    return engine.locked_down(engine.Spec(
        image=image.tag, command=("sh", "-c", SCRIPT), role="smoke", platform=image.platform,
        network=False, environment={"HOME": "/tmp", "GOBUILD_PRUNE": ",".join(pruned)},
        user=image_user, timeout=EMULATED_TIMEOUT if emulated else NATIVE_TIMEOUT))


def smoke(engine_client: docker.DockerClient, image: Built, cgo: bool, run_id: str,
          engine_arch: str | None = None) -> SmokeResult:
    emulated = platform_arch(image.platform) != (engine_arch or engine.arch(engine_client))
    tries = EMULATED_TRIES if emulated else 1
    pruned = tuple(g for g in (engine.image_labels(engine_client, image.tag) or {}).get(
        "io.gobuild.prune", "").split(",") if g)
    image_user = (engine_client.images.get(image.tag).attrs.get("Config") or {}).get("User") or None
    spec = smoke_spec(image, pruned=pruned, emulated=emulated, image_user=image_user)
    for attempt in range(1, tries + 1):
        finished = engine.run(engine_client, spec, run_id)
        if not finished.timed_out:
            break
        print(f"gobuild: smoke test of {image.tag} hung under emulation (try {attempt} of {tries})",
              file=sys.stderr)
    problems = check_output(image, finished.output, cgo, pruned)
    if finished.timed_out:
        problems.insert(0, "timed out")
    elif finished.oom:
        problems.insert(0, "OOM-killed")
    elif finished.exit_code != 0:
        problems.insert(0, f"exit code {finished.exit_code}")
    if problems:
        raise BuildError(f"smoke test of {image.tag} failed ({'; '.join(problems)}): {finished.tail()}")
    return SmokeResult(id=image.id, ok=True, emulated=emulated, output=finished.output)
