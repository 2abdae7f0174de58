"""Local stand-ins for the services users reach on the internet: a go.dev/dl server.

The server speaks the same layout as https://go.dev/dl/: ``/dl/?mode=json&include=all`` lists
releases, ``/dl/<filename>`` serves the archives (with Range support and Last-Modified).
It listens on 127.0.0.1 only and is stopped by the test that started it.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self


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


@dataclass
class GoDev:
    """Releases to serve: version -> {arch: archive bytes}; `tamper` serves other bytes."""

    releases: dict[str, dict[str, bytes]]
    tamper: set[str] = field(default_factory=set)  # file names served with changed content
    requests: list[str] = field(default_factory=list)

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
        for version, arches in self.releases.items():
            for arch, data in arches.items():
                if name == f"go{version}.linux-{arch}.tar.gz":
                    return data + b"tampered" if name in self.tamper else data
        return None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args):  # keep test output clean
        pass

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        godev = self.server.godev
        godev.requests.append(self.path)
        path = self.path.split("?")[0]
        if path == "/dl/" and "mode=json" in self.path:
            body, ctype = json.dumps(godev.index()).encode(), "application/json"
        elif path.startswith("/dl/") and (data := godev.file(path[4:])) is not None:
            body, ctype = data, "application/octet-stream"
        else:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Last-Modified", "Tue, 03 Dec 2024 18:00:00 GMT")
        self.end_headers()
        if not head:
            self.wfile.write(body[start:])


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    godev: GoDev


class Served:
    def __init__(self, godev: GoDev):
        self.godev = godev
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.godev = godev
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/dl/"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
