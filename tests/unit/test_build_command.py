"""build.buildx_command: the one argv and environment of a buildx build, shared by 'gobuild
images' (_run_build) and the reproducibility test (pure)."""
from __future__ import annotations

from pathlib import Path

from builder import build, reproducible
from builder.lock import Artifact, Release
from builder.matrix import Selection, load_matrix, select

ROOT = Path(__file__).resolve().parents[2]


def planned() -> build.Planned:
    cell = select(load_matrix(ROOT / "images" / "matrix.yaml"),
                  Selection(go=("1.22",), platforms=("linux/amd64",), variants=("bookworm",)))[0]
    art = Artifact(url="https://example.invalid/go.tar.gz", sha256="a" * 64, filename="go.tar.gz",
                   size=1, format="tar.gz")
    rel = Release(version="1.22.10", source="go.dev", index="https://example.invalid/",
                  released="2024-12-03", files={"amd64": art})
    return build.Planned(cell=cell, release=rel, artifact=art, context=None, tag="t:1",
                         base_ref="gobuild/base:bookworm-amd64", digest="d" * 64, up_to_date=False)


def test_the_command_carries_labels_no_cache_and_the_release_date():
    p = planned()
    labels = ["--label", "io.gobuild.toolchain.signature=verified"]
    argv, env = build.buildx_command(Path("/ctx"), p, labels, {"PATH": "/bin"}, no_cache=True)
    assert argv[:3] == ["docker", "buildx", "build"] and argv[-1] == "/ctx"
    assert "--no-cache" in argv and argv[argv.index("--tag") + 1] == "t:1"
    assert argv[-3:-1] == labels
    assert f"io.gobuild.input={'d' * 64}" in argv
    assert env == {"PATH": "/bin",
                   "SOURCE_DATE_EPOCH": str(reproducible.source_date_epoch(p.release))}
    assert env["SOURCE_DATE_EPOCH"] == "1733184000"  # 2024-12-03 UTC
    plain, _ = build.buildx_command(Path("/ctx"), p, labels, {})
    assert "--no-cache" not in plain and [a for a in argv if a != "--no-cache"] == plain
