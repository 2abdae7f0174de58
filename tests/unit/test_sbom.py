"""sbom.py: the dpkg status parser and the CycloneDX document (pure, deterministic)."""
from __future__ import annotations

import hashlib
import json

from builder import sbom
from builder.lock import Artifact, BuiltFrom, Release

ART = Artifact(url="https://example.invalid/go1.22.10.linux-amd64.tar.gz", sha256="ab" * 32,
               filename="go1.22.10.linux-amd64.tar.gz", size=1, format="tar.gz")
REL = Release(version="1.22.10", source="go.dev", index="https://example.invalid/dl/",
              released="2024-12-03", files={"amd64": ART})
STATUS = """Package: zlib1g
Status: install ok installed
Version: 1:1.2.13.dfsg-1
Architecture: amd64
Description: compression library
 a continuation line: Status: install ok installed

Package: bash
Status: install ok installed
Version: 5.2.15-2+b7
Architecture: amd64

Package: removed
Status: deinstall ok config-files
Version: 1.0
Architecture: all
"""


def test_installed_packages_only_sorted_by_name():
    assert [(p.name, p.version) for p in sbom.installed_packages(STATUS)] == [
        ("bash", "5.2.15-2+b7"), ("zlib1g", "1:1.2.13.dfsg-1")]
    assert sbom.installed_packages("") == []


def doc(**kw) -> dict:
    args = {"image": "gobuild/go:1.22.10-bookworm-amd64", "release": REL, "artifact": ART,
            "signature": "verified", "packages": sbom.installed_packages(STATUS)}
    return json.loads(sbom.document(**{**args, **kw}))


def test_the_document_lists_the_toolchain_and_the_packages():
    d = doc()
    assert d["bomFormat"] == "CycloneDX" and d["specVersion"] == "1.6"
    go = next(c for c in d["components"] if c["name"] == "go")
    assert go["version"] == "1.22.10" and go["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert {p["name"]: p["value"] for p in go["properties"]} == {
        "gobuild:source": "go.dev", "gobuild:signature": "verified",
        "gobuild:archive": "go1.22.10.linux-amd64.tar.gz"}
    assert go["externalReferences"][0]["url"] == ART.url
    debs = sorted(c["purl"] for c in d["components"] if c["name"] != "go")
    assert debs == ["pkg:deb/debian/bash@5.2.15-2%2Bb7?arch=amd64&distro=debian-bookworm",
                    "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-bookworm"]
    assert d["metadata"]["component"]["name"] == "gobuild/go:1.22.10-bookworm-amd64"


def test_a_built_toolchain_names_what_it_was_built_from_not_a_download():
    """A 32-bit ARM toolchain built on the host: its URL is the source archive's, whose hash is
    not the component's, so no distribution reference; the inputs are properties."""
    inputs = BuiltFrom(source_url=ART.url, source_sha256="cd" * 32, host_arch="amd64",
                       host_sha256="cd" * 32, goarch="arm", goarm=6, recipe="make.bash -distpack")
    built = Artifact(url=ART.url, sha256="ef" * 32, filename="go1.22.10.linux-arm.tar.gz", size=1,
                     format="tar.gz", source="built", built_from=inputs)
    go = next(c for c in doc(artifact=built, signature="unavailable")["components"] if c["name"] == "go")
    assert go["hashes"] == [{"alg": "SHA-256", "content": "ef" * 32}]
    assert "externalReferences" not in go or go["externalReferences"] == []
    assert {p["name"]: p["value"] for p in go["properties"]} == {
        "gobuild:source": "built", "gobuild:signature": "unavailable",
        "gobuild:archive": "go1.22.10.linux-arm.tar.gz", "gobuild:built-from": ART.url,
        "gobuild:built-from-sha256": "cd" * 32, "gobuild:built-with-sha256": "cd" * 32,
        "gobuild:built-recipe": "make.bash -distpack GOARCH=arm GOARM=6"}


def test_the_same_inputs_give_the_same_bytes_and_others_do_not():
    same = sbom.document(image="i", release=REL, artifact=ART, signature="verified", packages=[])
    assert same == sbom.document(image="i", release=REL, artifact=ART, signature="verified",
                                 packages=[])
    assert doc()["serialNumber"] != doc(signature="unavailable")["serialNumber"]
    assert doc()["metadata"]["timestamp"].startswith("2024-12-03T00:00:00")


def test_write_keeps_the_document_under_its_digest(tmp_path):
    path, digest = sbom.write(tmp_path, "{}\n")
    assert path == sbom.path(tmp_path, digest) and path.read_text() == "{}\n"
    assert digest == hashlib.sha256(b"{}\n").hexdigest()
