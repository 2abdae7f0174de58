"""The Go release signature: a detached OpenPGP signature (.asc) beside each go.dev archive,
checked with Debian's gpgv against the Go release signing key, pinned here by fingerprint.

gpgv trusts every key of the keyring it is given, so the keyring alone proves nothing: the
signature counts only when gpgv's VALIDSIG names the pinned fingerprint as the signing key or
its primary key, and gpgv does not also say the key is revoked. The fingerprint changes only with
an explicit option (--release-key-fingerprint, for a stand-in key in tests or an internal mirror
that signs its own copies), never from the environment. The verdict of an archive is kept beside
it in the cache with the key it was made with, and honoured only for exactly that key:
    blobs/sha256/<hex>.signature    "verified <fingerprint>"
Out of the box there is no keyring: the default one is filled from the key Google publishes
(KEY_URL, armored or binary), kept only if the pinned fingerprint is one of its primary keys.
A source that publishes no signature (PyPI wheels; a mirror without .asc files at lock time) gives
the verdict "unavailable"; a signature that does not verify is exit 4, like a bad sha256; a lock
that names a signature the source no longer serves is exit 4 too, unless --no-signature-check.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .errors import ChecksumError, ConfigError, SourceError
from .fsutil import atomic_write_text
from .lock import Artifact
from .sources import http_session
from .toolchains import Cache, cache_dir, fetch_all

# Google's Linux Packages Signing Authority key, with which the Go team signs release archives
# (the key the official golang image checks; its signing subkey is 2F52 8D36 ... 3CB3 BD13,
# whose primary key is this one). Cross-checked by the lead against several independent public
# sources (the key in golang/go issue 14739, distributions' keyrings); it cannot be fetched here.
GO_RELEASE_KEY = "EB4C1BFD4F042F6DDDCCEC917721F63BD38B4796"
# Where Google publishes that key (armored); the fingerprint pin above decides whether it is used.
KEY_URL = "https://dl.google.com/linux/linux_signing_key.pub"
KEY_URL_ENV = "GOBUILD_RELEASE_KEY_URL"  # a stand-in's URL in tests; the pin still applies
VERIFIED, UNAVAILABLE = "verified", "unavailable"
LABEL = "io.gobuild.toolchain.signature"
KEY_LABEL = "io.gobuild.toolchain.signature.key"  # the fingerprint a verified signature came from
FINGERPRINT_RE = re.compile(r"^[0-9A-F]{40}$")
MAX_SIGNATURE_BYTES = 64 << 10
MAX_KEY_BYTES = 1 << 20
# gpgv's status words that mean the keyring cannot answer (exit 2, the archive is kept)
KEYRING_PROBLEMS = ("NO_PUBKEY", "KEYEXPIRED_NOPUB", "NOTFOUND")


def keyring_path() -> Path:
    """Where the keyring with the Go release key is looked for by default."""
    root = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(root) / "gobuild" / "go-release-keyring.gpg"


@dataclass(frozen=True, kw_only=True)
class Trust:
    """Which key a release signature must come from, the keyring gpgv reads it from, and where
    the key is fetched from when the default keyring does not exist yet. check=False is
    --no-signature-check: nothing is verified and every verdict is unavailable."""

    keyring: Path = field(default_factory=keyring_path)
    fingerprint: str = GO_RELEASE_KEY
    check: bool = True
    fetch_key: bool = True  # False when the keyring was named explicitly: a missing one is an error
    key_url: str = field(default_factory=lambda: os.environ.get(KEY_URL_ENV) or KEY_URL)

    def __post_init__(self) -> None:
        fpr = self.fingerprint.replace(" ", "").upper()
        if not FINGERPRINT_RE.match(fpr):
            raise ConfigError(f"--release-key-fingerprint {self.fingerprint[:60]!r} is not 40 hex "
                              "digits: give the key's full fingerprint (gpg --fingerprint)")
        object.__setattr__(self, "fingerprint", fpr)


def trust_from_options(keyring: Path | None, fingerprint: str, no_check: bool) -> Trust:
    """The Trust of the CLI options --release-keyring, --release-key-fingerprint and
    --no-signature-check (pure)."""
    return Trust(keyring=keyring or keyring_path(), fingerprint=fingerprint, check=not no_check,
                 fetch_key=keyring is None)


def expected(art: Artifact, trust: Trust) -> str:
    """What an image of art will be labelled with if it is built now: "verified <fpr>" where the
    lock names a signature and checks are on (the build fails otherwise), else "unavailable".
    It goes into the image's input digest, so a change of key or of --no-signature-check
    rebuilds (pure)."""
    if art.built or art.signature_url is None or not trust.check:
        return UNAVAILABLE
    return f"{VERIFIED} {trust.fingerprint}"


def verdict_file(cache: Cache, art: Artifact) -> Path:
    return cache.blob(art.sha256).with_name(art.sha256 + ".signature")


def verdict(cache: Cache, art: Artifact, fingerprint: str = GO_RELEASE_KEY) -> str:
    """The recorded verdict of a cached archive for the key fingerprint: verified only when it
    was verified against exactly that key, else unavailable."""
    try:
        words = verdict_file(cache, art).read_text().split()
    except OSError:
        return UNAVAILABLE
    return VERIFIED if words == [VERIFIED, fingerprint] else UNAVAILABLE


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


def status_words(status: str) -> set[str]:
    return {f.split()[1] for f in status.splitlines() if f.startswith("[GNUPG:] ") and len(f.split()) > 1}


def accepted(status: str, returncode: int, fingerprint: str) -> bool:
    """Whether gpgv's answer proves a signature by the pinned key (pure).

    A revoked key (REVKEYSIG, KEYREVOKED) is refused although gpgv exits 0. An expired key
    (EXPKEYSIG) is accepted on purpose: Google rotates its signing subkeys, and archives signed
    before a subkey expired stay good (the signature's creation time is the signer's claim, so
    this cannot tell a signature made after the expiry; the sha256 pin in the lock still holds)."""
    if returncode != 0 or status_words(status) & {"REVKEYSIG", "KEYREVOKED", "BADSIG", "ERRSIG"}:
        return False
    return fingerprint in signers(status)


def problem(status: str) -> str:
    """What gpgv said went wrong, in words (pure)."""
    for key, words in (("BADSIG", "a bad signature"), ("NO_PUBKEY", "no such key in the keyring"),
                       ("REVKEYSIG", "a revoked key"), ("KEYREVOKED", "a revoked key"),
                       ("EXPKEYSIG", "an expired key"),
                       ("ERRSIG", "a signature gpgv cannot check"),
                       ("NODATA", "no signature in the file")):
        if f"[GNUPG:] {key}" in status:
            return words
    return "no valid signature"


def dearmor(data: bytes) -> bytes:
    """The binary packets of an ASCII-armored OpenPGP block (every block, in order); binary
    input is returned as it is (pure)."""
    if b"-----BEGIN PGP" not in data:
        return data
    out, body, inside, headers = [], [], False, False
    for raw in data.decode("ascii", "replace").splitlines():
        line = raw.strip()
        if line.startswith("-----BEGIN PGP"):
            inside, headers, body = True, True, []
        elif line.startswith("-----END PGP"):
            out.append(base64.b64decode("".join(body)))
            inside = False
        elif inside and headers:
            headers = bool(line)  # header lines ("Version: ...") end at the first blank line
            if line and ":" not in line:  # no headers at all: this is already the body
                headers = False
                body.append(line)
        elif inside and not (line.startswith("=") and len(line) == 5):  # not the CRC24 line
            body.append(line)
    return b"".join(out)


def primary_fingerprints(keyring: bytes) -> set[str]:
    """The v4 fingerprints of the primary keys (packet tag 6) of binary OpenPGP data (pure).
    A v4 fingerprint is SHA-1 over 0x99, the body's length (2 bytes) and the body."""
    out, i = set(), 0
    while i < len(keyring):
        head = keyring[i]
        if not head & 0x80:
            raise ValueError(f"not an OpenPGP packet at byte {i}")
        if head & 0x40:  # new format: tag in 6 bits, length in 1, 2 or 5 bytes
            tag, first = head & 0x3F, keyring[i + 1]
            if first < 192:
                length, i = first, i + 2
            elif first < 224:
                length, i = ((first - 192) << 8) + keyring[i + 2] + 192, i + 3
            elif first == 255:
                length, i = int.from_bytes(keyring[i + 2:i + 6], "big"), i + 6
            else:
                raise ValueError("partial body lengths do not occur in keys")
        else:  # old format: tag in 4 bits, length in 1, 2 or 4 bytes
            tag, size = (head >> 2) & 0x0F, (1, 2, 4, 0)[head & 3]
            if not size:
                raise ValueError("indeterminate packet length")
            length, i = int.from_bytes(keyring[i + 1:i + 1 + size], "big"), i + 1 + size
        packet = keyring[i:i + length]
        if len(packet) != length:
            raise ValueError("truncated packet")
        if tag == 6 and packet[:1] == b"\x04":
            out.add(hashlib.sha1(b"\x99" + length.to_bytes(2, "big") + packet).hexdigest().upper())
        i += length
    return out


def ensure_keyring(trust: Trust, session: requests.Session | None = None) -> None:
    """Make sure trust.keyring exists: a missing default keyring is fetched from trust.key_url and
    kept only if the pinned fingerprint is one of its primary keys; a missing named one is exit 2."""
    if trust.keyring.is_file():
        return
    if trust.keyring.exists() or not trust.fetch_key:
        raise ConfigError(f"no keyring at {trust.keyring}: give a keyring file (gpg --export "
                          f"{trust.fingerprint}), leave out --release-keyring to fetch the Go key, "
                          "or pass --no-signature-check")
    try:
        resp = (session or http_session()).get(trust.key_url, timeout=60)
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise SourceError(f"cannot download the Go release key from {trust.key_url} "
                          f"({type(exc).__name__}): check the network, give --release-keyring, or "
                          "pass --no-signature-check") from None
    if len(resp.content) > MAX_KEY_BYTES:
        raise ChecksumError(f"{trust.key_url} is {len(resp.content)} bytes, not a public key: "
                            "give --release-keyring")
    try:
        binary = dearmor(resp.content)
        found = primary_fingerprints(binary)
    except (ValueError, IndexError, UnicodeError) as exc:
        raise ChecksumError(f"{trust.key_url} is not an OpenPGP key ({exc}): give "
                            "--release-keyring") from None
    if trust.fingerprint not in found:
        raise ChecksumError(f"the key fetched from {trust.key_url} is not the pinned key "
                            f"{trust.fingerprint} (it holds {', '.join(sorted(found)) or 'no key'}): "
                            "check the URL, or give --release-keyring")
    trust.keyring.parent.mkdir(parents=True, exist_ok=True)
    tmp = trust.keyring.with_name(trust.keyring.name + ".part")
    tmp.write_bytes(binary)
    os.replace(tmp, trust.keyring)
    print(f"gobuild: fetched the Go release key {trust.fingerprint} from {trust.key_url} into "
          f"{trust.keyring}", file=sys.stderr)


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


def published(url: str, session: requests.Session | None = None) -> bytes | None:
    """The signature the source serves at url, None when it serves none (404): what 'gobuild
    lock' asks before it records a signature URL."""
    return _download_signature(session or http_session(), url)


def check(cache: Cache, art: Artifact, trust: Trust, session: requests.Session | None = None,
          asc: bytes | None = None) -> str:
    """Verify the cached archive of art against its release signature; return the verdict.

    A signature that does not verify with the pinned key (a wrong signer, a bad or revoked one,
    or a .asc the lock names and the source no longer serves) deletes the archive from the
    cache (only verified archives stay) and raises ChecksumError naming the file and the key. A
    keyring that cannot answer (no such key, unreadable) is ConfigError and keeps the archive:
    its sha256 matched."""
    url = art.signature_url
    blob = cache.blob(art.sha256)
    if url is None or art.built or not trust.check:
        return UNAVAILABLE
    if verdict(cache, art, trust.fingerprint) == VERIFIED:
        return VERIFIED
    if shutil.which("gpgv") is None:
        raise ConfigError("gpgv is not installed: install Debian's gpgv package to check "
                          "release signatures, or pass --no-signature-check")
    session = session or http_session()
    ensure_keyring(trust, session)
    if not os.access(trust.keyring, os.R_OK):
        raise ConfigError(f"the keyring {trust.keyring} is not readable: fix its permissions, "
                          "or give --release-keyring")
    asc = asc if asc is not None else _download_signature(session, url)
    if asc is None:
        blob.unlink(missing_ok=True)
        raise ChecksumError(f"the signature of {art.filename} named in the lock is gone ({url}: "
                            f"404), so key {trust.fingerprint} cannot vouch for it; the archive was "
                            "deleted: check the source, or pass --no-signature-check")
    with tempfile.TemporaryDirectory(prefix="gobuild-sig-") as tmp:
        sig = Path(tmp) / (art.filename + ".asc")
        sig.write_bytes(asc)
        proc = subprocess.run(gpgv_argv(trust.keyring, sig, blob), capture_output=True,
                              text=True, check=False)
    if accepted(proc.stdout, proc.returncode, trust.fingerprint):
        atomic_write_text(verdict_file(cache, art), f"{VERIFIED} {trust.fingerprint}\n")
        return VERIFIED
    words = status_words(proc.stdout)
    if words & set(KEYRING_PROBLEMS) or (proc.returncode == 2 and not words):
        raise ConfigError(
            f"the keyring {trust.keyring} cannot check {art.filename}: {problem(proc.stdout)} "
            f"({(proc.stderr.strip().splitlines() or ['gpgv gave no reason'])[-1][:160]}); put the "
            f"Go release key {trust.fingerprint} with its signing subkeys there (delete the file "
            "to fetch it again), or pass --no-signature-check")
    found = ", ".join(sorted(signers(proc.stdout))) or problem(proc.stdout)
    if words & {"REVKEYSIG", "KEYREVOKED"}:
        found = f"{found} (revoked)"
    blob.unlink(missing_ok=True)
    raise ChecksumError(
        f"signature check failed for {art.filename} ({url}): expected key {trust.fingerprint}, "
        f"got {found}; the archive was deleted (re-run 'gobuild lock' if the release changed)")


def current(cache: Cache, art: Artifact, trust: Trust) -> str:
    """The verdict an image built now carries: the recorded one for trust's key, unavailable
    under --no-signature-check."""
    return verdict(cache, art, trust.fingerprint) if trust.check and not art.built else UNAVAILABLE


def label_args(art: Artifact, trust: Trust, cache: Cache | None = None) -> list[str]:
    """buildx's --label for the verdict of art's archive (default cache), and the key it was
    verified with: an image verified against a key other than the Go key says which."""
    found = current(cache or Cache(root=cache_dir()), art, trust)
    key = ["--label", f"{KEY_LABEL}={trust.fingerprint}"] if found == VERIFIED else []
    return ["--label", f"{LABEL}={found}", *key]


def check_all(cache: Cache, arts: Iterable[Artifact], trust: Trust) -> dict[str, str]:
    """Verdicts of already fetched archives (sha256 -> verdict); the first failure is raised."""
    session = http_session()
    return {a.sha256: check(cache, a, trust, session) for a in {a.sha256: a for a in arts}.values()}


def fetch_and_check(cache: Cache, arts: list[Artifact], trust: Trust, progress=None) -> int:
    """Fetch the archives (sha256 verified) and check their signatures before any build;
    returns the bytes downloaded. Built toolchains (32-bit ARM from a source archive) are
    neither fetched nor checked here: build_all builds them, and their verdict is unavailable."""
    downloads = [a for a in arts if not a.built]
    stats = fetch_all(cache, downloads, progress)
    check_all(cache, downloads, trust)
    return stats.downloaded_bytes


def lock_verdicts(cache: Cache, arts: Iterable[Artifact], trust: Trust,
                  progress=None) -> dict[str, tuple[str, str | None]]:
    """At lock time: for each archive whose source may sign it (its signature_url), whether the
    source serves a signature, and if so that it verifies (the archive is fetched into the
    cache for this). Returns sha256 -> (verdict, signature URL or None); a bad one raises."""
    session = http_session()
    out: dict[str, tuple[str, str | None]] = {}
    for art in {a.sha256: a for a in arts if a.signature_url and not a.built}.values():
        asc = published(art.signature_url, session)
        if asc is None:
            out[art.sha256] = (UNAVAILABLE, None)
            continue
        if not trust.check:
            out[art.sha256] = (UNAVAILABLE, art.signature_url)
            continue
        fetch_all(cache, [art], progress)
        out[art.sha256] = (check(cache, art, trust, session, asc=asc), art.signature_url)
    return out
