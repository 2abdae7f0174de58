"""signature.py: gpgv status lines, the pinned fingerprint, recorded verdicts (only for the key
they were made with), revoked and expired keys, keyring problems (exit 2, archive kept), a
signature the lock names and the source no longer serves (exit 4), and the Go key fetched on
first use from a local stand-in (a throwaway key: Google's URL is never contacted here)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import pytest

from builder import build, signature
from builder.errors import ChecksumError, ConfigError
from builder.lock import Artifact, BuiltFrom
from builder.toolchains import Cache
from tests.signing import new_signer
from tests.standins import GoDev, Served

SUB = "2F528D36D67B69EDF998D85778BD65473CB3BD13"
PRIMARY = signature.GO_RELEASE_KEY
VALID = (f"[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 78BD65473CB3BD13 Google\n"
         f"[GNUPG:] VALIDSIG {SUB} 2024-12-03 1733250000 0 4 0 1 10 00 {PRIMARY}\n")
DATA = b"a go archive\n"


def art(url: str | None = "https://example.invalid/go.tar.gz.asc", data: bytes = DATA) -> Artifact:
    return Artifact(url="https://example.invalid/go.tar.gz", sha256=hashlib.sha256(data).hexdigest(),
                    filename="go.tar.gz", size=len(data), format="tar.gz", signature_url=url)


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    s = new_signer(tmp_path_factory.mktemp("gnupg") / "home")
    yield s
    s.close()


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    s = new_signer(tmp_path_factory.mktemp("gnupg") / "home", name="someone else")
    yield s
    s.close()


def cached(tmp_path: Path, a: Artifact, data: bytes = DATA) -> Cache:
    cache = Cache(root=tmp_path / "cache")
    cache.blob(a.sha256).parent.mkdir(parents=True, exist_ok=True)
    cache.blob(a.sha256).write_bytes(data)
    return cache


def test_validsig_names_the_signing_subkey_and_its_primary_key():
    assert signature.signers(VALID) == {SUB, PRIMARY}
    assert signature.signers("[GNUPG:] BADSIG 78BD65473CB3BD13 Google\n") == set()


def test_a_revoked_key_is_refused_and_an_expired_one_accepted_on_purpose():
    assert signature.accepted(VALID, 0, PRIMARY)
    revoked = VALID.replace("GOODSIG", "REVKEYSIG")
    assert not signature.accepted(revoked, 0, PRIMARY)
    assert not signature.accepted(VALID + "[GNUPG:] KEYREVOKED\n", 0, PRIMARY)
    assert signature.accepted(VALID.replace("GOODSIG", "EXPKEYSIG"), 0, PRIMARY)  # rotated subkey
    assert not signature.accepted(VALID, 1, PRIMARY)
    assert not signature.accepted(VALID, 0, "0" * 40)


@pytest.mark.parametrize(("status", "words"), [
    ("[GNUPG:] BADSIG 1 x", "a bad signature"),
    ("[GNUPG:] ERRSIG 1 1 10 00 0 9\n[GNUPG:] NO_PUBKEY 1", "no such key in the keyring"),
    ("[GNUPG:] REVKEYSIG 1 x", "a revoked key"),
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


def test_the_key_url_comes_from_the_environment_but_the_fingerprint_never(monkeypatch, tmp_path):
    monkeypatch.setenv(signature.KEY_URL_ENV, "http://127.0.0.1:1/key.pub")
    monkeypatch.setenv("GOBUILD_RELEASE_KEY_FINGERPRINT", "0" * 40)
    trust = signature.trust_from_options(None, PRIMARY, False)
    assert (trust.key_url, trust.fingerprint, trust.fetch_key) == ("http://127.0.0.1:1/key.pub",
                                                                   PRIMARY, True)
    monkeypatch.delenv(signature.KEY_URL_ENV)
    assert signature.Trust(keyring=tmp_path).key_url == signature.KEY_URL
    assert not signature.trust_from_options(tmp_path / "k", PRIMARY, False).fetch_key


def test_no_signature_url_is_unavailable_without_any_download(tmp_path):
    cache = Cache(root=tmp_path)
    assert signature.check(cache, art(None), signature.Trust(keyring=tmp_path / "none")) == \
        signature.UNAVAILABLE


def test_a_verdict_counts_only_for_the_key_it_was_made_with(tmp_path):
    cache = Cache(root=tmp_path)
    a = art()
    assert signature.verdict(cache, a) == signature.UNAVAILABLE
    signature.verdict_file(cache, a).parent.mkdir(parents=True)
    signature.verdict_file(cache, a).write_text(f"verified {'1' * 40}\n")  # made under an override
    assert signature.verdict(cache, a, "1" * 40) == signature.VERIFIED
    assert signature.verdict(cache, a) == signature.UNAVAILABLE  # not for the Go key
    signature.verdict_file(cache, a).write_text(f"verified {PRIMARY}\n")
    assert signature.verdict(cache, a) == signature.VERIFIED
    assert signature.check(cache, a, signature.Trust(keyring=Path("/nonexistent"))) == "verified"


def test_gpgv_reads_an_absolute_keyring_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = signature.gpgv_argv(Path("k.gpg"), Path("s.asc"), Path("f"))
    assert argv[:4] == ["gpgv", "--status-fd", "1", "--keyring"]
    assert argv[4] == str(tmp_path / "k.gpg")  # a bare name would be looked up in GNUPGHOME


def test_armored_and_binary_keys_give_the_primary_fingerprint_only(signer):
    binary = signer.export()
    assert signature.dearmor(signer.export(armor=True)) == binary
    assert signature.dearmor(binary) == binary
    assert signature.primary_fingerprints(binary) == {signer.fingerprint}  # not the subkey
    with pytest.raises(ValueError):
        signature.primary_fingerprints(b"not a key")


def serve(files: dict[str, bytes]) -> Served:
    return Served(GoDev({}, signatures=files))  # GoDev serves any name of `signatures` under /dl/


def test_the_go_key_is_fetched_into_the_default_keyring_then_verifies(tmp_path, signer):
    a = art(None)
    with serve({"key.pub": signer.export(armor=True), "go.tar.gz.asc": signer.sign(DATA)}) as site:
        a = art(site.url + "go.tar.gz.asc")
        cache = cached(tmp_path, a)
        trust = signature.Trust(keyring=tmp_path / "cfg" / "keyring.gpg",
                                fingerprint=signer.fingerprint, key_url=site.url + "key.pub")
        assert signature.check(cache, a, trust) == signature.VERIFIED
        assert "/dl/key.pub" in site.requests
    assert trust.keyring.read_bytes() == signer.export()  # stored dearmored
    assert signature.verdict_file(cache, a).read_text().split() == ["verified", signer.fingerprint]


def test_a_fetched_key_without_the_pinned_fingerprint_is_exit_4_and_not_kept(tmp_path, signer, other):
    with serve({"key.pub": other.export(armor=True)}) as site:
        trust = signature.Trust(keyring=tmp_path / "keyring.gpg", fingerprint=signer.fingerprint,
                                key_url=site.url + "key.pub")
        with pytest.raises(ChecksumError) as exc:
            signature.ensure_keyring(trust)
    assert exc.value.exit_code == 4
    assert signer.fingerprint in str(exc.value) and other.fingerprint in str(exc.value)
    assert "key.pub" in str(exc.value) and not trust.keyring.exists()


def test_a_named_keyring_that_is_missing_is_exit_2_and_fetches_nothing(tmp_path):
    trust = signature.trust_from_options(tmp_path / "typo.gpg", PRIMARY, False)
    with pytest.raises(ConfigError, match="typo.gpg.*--no-signature-check") as exc:
        signature.ensure_keyring(trust)
    assert exc.value.exit_code == 2


def test_a_keyring_without_the_signing_key_is_exit_2_and_keeps_the_archive(tmp_path, signer, other):
    with serve({"go.tar.gz.asc": signer.sign(DATA)}) as site:
        a = art(site.url + "go.tar.gz.asc")
        cache = cached(tmp_path, a)
        keyring = tmp_path / "other.gpg"
        keyring.write_bytes(other.export())
        trust = signature.Trust(keyring=keyring, fingerprint=signer.fingerprint, fetch_key=False)
        with pytest.raises(ConfigError) as exc:
            signature.check(cache, a, trust)
    assert exc.value.exit_code == 2
    assert str(keyring) in str(exc.value) and "no such key in the keyring" in str(exc.value)
    assert cache.blob(a.sha256).read_bytes() == DATA  # its sha256 matched: kept


def test_a_revoked_signing_key_is_exit_4(tmp_path):
    revoked = new_signer(tmp_path / "revoked")
    try:
        asc = revoked.sign(DATA)
        revoked.revoke()
        keyring = tmp_path / "k.gpg"
        keyring.write_bytes(revoked.export())
        with serve({"go.tar.gz.asc": asc}) as site:
            a = art(site.url + "go.tar.gz.asc")
            cache = cached(tmp_path, a)
            with pytest.raises(ChecksumError, match="revoked") as exc:
                signature.check(cache, a, signature.Trust(keyring=keyring,
                                                          fingerprint=revoked.fingerprint))
        assert exc.value.exit_code == 4 and not cache.blob(a.sha256).exists()
    finally:
        revoked.close()


def test_a_signature_the_lock_names_and_the_source_lost_is_exit_4_unless_unchecked(tmp_path, signer):
    keyring = tmp_path / "k.gpg"
    keyring.write_bytes(signer.export())
    with serve({}) as site:  # serves no .asc: 404
        a = art(site.url + "go.tar.gz.asc")
        cache = cached(tmp_path, a)
        unchecked = signature.trust_from_options(keyring, signer.fingerprint, True)
        assert signature.check(cache, a, unchecked) == signature.UNAVAILABLE
        with pytest.raises(ChecksumError, match="404") as exc:
            signature.check(cache, a, signature.Trust(keyring=keyring, fingerprint=signer.fingerprint))
    assert exc.value.exit_code == 4 and "go.tar.gz" in str(exc.value)


def test_at_lock_time_a_source_without_signatures_records_unavailable_and_no_url(tmp_path, signer):
    keyring = tmp_path / "k.gpg"
    keyring.write_bytes(signer.export())
    with serve({"go.tar.gz.asc": signer.sign(DATA)}) as site:
        signed, unsigned = art(site.url + "go.tar.gz.asc"), art(site.url + "gone.asc", b"other")
        cache = cached(tmp_path, signed)
        trust = signature.Trust(keyring=keyring, fingerprint=signer.fingerprint)
        found = signature.lock_verdicts(cache, [signed, unsigned], trust)
    assert found == {signed.sha256: ("verified", site.url + "go.tar.gz.asc"),
                     unsigned.sha256: ("unavailable", None)}


def test_built_toolchains_are_neither_fetched_nor_checked(tmp_path):
    """Their verdict is that of their source archive, which build_all builds from."""
    built = Artifact(url="http://127.0.0.1:9/go.src.tar.gz", sha256="b" * 64, filename="go.tar.gz",
                     size=1, format="tar.gz", source="built",
                     built_from=BuiltFrom(source_url="http://127.0.0.1:9/go.src.tar.gz",
                                          source_sha256="c" * 64, host_arch="amd64",
                                          host_sha256="d" * 64, goarch="arm", goarm=7,
                                          recipe="make.bash"))
    trust = signature.Trust(keyring=tmp_path / "none.gpg", fetch_key=False)
    assert signature.fetch_and_check(Cache(root=tmp_path), [built], trust) == 0
    assert signature.expected(built, trust) == signature.UNAVAILABLE


def test_the_verdict_and_its_key_are_part_of_the_input_digest(tmp_path):
    a = art()
    go_key = signature.Trust(keyring=tmp_path)
    test_key = signature.Trust(keyring=tmp_path, fingerprint="1" * 40)
    off = signature.trust_from_options(None, PRIMARY, True)
    assert signature.expected(a, go_key) == f"verified {PRIMARY}"
    assert signature.expected(a, off) == signature.expected(art(None), go_key) == "unavailable"

    class Ctx:  # what input_digest reads of a rendered context
        files: ClassVar[dict[str, str]] = {"Dockerfile": "FROM x\n"}

        class cell:
            class variant:
                prune = ()

    digests = {build.input_digest(Ctx, a, "base", signature.expected(a, t))
               for t in (go_key, test_key, off)}
    assert len(digests) == 3
