"""signature.py's pure parts: gpgv status lines, the pinned fingerprint, recorded verdicts."""
from __future__ import annotations

from pathlib import Path

import pytest

from builder import signature
from builder.errors import ConfigError
from builder.lock import Artifact
from builder.toolchains import Cache

SUB = "2F528D36D67B69EDF998D85778BD65473CB3BD13"
PRIMARY = signature.GO_RELEASE_KEY
VALID = (f"[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 78BD65473CB3BD13 Google\n"
         f"[GNUPG:] VALIDSIG {SUB} 2024-12-03 1733250000 0 4 0 1 10 00 {PRIMARY}\n")


def art(sig: str | None = "https://example.invalid/go.tar.gz.asc") -> Artifact:
    return Artifact(url="https://example.invalid/go.tar.gz", sha256="a" * 64,
                    filename="go.tar.gz", size=1, format="tar.gz", signature=sig)


def test_validsig_names_the_signing_subkey_and_its_primary_key():
    assert signature.signers(VALID) == {SUB, PRIMARY}
    assert signature.signers("[GNUPG:] BADSIG 78BD65473CB3BD13 Google\n") == set()


@pytest.mark.parametrize(("status", "words"), [
    ("[GNUPG:] BADSIG 1 x", "a bad signature"),
    ("[GNUPG:] ERRSIG 1 1 10 00 0 9\n[GNUPG:] NO_PUBKEY 1", "no such key in the keyring"),
    ("[GNUPG:] NODATA 1", "no signature in the file"),
    ("", "no valid signature"),
])
def test_problem_says_what_gpgv_found(status, words):
    assert signature.problem(status) == words


def test_the_fingerprint_is_normalised_and_checked(tmp_path):
    spaced = "EB4C 1BFD 4F04 2F6D DDCC  EC91 7721 F63B D38B 4796".lower()
    assert signature.Trust(keyring=tmp_path, fingerprint=spaced).fingerprint == PRIMARY
    for bad in ("", "EB4C", "Z" * 40, PRIMARY + "00", "$(id)"):
        with pytest.raises(ConfigError, match="not 40 hex digits"):
            signature.Trust(keyring=tmp_path, fingerprint=bad)


def test_no_signature_url_is_unavailable_without_any_download(tmp_path):
    cache = Cache(root=tmp_path)
    assert signature.check(cache, art(None), signature.Trust(keyring=tmp_path / "none")) == \
        signature.UNAVAILABLE


def test_a_missing_keyring_is_unavailable_with_a_warning(tmp_path):
    said: list[str] = []
    cache = Cache(root=tmp_path)
    trust = signature.Trust(keyring=tmp_path / "absent.gpg")
    assert signature.check(cache, art(), trust, warn=said.append) == signature.UNAVAILABLE
    assert "absent.gpg" in said[0] and PRIMARY in said[0]


def test_a_recorded_verdict_is_read_back(tmp_path):
    cache = Cache(root=tmp_path)
    a = art()
    assert signature.verdict(cache, a) == signature.UNAVAILABLE
    signature.verdict_file(cache, a).parent.mkdir(parents=True)
    signature.verdict_file(cache, a).write_text(f"verified {PRIMARY}\n")
    assert signature.verdict(cache, a) == signature.VERIFIED
    assert signature.check(cache, a, signature.Trust(keyring=Path("/nonexistent"))) == "verified"


def test_gpgv_reads_an_absolute_keyring_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = signature.gpgv_argv(Path("k.gpg"), Path("s.asc"), Path("f"))
    assert argv[:4] == ["gpgv", "--status-fd", "1", "--keyring"]
    assert argv[4] == str(tmp_path / "k.gpg")  # a bare name would be looked up in GNUPGHOME
