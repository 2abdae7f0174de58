"""Two clean builds (no build cache) of one cell give the same Go layer and the same labels.

The build goes through the real code path (render, plan, assemble, reproducible.go_layer, and
build.buildx_command: the argv, labels and SOURCE_DATE_EPOCH that 'gobuild images' runs) with
--no-cache, under tags of this test's own, removed after."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import uuid

from builder import build, render, reproducible, toolchains
from builder.lock import load_lock
from builder.matrix import Selection, load_matrix, select

from .conftest import ROOT

CELL = Selection(go=("1.22",), platforms=("linux/amd64",), variants=("bookworm",))


def clean_build(client, planned, tag: str) -> dict:
    cache = toolchains.Cache(root=toolchains.cache_dir())
    tree = toolchains.unpack(cache, planned.artifact, planned.release.version)
    work = cache.root / "contexts"
    work.mkdir(parents=True, exist_ok=True)
    folder = build.assemble(work, planned, tree)
    try:
        reproducible.go_layer(folder, reproducible.source_date_epoch(planned.release))
        p = dataclasses.replace(planned, tag=tag)
        argv, env = build.buildx_command(folder, p, build.provenance_labels(client, p),
                                         dict(os.environ), no_cache=True)
        subprocess.run(argv, check=True, capture_output=True, env=env)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return client.api.inspect_image(tag)


def test_two_clean_builds_give_the_same_go_layer(docker_client, bases):
    matrix = load_matrix(ROOT / "images" / "matrix.yaml")
    lock = load_lock(ROOT / "images" / "lock.json")
    cells = select(matrix, CELL)
    contexts = render.render_all(render.environment(None), cells, lock)
    planned = build.plan(docker_client, contexts, lock)[0]
    base_layers = docker_client.api.inspect_image(planned.base_ref)["RootFS"]["Layers"]
    # one tag for both builds, as a rebuild has (the SBOM names the image): each is inspected,
    # then both removed by id
    tag = f"gobuild-test/repro:{uuid.uuid4().hex[:8]}"
    built = []
    try:
        for _ in range(2):
            built.append(clean_build(docker_client, planned, tag))
    finally:
        for ref in [tag, *(img["Id"] for img in built)]:
            subprocess.run(["docker", "image", "rm", "--no-prune", ref], capture_output=True,
                           check=False)
    first, second = built
    layers = [img["RootFS"]["Layers"] for img in (first, second)]
    # base layers, the RUN that makes /go (its folders get the build's time), Go, WORKDIR's
    go_layer = len(base_layers) + 1
    assert len(layers[0]) == len(layers[1]) == go_layer + 2
    assert layers[0][:go_layer - 1] == base_layers
    assert layers[0][go_layer] == layers[1][go_layer], "the Go layer differs between clean builds"
    assert first["Config"]["Labels"] == second["Config"]["Labels"]
    assert first["Created"] == second["Created"]  # SOURCE_DATE_EPOCH: the release's date
    assert {"io.gobuild.toolchain.signature", "io.gobuild.sbom.sha256"} <= set(
        first["Config"]["Labels"])  # the provenance labels are compared too
    # the files the build started from are the committed ones (render --check keeps them so)
    assert contexts[0].files["Dockerfile"] == (ROOT / "images" / contexts[0].cell.id /
                                               "Dockerfile").read_text()
    print({"same": [a == b for a, b in zip(*layers)], "created": first["Created"]})
