#!/usr/bin/env bash
# Make a Debian/Ubuntu machine ready for gobuild, as root: the Docker engine (started without
# systemd when no daemon answers), buildx, qemu registered for linux/arm64, the local registry
# package, mmdebstrap for `gobuild base`, and the project's virtualenv.
#
# Idempotent: every step checks first, so a second run installs nothing and takes seconds.
# Where a Docker engine already answers, nothing system-wide is touched: the script only
# reports what is missing and builds the virtualenv.
#
#   scripts/setup-host.sh            # everything
#   VENV=/path/to/venv scripts/setup-host.sh
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$here/.venv}
PYTHON=${PYTHON:-python3}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/gobuild-dockerd.log}

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

engine_answers() { docker info >/dev/null 2>&1; }
browser_present() { command -v chromium || command -v chromium-browser || command -v google-chrome; } >/dev/null 2>&1
# The engine users have today is 24-28; Debian offers 26.1 (trixie's docker.io, installable on
# bookworm with a low pin). Setup installs it, and upgrades an older docker.io only when setup
# itself installed it (its marker, or its trixie source plus its dockerd log from earlier runs):
# an engine someone else installed is never touched.
ENGINE_MIN=26
ENGINE_MARK=/var/lib/gobuild/setup-installed-docker.io
docker_io_version() { dpkg-query -W -f='${Version}' docker.io 2>/dev/null || true; }
engine_ours() {
  [ -e "$ENGINE_MARK" ] && return 0
  [ -e /etc/apt/sources.list.d/gobuild-trixie.sources ] && [ -e "$DOCKERD_LOG" ] && [ -n "$(docker_io_version)" ]
}
engine_outdated() {
  local v; v=$(docker_io_version)
  [ -n "$v" ] && engine_ours && dpkg --compare-versions "$v" lt "$ENGINE_MIN"
}
# A dockerd that setup started has its pid in /var/run/docker.pid and logs to $DOCKERD_LOG.
stop_our_dockerd() {
  local pid; pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  [ -n "$pid" ] && [ -e "$DOCKERD_LOG" ] || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 0  # a stale pid file
  say "stopping the dockerd that setup started (pid $pid) to upgrade it"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  die "dockerd (pid $pid) did not stop within 30 s: stop it, then run setup again"
}
buildx_works() { docker buildx version >/dev/null 2>&1; }
# A native arm64 host (an arm64 CI runner whose engine already runs) needs no arm64 emulator.
arm64_registered() { [ "$(uname -m)" = aarch64 ] || [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The slim variant strips the Go tools of every platform with that architecture's own GNU strip.
strip_tools() { echo x86_64-linux-gnu-strip aarch64-linux-gnu-strip arm-linux-gnueabihf-strip; }
strip_package() { echo "binutils-$(echo "${1%-strip}" | tr _ -)"; }
install_strip_tools() {
  local tool
  for tool in $(strip_tools); do
    command -v "$tool" >/dev/null 2>&1 || apt_install "$(strip_package "$tool")"
  done
}

need_system_tools() {
  command -v docker >/dev/null 2>&1 || return 0
  engine_outdated && return 0
  browser_present || return 0
  for f in docker-registry mmdebstrap arch-test qemu-aarch64-static $(strip_tools); do
    command -v "$f" >/dev/null 2>&1 || return 0
  done
  buildx_works || return 0
  arm64_registered || return 0
  return 1
}

# Bookworm lacks docker-buildx and has engine 20.10: a trixie source pinned at priority 100 lets
# setup take docker.io, docker-cli and docker-buildx from trixie and nothing else.
add_trixie_source() {
  # shellcheck source=/dev/null
  . /etc/os-release
  [ "${VERSION_CODENAME:-}" = bookworm ] || return 0
  [ -e /etc/apt/sources.list.d/gobuild-trixie.sources ] && return 0
  say "adding a trixie source pinned at priority 100 (for docker.io and docker-buildx only)"
  cat >/etc/apt/sources.list.d/gobuild-trixie.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  cat >/etc/apt/preferences.d/gobuild-trixie <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
  apt_updated=0
}

system_setup() {
  [ "$(id -u)" = 0 ] || die "not root: run as root (sudo $0), or start a Docker engine with buildx and qemu yourself and run again"
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: this script sets up Debian/Ubuntu only; install docker, docker-buildx, qemu-user-static and docker-registry by hand, then run again"

  add_trixie_source
  # The engine: docker.io 26.1 (trixie's, low-pinned, on bookworm; the release's own elsewhere).
  if ! command -v dockerd >/dev/null 2>&1 || engine_outdated; then
    if engine_outdated; then
      say "upgrading docker.io $(docker_io_version), which setup installed earlier, to engine $ENGINE_MIN+"
      stop_our_dockerd
    fi
    if [ -e /etc/apt/sources.list.d/gobuild-trixie.sources ]; then
      apt_install docker.io/trixie docker-cli/trixie
    else
      apt_install docker.io
    fi
    mkdir -p "$(dirname "$ENGINE_MARK")" && touch "$ENGINE_MARK"
  fi
  if ! command -v docker >/dev/null 2>&1; then
    apt_install docker-cli || true
  fi

  # buildx: bookworm has none; trixie's package only needs libc6 >= 2.34.
  if ! buildx_works; then
    if [ -e /etc/apt/sources.list.d/gobuild-trixie.sources ]; then
      apt_install docker-buildx/trixie
    else
      apt_install docker-buildx
    fi
  fi

  # qemu for linux/arm64 and 32-bit linux/arm (v7, v6) containers and buildx RUN steps; each
  # registered on its own (a host that has qemu-aarch64 may still lack qemu-arm).
  command -v qemu-aarch64-static >/dev/null 2>&1 || apt_install qemu-user-static binfmt-support
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  for conf in qemu-aarch64 qemu-arm; do
    if [ "$conf" = qemu-aarch64 ] && arm64_registered; then continue; fi
    if [ ! -e "/proc/sys/fs/binfmt_misc/$conf" ] && [ -f "/usr/lib/binfmt.d/$conf.conf" ]; then
      say "registering $conf with binfmt_misc"
      cat "/usr/lib/binfmt.d/$conf.conf" >/proc/sys/fs/binfmt_misc/register
    fi
  done

  # Headless Chromium: the report tests look at rendered reports the way a person would.
  # (Ubuntu's chromium package is a snap shim: there, and wherever one is installed, use that.)
  if ! browser_present; then
    # shellcheck source=/dev/null
    . /etc/os-release
    if [ "${ID:-}" = debian ]; then apt_install chromium; else say "missing: a headless Chromium or Chrome for the report tests (fix: install chromium or google-chrome)"; fi
  fi

  # The local registry (tests run it with their own config) and the base-image builder.
  command -v docker-registry >/dev/null 2>&1 || apt_install docker-registry
  command -v mmdebstrap >/dev/null 2>&1 || apt_install mmdebstrap arch-test
  command -v arch-test >/dev/null 2>&1 || apt_install arch-test
  install_strip_tools

  # Start the engine without systemd when no daemon answers.
  if ! engine_answers; then
    say "starting dockerd (log: $DOCKERD_LOG)"
    setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
      engine_answers && break
      sleep 0.5
    done
    engine_answers || die "dockerd did not answer within 30 s: read $DOCKERD_LOG"
  fi
  buildx_works || die "docker buildx still does not run after installing docker-buildx"
  arm64_registered || die "qemu-aarch64 is not registered with binfmt_misc: mount binfmt_misc and write /usr/lib/binfmt.d/qemu-aarch64.conf into its register file"
}

if engine_answers && ! need_system_tools; then
  say "engine, buildx and qemu already present"
elif engine_answers && ! engine_outdated && [ "${GOBUILD_SETUP_SYSTEM:-}" != 1 ]; then
  say "a Docker engine already answers: leaving the system alone"
  buildx_works || say "missing: docker buildx (fix: install docker-buildx, or GOBUILD_SETUP_SYSTEM=1 $0)"
  arm64_registered || say "missing: qemu for linux/arm64 (fix: apt-get install qemu-user-static binfmt-support, or GOBUILD_SETUP_SYSTEM=1 $0)"
  command -v docker-registry >/dev/null 2>&1 || say "missing: docker-registry, needed by the integration tests (fix: apt-get install docker-registry)"
  command -v mmdebstrap >/dev/null 2>&1 || say "missing: mmdebstrap, needed by 'gobuild base' and the slim userland (fix: apt-get install mmdebstrap)"
  for tool in $(strip_tools); do
    command -v "$tool" >/dev/null 2>&1 || say "missing: $tool, needed by slim's 'symbols' prune group (fix: apt-get install $(strip_package "$tool"))"
  done
  browser_present || say "missing: chromium, needed by the report tests (fix: apt-get install chromium)"
else
  system_setup
fi

# The virtualenv, rebuilt only when pyproject.toml changed.
stamp="$VENV/.gobuild-setup"
want=$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/gobuild" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$PYTHON" -m venv --help >/dev/null 2>&1 || apt_install python3-venv
  say "creating the virtualenv in $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q -e "${here}[test]"
  echo "$want" >"$stamp"
fi
say "ready: $("$VENV/bin/gobuild" --version)"
