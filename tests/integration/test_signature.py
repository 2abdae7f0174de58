"""Release signatures on the go.dev code path, against the local stand-in serving .asc files
made with a throwaway key (gpg in a temporary GNUPGHOME), pinned with the explicit
--release-key-fingerprint option: a good signature is 'verified' in the lock's URL, the image
label and --json; a tampered one is exit 4 with one line naming the file and the key, and
nothing is built or left in the cache."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import docker.errors
import pytest

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


def gpg(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", *args],
                          check=True, capture_output=True, **kw)


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    """A throwaway signing key: (GNUPGHOME, fingerprint, exported keyring)."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    gpg(home, "--passphrase", "", "--quick-gen-key", "gobuild test <test@gobuild.invalid>",
        "ed25519", "sign", "never")
    colons = gpg(home, "--with-colons", "--list-keys", text=True).stdout
    fpr = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    keyring = home / "release-keyring.gpg"
    keyring.write_bytes(gpg(home, "--export", fpr).stdout)
    yield home, fpr, keyring
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                   capture_output=True)


def sign(home: Path, fpr: str, data: bytes) -> bytes:
    return gpg(home, "--armor", "--local-user", fpr, "--detach-sign", input=data).stdout


@pytest.fixture
def site(signer, tmp_path):
    home, fpr, _ = signer
    data = go_tarball(VERSION)
    godev = GoDev({VERSION: {"amd64": data}}, signatures={f"{ARCHIVE}.asc": sign(home, fpr, data)})
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "matrix.yaml").write_text(MATRIX)
    with Served(godev) as served:
        gobuild("lock", "--source", "mirror", "--mirror", served.url, cwd=tmp_path)
        yield served, tmp_path


def images(workdir: Path, keyring: Path, fpr: str, *extra: str):
    return gobuild("images", "--json", "--release-keyring", str(keyring),
                   "--release-key-fingerprint", fpr, *extra, cwd=workdir, check=False,
                   env={"XDG_CACHE_HOME": str(workdir / "cache")})


def test_a_good_signature_is_verified_in_the_label_and_json(site, signer, docker_client, bases):
    served, workdir = site
    _, fpr, keyring = signer
    lock = json.loads((workdir / "images" / "lock.json").read_text())
    assert lock["go"]["1.22"]["files"]["amd64"]["signature"] == f"{served.url}{ARCHIVE}.asc"
    try:
        proc = images(workdir, keyring, fpr)
        assert proc.returncode == 0, proc.stderr
        assert [(i["tag"], i["signature"]) for i in json.loads(proc.stdout)] == [(TAG, "verified")]
        labels = docker_client.images.get(TAG).labels
        assert labels["io.gobuild.toolchain.signature"] == "verified"
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
    finally:
        try:
            docker_client.images.remove(TAG, force=True)
        except docker.errors.ImageNotFound:
            pass


def test_a_tampered_signature_is_exit_4_naming_file_and_key(site, signer, docker_client):
    served, workdir = site
    home, fpr, keyring = signer
    asc = f"{ARCHIVE}.asc"
    served.godev.signatures[asc] = sign(home, fpr, b"another archive")  # valid, for other bytes
    proc = images(workdir, keyring, fpr)
    assert proc.returncode == 4, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert ARCHIVE in last and fpr in last and "Traceback" not in proc.stderr
    assert not [p for p in (workdir / "cache" / "gobuild" / "blobs").rglob("*") if p.is_file()]
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(TAG)


def test_a_signature_by_another_key_is_refused(site, signer):
    """Signed well, but by a key that is not the pinned one (it is in the keyring)."""
    _, workdir = site
    _, fpr, keyring = signer
    other = "0" * 40
    proc = images(workdir, keyring, other)
    assert proc.returncode == 4, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"expected key {other}, got {fpr}" in last
