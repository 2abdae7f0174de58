"""The one container lifecycle against the real engine: removal on every way out, the
timeout, OOM by its signs, and a vanished volume."""
from __future__ import annotations

import os

import pytest

from builder import engine
from builder.errors import EngineError
from builder.matrix import goarch

NATIVE = goarch(os.uname().machine)


@pytest.fixture(scope="module")
def image(docker_client, bases):
    import json

    from .conftest import gobuild

    built = gobuild("images", "--go", "1.22", "--variant", "slim", "--platform", f"linux/{NATIVE}",
                    "--json")
    return json.loads(built.stdout)[0]["tag"]


@pytest.fixture
def run_id(docker_client):
    rid = engine.new_run_id()
    yield rid
    engine.remove_labelled(docker_client, rid)


def names(docker_client, run_id):
    return [c.name for c in docker_client.containers.list(
        all=True, filters={"label": f"{engine.RUN_LABEL}={run_id}"})]


def test_the_container_is_removed_when_the_block_raises(docker_client, image, run_id):
    spec = engine.Spec(image=image, command=("true",), role="test")
    with pytest.raises(RuntimeError), engine.Container(docker_client, spec, run_id) as ctr:
        assert names(docker_client, run_id) == [ctr.name]
        assert docker_client.containers.get(ctr.id).labels[engine.OWNER_LABEL] == engine.owner()
        raise RuntimeError("the caller failed")
    assert names(docker_client, run_id) == []


def test_a_run_past_its_timeout_is_killed_and_removed(docker_client, image, run_id):
    spec = engine.Spec(image=image, command=("sleep", "60"), role="test", timeout=2)
    done = engine.run(docker_client, spec, run_id)
    assert done.timed_out and done.exit_code == -1
    assert names(docker_client, run_id) == []


def test_an_oom_kill_of_a_child_process_is_seen(docker_client, image, run_id):
    spec = engine.Spec(image=image, command=("sh", "-c", "head -c 300m /dev/zero | tail; exit 1"),
                       role="test", limits=engine.Limits(memory=64 * 2**20), timeout=120)
    done = engine.run(docker_client, spec, run_id)
    assert done.oom and done.exit_code == 1
    plain = engine.run(docker_client, engine.Spec(image=image, command=("sh", "-c", "exit 3"),
                                                  role="test"), run_id)
    assert plain.exit_code == 3 and not plain.oom


def test_a_vanished_volume_is_an_error_not_an_empty_new_one(docker_client, image, run_id):
    volume = engine.create_volume(docker_client, f"gobuild-test-{run_id}", run_id)
    docker_client.volumes.get(volume).remove()
    spec = engine.Spec(image=image, command=("true",), role="test", volumes={volume: "/v"})
    try:
        with pytest.raises(EngineError, match="is gone"):
            engine.run(docker_client, spec, run_id)
        assert volume not in [v.name for v in docker_client.volumes.list()]
    finally:  # an engine that made a new, unlabelled one: remove it by its name
        for vol in docker_client.volumes.list(filters={"name": volume}):
            if vol.name == volume:
                engine.remove_labelled(docker_client, run_id)
                vol.remove(force=True)
