"""Toolchains no source publishes (32-bit ARM from the PyPI wheels), built on the host from the
same release's source by cross-compiling with the host's verified toolchain of that release.

Nothing runs under emulation: `make.bash` runs on the host with GOOS=linux GOARCH=arm and
writes, with `-distpack`, the release archive in go.dev's layout (go/bin/go is then the arm
binary, go/pkg/tool/linux_arm the arm tools). Go builds are reproducible, so the same inputs
give the same archive on every machine: the lock records its sha256 and a rebuild is checked
against it like a download.

The build runs in a copy of the source tree (the cache's trees are shared and read-only); the
archive goes into the cache's blobs under its sha256, and ``built/<inputs key>`` remembers
which blob those inputs made, so CI and later runs reuse it instead of building again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from . import toolchains
from .errors import BuildError, ChecksumError, ConfigError
from .fsutil import atomic_write_text, file_lock
from .lock import Artifact, BuiltFrom, Release

RECIPE = "make.bash -distpack"
# One arm toolchain per release, built for ARMv6 so that it runs on v6 and v7 boards alike (as
# go.dev's linux-armv6l archive); the GOARM an image builds for is set in its own go.env.
TOOLCHAIN_GOARM = 6
BUILD_TIMEOUT = 3600  # seconds; about 4 min on 2 idle cores


def inputs_for(release: Release, host_arch: str, goarch: str = "arm") -> BuiltFrom:
    """The inputs of the arm toolchain of a release: its source tree (the amd64 archive, whose
    src/ is the release's; any arch's would do) and the host's toolchain of that release."""
    source = release.files.get("amd64") or release.files.get(host_arch)
    host = release.files.get(host_arch)
    if source is None or host is None or host.built:
        raise ConfigError(
            f"go {release.version} has no downloadable {host_arch} toolchain in the lock to build "
            f"linux/{goarch} with: run 'gobuild lock --go {release.version}' on a host whose "
            "architecture the source publishes (amd64 or arm64)")
    return BuiltFrom(source_url=source.url, source_sha256=source.sha256, host_arch=host_arch,
                     host_sha256=host.sha256, goarch=goarch, goarm=TOOLCHAIN_GOARM, recipe=RECIPE)


def inputs_key(version: str, inputs: BuiltFrom) -> str:
    """The cache key of a build: sha256 over the release and every input."""
    return hashlib.sha256(json.dumps({"version": version, **asdict(inputs)},
                                     sort_keys=True).encode()).hexdigest()


def _record(cache: toolchains.Cache, key: str) -> Path:
    return cache.root / "built" / f"{key}.json"


def make_argv() -> list[str]:
    return ["./make.bash", "-distpack"]


def make_env(inputs: BuiltFrom, bootstrap: Path, home: Path) -> dict[str, str]:
    """A clean environment: nothing of the caller's Go settings leaks into the build."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home), "GOCACHE": str(home / "gocache"), "GOTOOLCHAIN": "local",
        "GOROOT_BOOTSTRAP": str(bootstrap), "CGO_ENABLED": "0",
        "GOOS": "linux", "GOARCH": inputs.goarch, "GOARM": str(inputs.goarm),
    }


def built_archive_name(version: str, goarch: str) -> str:
    return f"go{version}.linux-{goarch}.tar.gz"


def _copy_tree(src: Path, dst: Path) -> None:
    """A writable copy of the cache's tree (hard links would let the build write into it)."""
    shutil.copytree(src, dst, symlinks=True)


def build(cache: toolchains.Cache, release: Release, inputs: BuiltFrom,
          log=lambda message: print(f"gobuild: {message}", file=sys.stderr, flush=True)
          ) -> Artifact:
    """The built toolchain of these inputs: from the cache when it was built before, else
    built now (minutes). Returns it as a lock artifact; its archive is in the cache's blobs."""
    key = inputs_key(release.version, inputs)
    found = _cached(cache, key, release.version, inputs)
    if found is not None:
        return found
    with file_lock(cache.lock(key)):
        found = _cached(cache, key, release.version, inputs)
        if found is not None:
            return found
        source = _artifact_of(release, inputs.source_sha256)
        host = _artifact_of(release, inputs.host_sha256)
        source_tree = toolchains.unpack(cache, source, release.version)
        host_tree = toolchains.unpack(cache, host, release.version)
        work_root = cache.root / "work"
        work_root.mkdir(parents=True, exist_ok=True)
        if not (source_tree / "src" / "make.bash").is_file():
            raise BuildError(f"the go {release.version} archive {source.filename} has no "
                             f"src/make.bash to build linux/{inputs.goarch} from: lock a "
                             "source whose archives hold the Go source (go.dev, PyPI)")
        with tempfile.TemporaryDirectory(prefix=f"build-go{release.version}-", dir=work_root) as tmp:
            work = Path(tmp)
            _copy_tree(source_tree, work / "go")
            (work / "home").mkdir()
            log(f"building go {release.version} for linux/{inputs.goarch} (GOARM={inputs.goarm}) "
                f"from its source with the host's {inputs.host_arch} toolchain: a few minutes, "
                "once (cached)")
            try:
                proc = subprocess.run(make_argv(), cwd=work / "go" / "src",
                                      env=make_env(inputs, host_tree, work / "home"),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, timeout=BUILD_TIMEOUT, check=False)
            except subprocess.TimeoutExpired:
                raise BuildError(f"building go {release.version} for linux/{inputs.goarch} took "
                                 f"over {BUILD_TIMEOUT} s: is the host overloaded? run again") from None
            if proc.returncode != 0:
                tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
                raise BuildError(f"building go {release.version} for linux/{inputs.goarch} failed "
                                 f"(make.bash exit {proc.returncode}: {tail}): see the Go "
                                 "source's make.bash; run again after fixing the host")
            name = built_archive_name(release.version, inputs.goarch)
            made = work / "go" / "pkg" / "distpack" / name
            if not made.is_file():
                raise BuildError(f"make.bash -distpack made no {name}: go {release.version} is "
                                 "older than 1.21 (no -distpack); pin a newer release")
            sha = toolchains.sha256_file(made)
            blob = cache.blob(sha)
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                shutil.move(str(made), blob.with_name(blob.name + ".partial"))
                os.replace(blob.with_name(blob.name + ".partial"), blob)
        art = Artifact(url=inputs.source_url, sha256=sha, filename=name,
                       size=blob.stat().st_size, format="tar.gz", source="built",
                       built_from=inputs)
        atomic_write_text(_record(cache, key), json.dumps(
            {"sha256": sha, "filename": name, "size": art.size}, sort_keys=True) + "\n")
        log(f"built {name}: sha256 {sha}")
        return art


def _cached(cache: toolchains.Cache, key: str, version: str, inputs: BuiltFrom) -> Artifact | None:
    record = _record(cache, key)
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not cache.blob(data.get("sha256", "")).is_file():
        return None
    return Artifact(url=inputs.source_url, sha256=data["sha256"], filename=data["filename"],
                    size=int(data["size"]), format="tar.gz", source="built", built_from=inputs)


def _artifact_of(release: Release, sha256: str) -> Artifact:
    for art in release.files.values():
        if art.sha256 == sha256 and not art.built:
            return art
    raise ConfigError(f"the lock's go {release.version} no longer lists the archive "
                      f"{sha256[:12]}... its arm toolchain was built from: re-run 'gobuild lock'")


def lock_artifact(cache: toolchains.Cache, release: Release, host_arch: str, log=None) -> Artifact:
    """The arm artifact `gobuild lock` records for a release no source publishes one of."""
    inputs = inputs_for(release, host_arch)
    return build(cache, release, inputs, **({"log": log} if log else {}))


def ensure(cache: toolchains.Cache, release: Release, art: Artifact, host_arch: str) -> Path:
    """The archive of a locked built artifact, in the cache: built from the lock's inputs if
    missing, and refused unless it is byte-identical to what the lock recorded."""
    blob = cache.blob(art.sha256)
    if blob.is_file():
        return blob
    assert art.built_from is not None
    inputs = art.built_from
    if inputs.host_arch != host_arch:
        # Another host builds with its own toolchain of the release: the archive must still be
        # the same (Go's cross builds do not depend on the host), which the sha256 checks.
        inputs = inputs_for(release, host_arch)
    made = build(cache, release, inputs)
    if made.sha256 != art.sha256:
        raise ChecksumError(
            f"go {release.version} for linux/{inputs.goarch} built from the lock's inputs has "
            f"sha256 {made.sha256}, the lock says {art.sha256}: the build is not reproducible "
            "here; re-run 'gobuild lock' to record this build")
    return cache.blob(made.sha256)


def set_goarm(go_env: Path, goarm: int, platform: str) -> None:
    """Append GOARM to a build context's go.env (a copy: the file may be a hard link into the
    cache's tree, which must never change), so `go build` in the image targets its board."""
    text = go_env.read_text(encoding="utf-8") if go_env.exists() else ""
    stamp = go_env.stat().st_mtime if go_env.exists() else 0
    go_env.unlink(missing_ok=True)
    lines = [line for line in text.splitlines() if not line.startswith("GOARM=")]
    lines += ["", f"# Set by gobuild for {platform}: binaries built here run on ARMv{goarm} boards.",
              f"GOARM={goarm}"]
    go_env.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.utime(go_env, (stamp, stamp))  # the tree's time, as every other file: stable layers


def complete(resolved: dict[str, Release], *, arches: tuple[str, ...], cache: toolchains.Cache,
             host_arch: str) -> dict[str, Release]:
    """Each resolved release with a built toolchain for every arch its source lacks (arm from
    the PyPI wheels); releases that have all their arches come back unchanged."""
    out = {}
    for minor, rel in resolved.items():
        missing = [a for a in dict.fromkeys(arches) if a not in rel.files]
        for arch in missing:
            if arch != "arm":
                raise ConfigError(f"go {rel.version} has no linux/{arch} toolchain in the source "
                                  "and gobuild builds only linux/arm: choose another --source")
            rel = replace(rel, files={**rel.files, arch: lock_artifact(cache, rel, host_arch)})
        out[minor] = rel
    return out
