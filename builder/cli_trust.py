"""The release-signature options shared by 'gobuild lock' and 'gobuild images' (Click only):
they become one signature.Trust, passed to the command as `trust`."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from . import signature


def trust_options(command):
    """--release-keyring, --release-key-fingerprint and --no-signature-check -> trust."""

    @click.option("--release-keyring", type=click.Path(dir_okay=False, path_type=Path),
                  help="The keyring (gpg --export) holding the Go release key [default: "
                       "$XDG_CONFIG_HOME/gobuild/go-release-keyring.gpg, fetched on first use from "
                       f"{signature.KEY_URL} and kept only if it holds the pinned key].")
    @click.option("--release-key-fingerprint", metavar="FPR", default=signature.GO_RELEASE_KEY,
                  show_default=True,
                  help="The key release signatures must come from: change it only for a mirror "
                       "that signs its own copies (or a test key).")
    @click.option("--no-signature-check", is_flag=True,
                  help="Do not check release signatures (sha256 still is): every verdict is "
                       "'unavailable', even where the lock names a signature.")
    @functools.wraps(command)
    def wrapper(*args, release_keyring: Path | None, release_key_fingerprint: str,
                no_signature_check: bool, **kwargs):
        trust = signature.trust_from_options(release_keyring, release_key_fingerprint,
                                             no_signature_check)
        return command(*args, trust=trust, **kwargs)

    return wrapper
