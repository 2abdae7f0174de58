"""Throwaway OpenPGP keys for the release-signature tests: real gpg in a temporary GNUPGHOME,
never a real release key."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def gpg(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", *args],
                          check=True, capture_output=True, **kw)


@dataclass(frozen=True)
class Signer:
    home: Path
    fingerprint: str  # the primary key's
    subkey: str  # the signing subkey's

    def export(self, armor: bool = False) -> bytes:
        return gpg(self.home, *(["--armor"] if armor else []), "--export", self.fingerprint).stdout

    def sign(self, data: bytes) -> bytes:
        """An armored detached signature, made by the signing subkey (as Google's are)."""
        return gpg(self.home, "--armor", "--local-user", self.subkey + "!", "--detach-sign",
                   input=data).stdout

    def revoke(self) -> None:
        """Revoke the primary key in this GNUPGHOME (export() then carries the revocation)."""
        rev = next((self.home / "openpgp-revocs.d").glob(f"{self.fingerprint}.rev")).read_text()
        cert = rev.replace(":-----BEGIN", "-----BEGIN")  # gpg prefixes it with ':' against accidents
        gpg(self.home, "--import", input=cert.encode())

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], check=False,
                       capture_output=True)


def new_signer(home: Path, name: str = "gobuild test") -> Signer:
    """A primary key (certify only) with a signing subkey, like Google's Linux signing key."""
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    gpg(home, "--passphrase", "", "--quick-gen-key", f"{name} <test@gobuild.invalid>", "ed25519",
        "cert", "never")
    fprs = [line.split(":")[9] for line in
            gpg(home, "--with-colons", "--list-keys", text=True).stdout.splitlines()
            if line.startswith("fpr:")]
    gpg(home, "--passphrase", "", "--quick-add-key", fprs[0], "ed25519", "sign", "never")
    fprs = [line.split(":")[9] for line in
            gpg(home, "--with-colons", "--list-keys", text=True).stdout.splitlines()
            if line.startswith("fpr:")]
    return Signer(home=home, fingerprint=fprs[0], subkey=fprs[1])
