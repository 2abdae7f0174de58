"""The Go release signature: a detached OpenPGP signature (.asc) beside each go.dev archive,
checked with Debian's gpgv against the Go release signing key, pinned here by fingerprint.

gpgv trusts every key of the keyring it is given, so the keyring alone proves nothing: the
signature counts only when gpgv's VALIDSIG names the pinned fingerprint as the signing key or
its primary key. The fingerprint changes only with an explicit option (--release-key-fingerprint,
for a stand-in key in tests or an internal mirror that signs its own copies), never from the
environment. The verdict of an archive is kept beside it in the cache:
    blobs/sha256/<hex>.signature    "verified <fingerprint>"
A source that publishes no signature (PyPI wheels; a mirror without .asc files) gives the
verdict "unavailable"; a signature that does not verify is exit 4, like a bad sha256.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests

from .errors import ChecksumError, ConfigError, SourceError
from .fsutil import atomic_write_text
from .lock import Artifact
from .sources import http_session
from .toolchains import Cache, cache_dir, fetch_all

# Google's Linux Packages Signing Authority key, with which the Go team signs release archives
# (the key the official golang image checks; its signing subkey is 2F52 8D36 ... 3CB3 BD13,
# whose primary key is this one).
GO_RELEASE_KEY = "EB4C1BFD4F042F6DDDCCEC917721F63BD38B4796"
VERIFIED, UNAVAILABLE = "verified", "unavailable"
LABEL = "io.gobuild.toolchain.signature"
FINGERPRINT_RE = re.compile(r"^[0-9A-F]{40}$")
MAX_SIGNATURE_BYTES = 64 << 10


def keyring_path() -> Path:
    """Where the keyring with the Go release key is looked for by default."""
    root = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(root) / "gobuild" / "go-release-keyring.gpg"


@dataclass(frozen=True, kw_only=True)
class Trust:
    """Which key a release signature must come from, and the keyring gpgv reads it from."""

    keyring: Path
    fingerprint: str = GO_RELEASE_KEY

    def __post_init__(self) -> None:
        fpr = self.fingerprint.replace(" ", "").upper()
        if not FINGERPRINT_RE.match(fpr):
            raise ConfigError(f"--release-key-fingerprint {self.fingerprint[:60]!r} is not 40 hex "
                              "digits: give the key's full fingerprint (gpg --fingerprint)")
        object.__setattr__(self, "fingerprint", fpr)


def verdict_file(cache: Cache, art: Artifact) -> Path:
    return cache.blob(art.sha256).with_name(art.sha256 + ".signature")


def verdict(cache: Cache, art: Artifact) -> str:
    """The recorded verdict of a cached archive: verified, or unavailable."""
    try:
        return VERIFIED if verdict_file(cache, art).read_text().startswith(VERIFIED) else UNAVAILABLE
    except OSError:
        return UNAVAILABLE


def gpgv_argv(keyring: Path, signature: Path, data: Path) -> list[str]:
    return ["gpgv", "--status-fd", "1", "--keyring", str(keyring.resolve()), str(signature),
            str(data)]


def signers(status: str) -> set[str]:
    """The fingerprints (signing key and its primary) of gpgv's VALIDSIG status lines (pure)."""
    out = set()
    for line in status.splitlines():
        fields = line.split()
        if fields[:2] == ["[GNUPG:]", "VALIDSIG"] and len(fields) >= 3:
            out.add(fields[2].upper())
            if len(fields) >= 12:
                out.add(fields[11].upper())
    return out


def problem(status: str) -> str:
    """What gpgv said went wrong, in words (pure)."""
    for key, words in (("BADSIG", "a bad signature"), ("NO_PUBKEY", "no such key in the keyring"),
                       ("EXPKEYSIG", "an expired key"), ("REVKEYSIG", "a revoked key"),
                       ("ERRSIG", "a signature gpgv cannot check"),
                       ("NODATA", "no signature in the file")):
        if f"[GNUPG:] {key}" in status:
            return words
    return "no valid signature"


def _download_signature(session: requests.Session, url: str) -> bytes | None:
    """The .asc at url; None when the source publishes none there (404)."""
    try:
        resp = session.get(url, timeout=60)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise SourceError(f"cannot download the signature {url} ({type(exc).__name__}): "
                          "check the network and run again") from None
    if len(resp.content) > MAX_SIGNATURE_BYTES:
        raise ChecksumError(f"the signature {url} is {len(resp.content)} bytes, not a detached "
                            "signature: check the source (--mirror)")
    return resp.content


def check(cache: Cache, art: Artifact, trust: Trust, session: requests.Session | None = None,
          warn=None) -> str:
    """Verify the cached archive of art against its release signature; return the verdict.

    A signature that does not verify with the pinned key deletes the archive from the cache
    (only verified archives stay) and raises ChecksumError naming the file and the key."""
    warn = warn or (lambda m: print(f"gobuild: warning: {m}", file=sys.stderr))
    url = getattr(art, "signature", None)
    blob = cache.blob(art.sha256)
    if url is None:
        return UNAVAILABLE
    if verdict(cache, art) == VERIFIED:
        return VERIFIED
    if not trust.keyring.is_file():
        warn(f"the signature of {art.filename} was not checked: no keyring at {trust.keyring} "
             f"(export the Go release key {trust.fingerprint} there with gpg --export)")
        return UNAVAILABLE
    if shutil.which("gpgv") is None:
        raise ConfigError("gpgv is not installed: install Debian's gpgv package to check "
                          "release signatures")
    asc = _download_signature(session or http_session(), url)
    if asc is None:
        warn(f"the source publishes no signature for {art.filename} ({url}: 404)")
        return UNAVAILABLE
    with tempfile.TemporaryDirectory(prefix="gobuild-sig-") as tmp:
        sig = Path(tmp) / (art.filename + ".asc")
        sig.write_bytes(asc)
        proc = subprocess.run(gpgv_argv(trust.keyring, sig, blob), capture_output=True,
                              text=True, check=False)
    if proc.returncode == 0 and trust.fingerprint in signers(proc.stdout):
        atomic_write_text(verdict_file(cache, art), f"{VERIFIED} {trust.fingerprint}\n")
        return VERIFIED
    found = ", ".join(sorted(signers(proc.stdout))) or problem(proc.stdout)
    blob.unlink(missing_ok=True)
    raise ChecksumError(
        f"signature check failed for {art.filename} ({url}): expected key {trust.fingerprint}, "
        f"got {found}; the archive was deleted (re-run 'gobuild lock' if the release changed)")


def label_args(art: Artifact) -> list[str]:
    """buildx's --label for the verdict of art's archive in the default cache."""
    return ["--label", f"{LABEL}={verdict(Cache(root=cache_dir()), art)}"]


def check_all(cache: Cache, arts: Iterable[Artifact], trust: Trust) -> dict[str, str]:
    """Verdicts of already fetched archives (sha256 -> verdict); the first failure is raised."""
    session = http_session()
    return {a.sha256: check(cache, a, trust, session) for a in {a.sha256: a for a in arts}.values()}


def fetch_and_check(cache: Cache, arts: list[Artifact], trust: Trust, progress=None) -> int:
    """Fetch the archives (sha256 verified) and check their signatures before any build;
    returns the bytes downloaded."""
    stats = fetch_all(cache, arts, progress)
    check_all(cache, arts, trust)
    return stats.downloaded_bytes
