"""The lock: each matrix Go version resolved to an exact release, with per-arch URL and sha256.

Nothing after the lock needs the network to decide what to build. The file is JSON, written
with sorted keys so that a re-lock with nothing new is byte-identical.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from .errors import ConfigError
from .fsutil import atomic_write_text
from .matrix import GO_VERSION_RE, GOARCHES, Cell

SCHEMA = 1
Format = Literal["tar.gz", "wheel"]
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
FILENAME_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,200}\Z")
# never file://: a lock must not read the host's files; printable ASCII only, no space, quote or
# backslash (a NUL or other control character once passed the old "anything but space" class)
URL_RE = re.compile(r"^https?://[\x21\x23-\x26\x28-\x5b\x5d-\x7e]+\Z")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # as urlsplit().hostname gives them
AUTHORITY_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?\Z")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
RECIPE_RE = re.compile(r"^[A-Za-z0-9 ._=-]{1,80}\Z")


@dataclass(frozen=True, kw_only=True)
class BuiltFrom:
    """What a toolchain built on the host (source: built) was made from; the same inputs give
    the same archive (Go's builds are reproducible), which the lock's sha256 checks."""

    source_url: str  # the release's own archive whose src/ was built
    source_sha256: str
    host_arch: str  # GOARCH of the toolchain that compiled it (GOROOT_BOOTSTRAP)
    host_sha256: str  # the sha256 of that toolchain's verified archive (same release)
    goarch: str  # "arm"
    goarm: int  # GOARM the toolchain's own binaries were built for
    recipe: str  # how: "make.bash -distpack"


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """One Go distribution for one architecture: downloaded from url (source "download"), or
    built on the host from built_from (source "built"; url is then the source's URL)."""

    url: str
    sha256: str
    filename: str
    size: int
    format: Format
    # the release signature: its verdict at lock time ("verified" or "unavailable"; None for a
    # source that signs nothing, PyPI) and the URL of the .asc the source serves (None: none)
    signature: str | None = None
    signature_url: str | None = None
    source: Literal["download", "built"] = "download"
    built_from: BuiltFrom | None = None

    @property
    def built(self) -> bool:
        return self.source == "built"


@dataclass(frozen=True, kw_only=True)
class Release:
    """One Go release as a source lists it."""

    version: str  # "1.22.10"
    source: str  # "go.dev", "mirror" or "pypi"
    index: str  # where the listing came from
    released: str | None  # "2024-12-03", when the source tells
    files: dict[str, Artifact]  # arch -> artifact


@dataclass(frozen=True, kw_only=True)
class Lock:
    go: dict[str, Release]  # matrix version ("1.22") -> release
    path: Path

    def release(self, cell: Cell) -> Release:
        release = self.go.get(cell.go)
        if release is None:
            raise ConfigError(
                f"go {cell.go} is not in the lock {self.path}: run 'gobuild lock --go {cell.go}'"
            )
        return release

    def artifact(self, cell: Cell) -> Artifact:
        release = self.release(cell)
        art = release.files.get(cell.arch)
        if art is None:
            raise ConfigError(
                f"the lock {self.path} has no {cell.arch} file for go {release.version}: "
                f"run 'gobuild lock --go {cell.go}'"
            )
        return art


def validate_release(where: str, rel: Release) -> None:
    """Every value here may reach a Dockerfile: refuse anything that is not plainly data."""
    if not GO_VERSION_RE.match(rel.version) or rel.version.count(".") != 2:
        raise ConfigError(f"{where}: invalid Go release {rel.version!r}: re-run 'gobuild lock'")
    if rel.released is not None and not DATE_RE.match(rel.released):
        raise ConfigError(f"{where}: invalid release date {rel.released!r}: re-run 'gobuild lock'")
    if rel.source not in ("go.dev", "mirror", "pypi") or not URL_RE.match(rel.index):
        raise ConfigError(f"{where}: invalid source {rel.source!r} / {rel.index!r}")
    for arch, art in rel.files.items():
        if arch not in GOARCHES:
            raise ConfigError(f"{where}: unknown architecture {arch!r}")
        if not SHA256_RE.match(art.sha256):
            raise ConfigError(f"{where}: {arch} sha256 {art.sha256!r} is not 64 hex digits")
        if not URL_RE.match(art.url) or not FILENAME_RE.match(art.filename):
            raise ConfigError(f"{where}: {arch} has an invalid URL or file name")
        if art.signature_url is not None and not URL_RE.match(str(art.signature_url)):
            raise ConfigError(f"{where}: {arch} has an invalid signature URL: re-run 'gobuild lock'")
        if art.signature not in (None, "verified", "unavailable"):
            raise ConfigError(f"{where}: {arch} signature {str(art.signature)[:40]!r} is neither "
                              "verified nor unavailable: re-run 'gobuild lock'")
        if art.format not in ("tar.gz", "wheel"):
            raise ConfigError(f"{where}: {arch} has an unknown format {art.format!r}")
        if not isinstance(art.size, int) or isinstance(art.size, bool) or art.size < 0:
            raise ConfigError(f"{where}: {arch} size {art.size!r} is not a number of bytes: "
                              "re-run 'gobuild lock'")
        if art.source not in ("download", "built") or art.built != (art.built_from is not None):
            raise ConfigError(f"{where}: {arch} has an invalid source {art.source!r}: "
                              "re-run 'gobuild lock'")
        if art.built_from is not None:
            b = art.built_from
            if not (SHA256_RE.match(b.source_sha256) and SHA256_RE.match(b.host_sha256)
                    and URL_RE.match(b.source_url) and b.host_arch in GOARCHES
                    and b.goarch in GOARCHES and b.goarm in (5, 6, 7) and RECIPE_RE.match(b.recipe)):
                raise ConfigError(f"{where}: {arch} has invalid build inputs: re-run 'gobuild lock'")


def _artifact_json(art: Artifact) -> dict:
    """A downloaded artifact as before built ones existed (so old locks stay byte-identical)."""
    data = asdict(art)
    for key in ("signature", "signature_url"):  # a source without signatures: entries as they were
        if data[key] is None:
            del data[key]
    if not art.built:
        del data["source"], data["built_from"]
    return data


def _artifact(data: dict) -> Artifact:
    built_from = data.get("built_from")
    return Artifact(**{**data, "built_from": BuiltFrom(**built_from) if built_from else None})


def to_json(lock: Lock) -> str:
    data = {
        "schema": SCHEMA,
        "go": {
            minor: {
                "version": r.version,
                "source": r.source,
                "index": r.index,
                "released": r.released,
                "files": {a: _artifact_json(f) for a, f in r.files.items()},
            }
            for minor, r in lock.go.items()
        },
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def check_url(url: str, what: str, *, allow_http: bool) -> None:
    """A URL gobuild will download from: https, or plain http only to this machine (loopback
    never leaves it) or with --allow-http; file:// never (the lock names downloads, not host
    files). Plain HTTP elsewhere can be altered on the way, the index the sha256 came from too.
    The host is the one urllib's parser finds (as requests connects to it), and the authority
    may hold only a host and a port: no user info, whose '@' once let 'http://evil?@localhost/'
    pass for loopback."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises on a port that is not a number
    except ValueError:
        parts, host = None, None
    scheme = parts.scheme if parts is not None else ""
    if scheme not in ("http", "https"):
        raise ConfigError(f"{what} {url!r}: only https:// (or http:// with --allow-http) URLs "
                          "are downloaded from")
    if not host or not AUTHORITY_RE.match(parts.netloc):
        raise ConfigError(f"{what} {url!r} has no plain host[:port] (no user info, no spaces): "
                          "write https://HOST/PATH")
    if scheme == "https":
        return
    if scheme == "http" and (allow_http or host in LOOPBACK_HOSTS):
        return
    raise ConfigError(f"{what} {url!r} is plain http: use https, or pass --allow-http "
                      "(GOBUILD_ALLOW_HTTP=1) to accept it")


def parse_lock(text: str, path: Path, *, allow_http: bool = False) -> Lock:
    try:
        data = json.loads(text)
        if data.get("schema") != SCHEMA:
            raise ConfigError(
                f"{path}: lock schema {data.get('schema')!r} is not {SCHEMA}: re-run 'gobuild lock'"
            )
        go = {}
        for minor, r in data["go"].items():
            rel = Release(
                version=r["version"],
                source=r["source"],
                index=r["index"],
                released=r.get("released"),
                files={a: _artifact(f) for a, f in r["files"].items()},
            )
            for arch, art in rel.files.items():
                check_url(art.url, f"{path}: go {minor} {arch} URL", allow_http=allow_http)
                if art.signature_url is not None:
                    check_url(art.signature_url, f"{path}: go {minor} {arch} signature URL",
                              allow_http=allow_http)
            validate_release(f"{path}: go {minor}", rel)
            go[minor] = rel
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a valid lock ({exc}): re-run 'gobuild lock'") from None
    return Lock(go=go, path=path)


def load_lock(path: Path, *, allow_http: bool = False) -> Lock:
    try:
        return parse_lock(path.read_text(encoding="utf-8"), path, allow_http=allow_http)
    except FileNotFoundError:
        raise ConfigError(f"lock file {path} not found: run 'gobuild lock'") from None


def write_lock(lock: Lock) -> bool:
    """Write the lock atomically; return whether the file changed."""
    return atomic_write_text(lock.path, to_json(lock))
