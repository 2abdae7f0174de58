"""Properties of the parsers and of rendering, over inputs hypothesis makes up.

- The matrix and lock parsers either accept an input or refuse it with a ConfigError: no other
  exception, whatever the YAML or JSON holds.
- Whatever they accept renders to a Dockerfile with exactly the instructions and labels of an
  ordinary cell of the same kind: no accepted value can add an instruction, a label, an ENV
  or a line (read back with dockerfile-parse, as buildkit reads the file: one instruction per
  line, a backslash continues it, a quote or newline in a value ends it).
"""
from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from builder import render
from builder.errors import ConfigError
from builder.lock import Lock, load_lock, parse_lock
from builder.matrix import PLATFORMS, parse_matrix

ROOT = Path(__file__).resolve().parents[2]
LOCK = load_lock(ROOT / "images" / "lock.json")
LOCK_JSON = json.loads((ROOT / "images" / "lock.json").read_text())
ENV = render.environment(ROOT / "templates")
MATRIX_PATH = Path("matrix.yaml")
LOCK_PATH = Path("lock.json")

# What breaks out of a Dockerfile line or quote, or out of a shell word: line breaks of every
# kind Python or Docker knows, quotes, escapes, substitutions, comment and key=value marks.
HOSTILE = "\n\r\x0b\x0c\x85\u2028\t \\\"'$`(){};#=&|<>/.:-_@+"
hostile_text = st.text(alphabet=st.sampled_from(HOSTILE) | st.characters(codec="utf-8"), max_size=40)
go_like = st.from_regex(r"1\.(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2}))?", fullmatch=True)
# A valid-looking value with something appended or prepended: what slips past a lax regex.
near = st.tuples(st.sampled_from(["", "\n", " ", "\\", '"']), go_like | st.sampled_from(
    ["slim", "debian", "bookworm", "debian:bookworm-slim", "linux/amd64", "git"]),
    st.sampled_from(["", "\n", "\n ", " ", "\r", '"', "\\", "\nRUN id", "$(id)", "\x00"])).map("".join)
anything = st.one_of(hostile_text, near, st.integers(), st.floats(allow_nan=False), st.booleans(),
                     st.none(), st.lists(near, max_size=3))


def structure(dockerfile: str) -> tuple:
    """What a Dockerfile does, as buildkit reads it: the instruction sequence, the label keys,
    the ENV keys, the stages' FROM lines, and how many lines it has."""
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.encode()))
    instructions = tuple(i["instruction"] for i in parser.structure)
    env_keys = tuple(sorted(parser.envs))
    return instructions, tuple(sorted(parser.labels)), env_keys, len(dockerfile.split("\n"))


BASELINE = {cell.variant.kind: structure(render.render_cell(ENV, cell, LOCK).files["Dockerfile"])
            for cell in parse_matrix((ROOT / "images" / "matrix.yaml").read_text(), MATRIX_PATH).cells()
            if cell.go == "1.22" and cell.platform == "linux/amd64"}


def lock_for(go_versions) -> Lock:
    """The project's lock, its 1.22 release standing for every version of a made-up matrix."""
    release = LOCK.go["1.22"]
    return Lock(go={v: release for v in go_versions}, path=LOCK_PATH)


def assert_renders_as_an_ordinary_cell(cells, lock) -> None:
    for cell in cells:
        try:
            dockerfile = render.render_cell(ENV, cell, lock).files["Dockerfile"]
        except ConfigError:
            continue  # refused while rendering: one line, nothing written
        assert_no_more_than(structure(dockerfile), BASELINE[cell.variant.kind], dockerfile)


def assert_no_more_than(got: tuple, baseline: tuple, dockerfile: str) -> None:
    """The same instructions and ENV keys as the baseline, no label it lacks, and no line more
    (a label the lock has no value for, org.opencontainers.image.created, is left out, with
    its line)."""
    instructions, labels, env_keys, lines = got
    assert (instructions, env_keys) == baseline[0::2], dockerfile
    assert set(labels) <= set(baseline[1]), dockerfile
    assert lines == baseline[3] - len(set(baseline[1]) - set(labels)), dockerfile


variant = st.fixed_dictionaries(
    {"kind": st.sampled_from(["debian", "slim"]) | anything},
    optional={"base": near | anything, "packages": st.lists(near | hostile_text, max_size=3) | anything,
              "description": hostile_text | anything},
)
matrix_data = st.fixed_dictionaries({
    "go": st.lists(go_like | near | anything, min_size=1, max_size=3) | anything,
    "platforms": st.lists(st.sampled_from(PLATFORMS) | near, min_size=1, max_size=2) | anything,
    "variants": st.dictionaries(st.sampled_from(["slim", "bookworm"]) | near | hostile_text, variant,
                                min_size=1, max_size=2) | anything,
}, optional={"extra": anything})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrix_data)
@example({"go": ["1.22\n"], "platforms": ["linux/amd64"], "variants": {"slim": {"kind": "slim"}}})
@example({"go": ["1.22"], "platforms": ["linux/amd64"], "variants": {"slim\n": {"kind": "slim"}}})
@example({"go": ["1.22"], "platforms": ["linux/amd64"],
          "variants": {"b": {"kind": "debian", "base": "debian:bookworm-slim\n"}}})
@example({"go": ["1.22"], "platforms": ["linux/amd64"],
          "variants": {"b": {"kind": "debian", "packages": ["git\n"]}}})
def test_an_accepted_matrix_renders_no_extra_instruction(data):
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        matrix = parse_matrix(text, MATRIX_PATH)
    except ConfigError as exc:
        assert "\n" not in exc.message.strip(), exc.message  # one line
        return
    assert_renders_as_an_ordinary_cell(matrix.cells(), lock_for(matrix.go))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_the_matrix_parser_refuses_any_text_with_a_config_error_only(text):
    try:
        parse_matrix(text, MATRIX_PATH)
    except ConfigError:
        pass


RELEASE_FIELDS = ("version", "source", "index", "released")
FILE_FIELDS = ("url", "sha256", "filename", "size", "format")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(RELEASE_FIELDS + FILE_FIELDS), near | anything),
                min_size=1, max_size=3))
@example([("version", "1.22.10\n")])
@example([("sha256", LOCK.go["1.22"].files["amd64"].sha256 + "\n")])
@example([("url", "https://x.example/go.tgz\nRUN id")])
@example([("url", "https://x.example/go.tgz\n")])
@example([("filename", "go.tgz\n")])
@example([("released", "2024-12-03\n")])
def test_an_accepted_lock_renders_no_extra_instruction(edits):
    data = copy.deepcopy(LOCK_JSON)
    for name, value in edits:
        where = data["go"]["1.22"] if name in RELEASE_FIELDS else data["go"]["1.22"]["files"]["amd64"]
        where[name] = value
    try:
        lock = parse_lock(json.dumps(data), LOCK_PATH)
    except ConfigError as exc:
        assert "\n" not in exc.message.strip(), exc.message
        return
    cells = [c for c in parse_matrix((ROOT / "images" / "matrix.yaml").read_text(), MATRIX_PATH).cells()
             if c.go == "1.22" and c.platform == "linux/amd64"]
    assert_renders_as_an_ordinary_cell(cells, lock)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.text(max_size=10), children, max_size=3), max_leaves=12))
def test_the_lock_parser_refuses_any_json_with_a_config_error_only(data):
    for doc in (data, {"schema": 1, "go": data}, {"schema": 1, "go": {"1.22": data}}):
        try:
            parse_lock(json.dumps(doc), LOCK_PATH)
        except ConfigError:
            pass


def test_the_structure_sees_an_injected_instruction():
    """The comparison can fail: a value carrying a newline and an instruction shows up."""
    cell = next(c for c in parse_matrix((ROOT / "images" / "matrix.yaml").read_text(), MATRIX_PATH).cells()
                if c.variant.kind == "slim")
    dockerfile = render.render_cell(ENV, cell, LOCK).files["Dockerfile"]
    assert structure(dockerfile) == BASELINE["slim"]
    injected = dockerfile.replace("WORKDIR /go", "WORKDIR /go\nRUN id", 1)
    assert structure(injected) != BASELINE["slim"]
    labelled = dockerfile.replace('io.gobuild.cell="', 'evil="x" io.gobuild.cell="', 1)
    assert structure(labelled) != BASELINE["slim"]


if __name__ == "__main__":
    pytest.main([__file__])
