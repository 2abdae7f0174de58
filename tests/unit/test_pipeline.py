"""The images flow's typed result, as --json prints it."""
from __future__ import annotations

import dataclasses

import pytest

from builder import pipeline
from builder.build import Built
from builder.errors import ConfigError
from builder.registry import Pushed

IMAGE = Built(id="go1.22-slim-linux-arm64", tag="gobuild/go:1.22.10-slim-arm64",
              platform="linux/arm64", image_id="sha256:1", size=1, toolchain_sha256="a" * 64,
              go_version="1.22.10", variant="slim", status="built")


def test_the_result_is_frozen_and_adds_the_digest_of_what_was_pushed():
    other = dataclasses.replace(IMAGE, id="go1.22-slim-linux-amd64", platform="linux/amd64",
                                tag="gobuild/go:1.22.10-slim-amd64")
    pushed = Pushed(id=IMAGE.id, ref="r/ns/go:1.22.10-slim-arm64", digest="sha256:" + "b" * 64,
                    platform="linux/arm64", go_version="1.22.10", variant="slim")
    result = pipeline.ImagesResult(images=(IMAGE, other), downloaded_bytes=0, verified=0,
                                   pushed=(pushed,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.verified = 2
    first, second = result.as_json()
    assert first == {**IMAGE.as_json(), "remote": pushed.ref, "digest": pushed.digest}
    assert second == other.as_json()  # not pushed: the same keys as before


def test_a_bad_registry_is_refused_before_anything_is_built():
    with pytest.raises(ConfigError, match="is not HOST/NAMESPACE"):
        pipeline.check_publish(pipeline.Publish(registry="Not A Registry"))
    with pytest.raises(ConfigError, match="nothing to join"):
        pipeline.join((), None, "localhost:5000/x")
