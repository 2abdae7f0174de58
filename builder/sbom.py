"""A small SBOM per image (CycloneDX 1.6 JSON, written with cyclonedx-python-lib): the Go
toolchain (version, source, URL, sha256, signature verdict) and the Debian packages of the
image's base, read from the base's own dpkg status.

The document is a pure function of its inputs (no clock, no random serial number: the serial
is a UUID5 of the content and the timestamp the release's date), so a rebuild gives the same
bytes and the image's label io.gobuild.sbom.sha256 does not change. Files are kept in the
cache as sboms/<sha256>.cdx.json; 'gobuild images --json' names the file and its digest.
Packages that the Dockerfile's own RUN adds to a base that lacks them are not listed (the
bases gobuild builds already hold them); slim images, built from files with no dpkg status,
list the toolchain only.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import docker
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from . import engine, signature
from .fsutil import atomic_write_text
from .lock import Artifact, Release
from .toolchains import Cache, cache_dir

LABEL = "io.gobuild.sbom.sha256"
DPKG_STATUS = "/var/lib/dpkg/status"
NAMESPACE = uuid.UUID("6f1c1d2e-8a47-4c55-9a3c-2b1f0c7d9e10")  # gobuild's UUID5 namespace


@dataclass(frozen=True, kw_only=True)
class DebPackage:
    name: str
    version: str
    arch: str


def installed_packages(status: str) -> list[DebPackage]:
    """The installed packages of a dpkg status file, sorted by name (pure)."""
    out = []
    for stanza in status.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            out.append(DebPackage(name=fields["Package"], version=fields.get("Version", ""),
                                  arch=fields.get("Architecture", "")))
    return sorted(out, key=lambda p: (p.name, p.arch))


def base_status(client: docker.DockerClient, base_ref: str, run_id: str) -> str:
    """The dpkg status of an image, read from a created (never started) container; "" for an
    image without one."""
    spec = engine.Spec(image=base_ref, command=("true",), role="sbom")
    with engine.Container(client, spec, run_id) as ctr:
        files = ctr.fetch(DPKG_STATUS)
    return next(iter(files.values()), b"").decode("utf-8", "replace")


def document(*, image: str, release: Release, artifact: Artifact, signature: str,
             packages: list[DebPackage], suite: str = "bookworm",
             signature_key: str | None = None) -> str:
    """The CycloneDX JSON of one image (pure, deterministic)."""
    built = artifact.built_from
    go = Component(
        type=ComponentType.APPLICATION, name="go", version=release.version,
        bom_ref=f"go@{release.version}",
        purl=PackageURL(type="golang", name="go", version=f"go{release.version}"),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=artifact.sha256)],
        # a toolchain built on the host has no distribution: its URL is the source it was built from
        external_references=[] if built else [ExternalReference(
            type=ExternalReferenceType.DISTRIBUTION, url=XsUri(artifact.url))],
        properties=[Property(name="gobuild:source", value="built" if built else release.source),
                    Property(name="gobuild:archive", value=artifact.filename),
                    *([Property(name="gobuild:built-from", value=built.source_url),
                       Property(name="gobuild:built-from-sha256", value=built.source_sha256),
                       Property(name="gobuild:built-with-sha256", value=built.host_sha256),
                       Property(name="gobuild:built-recipe",
                                value=f"{built.recipe} GOARCH={built.goarch} GOARM={built.goarm}")]
                      if built else []),
                    Property(name="gobuild:signature", value=signature),
                    # the key a verified signature came from (the Go key unless overridden)
                    *([Property(name="gobuild:signature-key", value=signature_key)]
                      if signature_key and signature == "verified" else [])],
    )
    debs = [Component(
        type=ComponentType.LIBRARY, name=p.name, version=p.version,
        bom_ref=f"deb:{p.name}:{p.arch}",
        purl=PackageURL(type="deb", namespace="debian", name=p.name, version=p.version,
                        qualifiers={"arch": p.arch, "distro": f"debian-{suite}"}),
    ) for p in packages]
    stamp = datetime.strptime(release.released or "1970-01-01", "%Y-%m-%d").replace(
        tzinfo=timezone.utc)
    content = json.dumps([image, release.version, artifact.sha256, signature, signature_key or "",
                          [(p.name, p.version, p.arch) for p in packages]])
    root = Component(type=ComponentType.CONTAINER, name=image, version=release.version,
                     bom_ref=f"image:{image}")
    bom = Bom(components=[go, *debs], serial_number=uuid.uuid5(NAMESPACE, content),
              metadata=BomMetaData(timestamp=stamp, component=root))
    bom.register_dependency(root, [go, *debs])  # the image holds each of them
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def path(cache_root: Path, digest: str) -> Path:
    return cache_root / "sboms" / f"{digest}.cdx.json"


def write(cache_root: Path, text: str) -> tuple[Path, str]:
    """Keep the document in the cache under its digest; returns its path and sha256."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    target = path(cache_root, digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)
    return target, digest


def label_args(client: docker.DockerClient, *, image: str, release: Release, artifact: Artifact,
               base_ref: str, trust: signature.Trust | None = None,
               suite: str = "bookworm") -> list[str]:
    """Write the SBOM of an image about to be built (into the default cache) and return
    buildx's --label with its digest. base_ref "" (slim: no base image) lists no packages."""
    root = cache_dir()
    trust = trust or signature.Trust()
    status = base_status(client, base_ref, engine.new_run_id()) if base_ref else ""
    text = document(image=image, release=release, artifact=artifact,
                    signature=signature.current(Cache(root=root), artifact, trust),
                    packages=installed_packages(status), suite=suite, signature_key=trust.fingerprint)
    _, digest = write(root, text)
    return ["--label", f"{LABEL}={digest}"]
