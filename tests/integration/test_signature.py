"""Release signatures on the go.dev code path, against the local stand-in serving .asc files
made with a throwaway key (tests/signing.py) and that key where Google publishes its own (the
stand-in's URL through GOBUILD_RELEASE_KEY_URL: Google is never contacted), pinned with the
explicit --release-key-fingerprint option. Out of the box (no keyring) the key is fetched,
'gobuild lock' verifies and records 'signature: verified' and the .asc URL, and 'images' labels
the image and says so in --json; a tampered .asc is exit 4 with one line naming the file and the
key, and nothing is built or left in the cache."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import docker.errors
import pytest

from tests.signing import new_signer
from tests.standins import GoDev, Served, go_tarball

from .conftest import gobuild

VERSION = "1.22.97"  # a release no real lock names: its tag is this test's own
ARCHIVE = f"go{VERSION}.linux-amd64.tar.gz"
TAG = f"gobuild/go:{VERSION}-signed-amd64"
MATRIX = """go: ["1.22"]
platforms: [linux/amd64]
variants:
  signed:
    kind: debian
    base: debian:bookworm-slim
    packages: [ca-certificates]
"""


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    """A throwaway key like Google's: a primary key and a signing subkey."""
    s = new_signer(tmp_path_factory.mktemp("gnupg") / "home")
    yield s
    s.close()


def env(workdir: Path, served: Served, cache: str = "cache") -> dict[str, str]:
    """A user's fresh machine: no keyring yet, its own cache; the key's URL is the stand-in's."""
    return {"XDG_CACHE_HOME": str(workdir / cache), "XDG_CONFIG_HOME": str(workdir / "config"),
            "GOBUILD_RELEASE_KEY_URL": served.url + "linux_signing_key.pub"}


@pytest.fixture
def site(signer, tmp_path):
    data = go_tarball(VERSION)
    godev = GoDev({VERSION: {"amd64": data}},
                  signatures={f"{ARCHIVE}.asc": signer.sign(data),
                              "linux_signing_key.pub": signer.export(armor=True)})
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "matrix.yaml").write_text(MATRIX)
    with Served(godev) as served:
        # the lock is made on "another machine" (its own cache): images checks again by itself
        gobuild("lock", "--source", "mirror", "--mirror", served.url, "--release-key-fingerprint",
                signer.fingerprint, cwd=tmp_path, env=env(tmp_path, served, "lock-cache"))
        yield served, tmp_path


def images(workdir: Path, served: Served, fpr: str, *extra: str):
    return gobuild("images", "--json", "--release-key-fingerprint", fpr, *extra, cwd=workdir,
                   check=False, env=env(workdir, served))


def remove_tag(client) -> None:
    try:
        client.images.remove(TAG, force=True)
    except docker.errors.ImageNotFound:
        pass


def test_a_good_signature_is_verified_in_the_label_and_json(site, signer, docker_client, bases):
    served, workdir = site
    fpr = signer.fingerprint
    lock = json.loads((workdir / "images" / "lock.json").read_text())
    entry = lock["go"]["1.22"]["files"]["amd64"]
    assert (entry["signature"], entry["signature_url"]) == ("verified", f"{served.url}{ARCHIVE}.asc")
    keyring = workdir / "config" / "gobuild" / "go-release-keyring.gpg"
    assert keyring.read_bytes() == signer.export()  # fetched on first use, dearmored
    try:
        proc = images(workdir, served, fpr)
        assert proc.returncode == 0, proc.stderr
        assert [(i["tag"], i["signature"]) for i in json.loads(proc.stdout)] == [(TAG, "verified")]
        labels = docker_client.images.get(TAG).labels
        assert labels["io.gobuild.toolchain.signature"] == "verified"
        assert labels["io.gobuild.toolchain.signature.key"] == fpr  # not the Go key: it says which
        # the SBOM: beside the --json output (named there), its digest in a label
        entry = json.loads(proc.stdout)[0]
        sbom_file = Path(entry["sbom"])
        assert hashlib.sha256(sbom_file.read_bytes()).hexdigest() == entry["sbom_sha256"] \
            == labels["io.gobuild.sbom.sha256"]
        bom = json.loads(sbom_file.read_text())
        go = next(c for c in bom["components"] if c["name"] == "go")
        assert go["version"] == VERSION and go["hashes"][0]["content"] == lock["go"]["1.22"][
            "files"]["amd64"]["sha256"]
        assert {"name": "gobuild:signature", "value": "verified"} in go["properties"]
        debs = {c["name"] for c in bom["components"] if c["purl"].startswith("pkg:deb/")}
        assert {"bash", "libc6", "ca-certificates"} <= debs  # the base's dpkg status
        assert f"/dl/{ARCHIVE}.asc" in served.requests
        # the verdict under this key does not carry over to the Go key: that run must check again
        again = images(workdir, served, signer.fingerprint, "--no-signature-check")
        assert again.returncode == 0, again.stderr
        assert [(i["status"], i["signature"]) for i in json.loads(again.stdout)] == [
            ("built", "unavailable")]  # the verdict is an input: rebuilt with the new label
    finally:
        remove_tag(docker_client)


def test_a_tampered_signature_is_exit_4_naming_file_and_key(site, signer, docker_client):
    served, workdir = site
    fpr = signer.fingerprint
    served.godev.signatures[f"{ARCHIVE}.asc"] = signer.sign(b"another archive")  # valid, other bytes
    proc = images(workdir, served, fpr)
    assert proc.returncode == 4, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert ARCHIVE in last and fpr in last and "Traceback" not in proc.stderr
    assert not [p for p in (workdir / "cache" / "gobuild" / "blobs").rglob("*") if p.is_file()]
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(TAG)


def test_a_signature_by_another_key_is_refused(site, signer, docker_client):
    """Signed well, but by a key that is not the pinned one (it is in the keyring)."""
    served, workdir = site
    keyring = workdir / "keyring.gpg"
    keyring.write_bytes(signer.export())
    other = "0" * 40
    try:
        proc = images(workdir, served, other, "--release-keyring", str(keyring))
    finally:
        remove_tag(docker_client)
    assert proc.returncode == 4, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"expected key {other}, got " in last and signer.fingerprint in last
