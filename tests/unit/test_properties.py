"""Properties of the parsers and of rendering, over inputs hypothesis makes up.

Each property starts from a valid document (a small matrix, the project's lock) and changes ONE
field: to another valid value (most examples, so that they reach the renderer, and the test
counts that they do), to a valid value with something hostile around it (what slips past a lax
regex: a trailing newline, a quote, `$(id)`), or to hostile text or another type. Then:

- the parser accepts it or refuses it with a one-line ConfigError, nothing else;
- an accepted value holds no character that could end a Dockerfile line, a quoted label value
  or a shell word (the oracle below is simpler than the parsers' regexes, and independent of
  them): the parser refused what it must refuse, whether or not rendering would have;
- an accepted document renders to a Dockerfile with exactly the instructions and labels of an
  ordinary cell of the same kind (read back with dockerfile-parse, as buildkit reads it), and
  every Debian package is one shell word of the install loop.

No @example is needed for the regex bugs: the generation finds them (derandomized, no example
database: the same generated examples on every run, see SETTINGS).
"""
from __future__ import annotations

import copy
import io
import json
import shlex
from collections import Counter
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder import render
from builder.errors import ConfigError
from builder.lock import Lock, load_lock, parse_lock
from builder.matrix import parse_matrix
from builder.prune import GROUP_NAMES as PRUNE_GROUPS

ROOT = Path(__file__).resolve().parents[2]
LOCK = load_lock(ROOT / "images" / "lock.json")
LOCK_JSON = json.loads((ROOT / "images" / "lock.json").read_text())
ENV = render.environment(ROOT / "templates")
MATRIX_PATH = Path("matrix.yaml")
LOCK_PATH = Path("lock.json")
EXAMPLES = 80  # per field
# derandomize: the same examples on every run (hypothesis's choices adapt to what it saw, so
# the share that renders varied from 51% to 90% between runs); database=None: a run can neither
# pass nor fail on a replayed example.
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# What breaks out of a Dockerfile line or quote, or out of a shell word: line breaks of every
# kind Python or Docker knows, quotes, escapes, substitutions, comment and key=value marks.
HOSTILE = "\n\r\x0b\x0c\x85\u2028\t \\\"'$`(){};#=&|<>/.:-_@+"
hostile_text = st.text(alphabet=st.sampled_from(HOSTILE) | st.characters(codec="utf-8"), max_size=40)
# Around a valid value: what a regex that lacks an anchor, or lets a quote, a space or a line
# break through, accepts. (The bare trailing newline a `$` misses has its own share.)
AROUND = ["\n ", " ", "\r", '"', "\\", "\nRUN id", "$(id)", ";id", "\x00", "\u2028"]
# A URL may hold these (RFC 3986 sub-delims, a fragment): the lock accepts them, and rendering
# refuses the `$` a double-quoted Dockerfile value would expand (render._dq).
URL_CHARS = "$&()*+,;=#"
# BACKGROUND: each example also sets a field no cell renders (slim's description, the arm64
# file's size) to a random valid value. Without it, a field with few valid values (a platform,
# a kind) gives few distinct documents: hypothesis runs each input once, so nearly all of its
# examples would be the hostile ones, and the share that renders would say nothing.


def field_values(valid: st.SearchStrategy) -> st.SearchStrategy:
    """12 examples in 16 a valid value; 2 in 16 a valid value and a bare newline (what a `$`
    lets through); 1 in 16 a valid value with something else hostile after it; else something
    hostile before it, hostile text, or another type."""
    words = valid.map(str)
    newline = words.map(lambda v: v + "\n")
    after = st.tuples(words, st.sampled_from(AROUND)).map("".join)
    before = st.tuples(st.sampled_from(AROUND), words).map("".join)
    other = st.one_of(before, hostile_text, st.integers(), st.floats(allow_nan=False), st.booleans(),
                      st.none(), st.lists(st.text(max_size=5), max_size=2))
    return st.integers(0, 15).flatmap(
        lambda r: valid if r < 12 else newline if r < 14 else after if r < 15 else other)


def safe(value, allowed: str = "") -> bool:
    """A value that cannot end a Dockerfile line, a double-quoted label value or a shell word:
    printable, no space of any kind, no quote, backslash, substitution or shell operator."""
    return isinstance(value, str) and value != "" and all(
        c.isprintable() and not c.isspace() and (c not in "\"'\\$`;&|<>(){}#" or c in allowed)
        for c in value)


def structure(dockerfile: str) -> tuple:
    """What a Dockerfile does, as buildkit reads it: the instruction sequence, the label keys,
    the ENV keys, and how many lines it has."""
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.encode()))
    instructions = tuple(i["instruction"] for i in parser.structure)
    return instructions, tuple(sorted(parser.labels)), tuple(sorted(parser.envs)), len(dockerfile.split("\n"))


BASELINE = {cell.variant.kind: structure(render.render_cell(ENV, cell, LOCK).files["Dockerfile"])
            for cell in parse_matrix((ROOT / "images" / "matrix.yaml").read_text(), MATRIX_PATH).cells()
            if cell.go == "1.22" and cell.platform == "linux/amd64"}


def lock_for(go_versions) -> Lock:
    """The project's lock, its 1.22 release standing for every version of a made-up matrix."""
    release = LOCK.go["1.22"]
    return Lock(go={v: release for v in go_versions}, path=LOCK_PATH)


def install_loop_words(dockerfile: str) -> list[str] | None:
    """The words of `for p in ...; do` in the install RUN line (None: no such line)."""
    for line in dockerfile.split("\n"):
        if line.strip().startswith("for p in ") and line.rstrip().endswith("; do \\"):
            return shlex.split(line.strip()[len("for p in "):-len("; do \\")])
    return None


def renders_as_an_ordinary_cell(cell, lock) -> bool:
    """Render cell; assert it has no more structure than an ordinary cell of its kind and that
    each package is one shell word. False when rendering refused it (one line, nothing written)."""
    try:
        dockerfile = render.render_cell(ENV, cell, lock).files["Dockerfile"]
    except ConfigError as exc:
        assert "\n" not in exc.message.strip(), exc.message
        return False
    instructions, labels, env_keys, lines = structure(dockerfile)
    baseline = BASELINE[cell.variant.kind]
    assert (instructions, env_keys) == baseline[0::2], dockerfile
    assert set(labels) <= set(baseline[1]), dockerfile
    # a label the lock has no value for (image.created) is left out, with its line
    assert lines == baseline[3] - len(set(baseline[1]) - set(labels)), dockerfile
    if cell.variant.kind == "debian":
        assert install_loop_words(dockerfile) == list(cell.variant.packages), dockerfile
    return True


# --- the matrix: a small valid one, one field changed
BASE_MATRIX = {
    "go": ["1.22"],
    "platforms": ["linux/amd64"],
    "variants": {
        "bookworm": {"kind": "debian", "base": "debian:bookworm-slim",
                     "packages": ["ca-certificates", "git"], "description": "Debian with cgo"},
        "slim": {"kind": "slim", "prune": ["docs", "tests"], "description": "pruned"},
    },
}
go_like = st.from_regex(r"1\.(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2}))?", fullmatch=True)
name_like = st.from_regex(r"[a-z][a-z0-9]{0,12}", fullmatch=True)
image_like = st.from_regex(r"[a-z0-9]{1,10}(/[a-z0-9]{1,10})?(:[a-z0-9][a-z0-9._-]{0,10})?", fullmatch=True)
package_like = st.from_regex(r"[a-z0-9][a-z0-9+.-]{1,20}", fullmatch=True)
line_like = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30)


def set_variant_name(doc, value):
    value = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)  # a key
    doc["variants"] = {value if k == "bookworm" else k: v for k, v in doc["variants"].items()}


# field -> (the valid values, how the value goes in, how to find it in the parsed matrix,
#           the characters the oracle allows there besides the safe ones)
MATRIX_FIELDS = {
    "go": (go_like, lambda d, v: d.__setitem__("go", [v]), lambda m: m.go[0]),
    "platform": (st.sampled_from(["linux/amd64", "linux/arm64"]),
                 lambda d, v: d.__setitem__("platforms", [v]), lambda m: m.platforms[0]),
    "variant-name": (name_like, set_variant_name, lambda m: m.variants[0].name),
    "kind": (st.sampled_from(["debian", "slim"]),
             lambda d, v: d["variants"]["bookworm"].__setitem__("kind", v), lambda m: m.variants[0].kind),
    "base": (image_like, lambda d, v: d["variants"]["bookworm"].__setitem__("base", v),
             lambda m: m.variants[0].base),
    "package": (package_like, lambda d, v: d["variants"]["bookworm"]["packages"].__setitem__(1, v),
                lambda m: m.variants[0].packages[1]),
    "prune": (st.sampled_from(PRUNE_GROUPS), lambda d, v: d["variants"]["slim"]["prune"].__setitem__(0, v),
              lambda m: m.variants[1].prune[0] if m.variants[1].prune else "docs"),
}


@pytest.mark.parametrize("name", [*MATRIX_FIELDS, "description", "extra-key"])
def test_a_matrix_with_one_hostile_field_is_refused_or_renders_no_extra_instruction(name):
    seen = Counter()

    @SETTINGS
    @given(field_values(MATRIX_FIELDS[name][0] if name in MATRIX_FIELDS else line_like), line_like)
    def one(value, background):
        doc = copy.deepcopy(BASE_MATRIX)
        doc["variants"]["slim"]["description"] = background  # distinct documents (see BACKGROUND)
        if name == "description":
            doc["variants"]["bookworm"]["description"] = value
        elif name == "extra-key":
            doc[value if isinstance(value, str) else str(value)] = 1
        else:
            MATRIX_FIELDS[name][1](doc, value)
        seen["examples"] += 1
        try:
            matrix = parse_matrix(yaml.safe_dump(doc, allow_unicode=True), MATRIX_PATH)
        except ConfigError as exc:
            assert "\n" not in exc.message.strip(), exc.message  # one line
            return
        assert name != "extra-key", f"unknown key {value!r} accepted"
        if name == "description":
            assert "\n" not in value and "\r" not in value, repr(value)
        else:
            assert safe(MATRIX_FIELDS[name][2](matrix)), f"{name} {value!r} accepted"
        rendered = [renders_as_an_ordinary_cell(c, lock_for(matrix.go)) for c in matrix.cells()]
        seen["rendered"] += all(rendered)

    one()
    if name != "extra-key":  # every extra key is refused: nothing to render
        assert seen["rendered"] > seen["examples"] / 2, seen  # most examples reached the renderer


# --- the lock: the project's, one field of the 1.22 release or its amd64 file changed
RELEASE_FIELDS = {
    "version": st.from_regex(r"1\.22\.(0|[1-9][0-9]{0,2})", fullmatch=True),
    "source": st.sampled_from(["go.dev", "mirror", "pypi"]),
    "index": st.from_regex(r"https://[a-z]{1,10}\.example/[a-z/]{0,20}(\?mode=json&include=all)?",
                           fullmatch=True),
    "released": st.dates().map(lambda d: d.isoformat()),
}
FILE_FIELDS = {
    "url": st.from_regex(r"https://[a-z]{1,10}\.example(:[0-9]{2,4})?/[A-Za-z0-9_./-]{1,40}", fullmatch=True),
    "sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    "filename": st.from_regex(r"[A-Za-z0-9_.+-]{1,40}", fullmatch=True),
    "size": st.integers(0, 2**40),
    "format": st.sampled_from(["tar.gz", "wheel"]),
    "signature": st.sampled_from(["verified", "unavailable"]),
    "signature_url": st.from_regex(r"https://[a-z]{1,10}\.example/[a-z0-9./]{1,20}\.asc", fullmatch=True),
}
LOCK_CELLS = [c for c in parse_matrix((ROOT / "images" / "matrix.yaml").read_text(), MATRIX_PATH).cells()
              if c.go == "1.22" and c.platform == "linux/amd64"]


@pytest.mark.parametrize("name", [*RELEASE_FIELDS, *FILE_FIELDS])
def test_a_lock_with_one_hostile_field_is_refused_or_renders_no_extra_instruction(name):
    seen = Counter()

    @SETTINGS
    @given(field_values({**RELEASE_FIELDS, **FILE_FIELDS}[name]), st.integers(0, 2**40))
    def one(value, background):
        data = copy.deepcopy(LOCK_JSON)
        data["go"] = {"1.22": data["go"]["1.22"]}
        release = data["go"]["1.22"]
        release["files"]["arm64"]["size"] = background  # distinct documents (see BACKGROUND)
        (release if name in RELEASE_FIELDS else release["files"]["amd64"])[name] = value
        seen["examples"] += 1
        try:
            lock = parse_lock(json.dumps(data), LOCK_PATH)
        except ConfigError as exc:
            assert "\n" not in exc.message.strip(), exc.message
            return
        got = getattr(lock.go["1.22"] if name in RELEASE_FIELDS else lock.go["1.22"].files["amd64"], name)
        if got is None and name in ("signature", "signature_url", "released"):
            pass  # a source that signs nothing, or does not tell the date
        elif name == "size":
            assert isinstance(got, int) and not isinstance(got, bool) and got >= 0, repr(value)
        else:
            assert safe(got, allowed=URL_CHARS if "url" in name or name == "index" else ""), \
                f"{name} {value!r} accepted"
        rendered = [renders_as_an_ordinary_cell(c, lock) for c in LOCK_CELLS]  # each, no short cut
        seen["rendered"] += all(rendered)

    one()
    assert seen["rendered"] > seen["examples"] / 2, seen


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_the_matrix_parser_refuses_any_text_with_a_config_error_only(text):
    try:
        parse_matrix(text, MATRIX_PATH)
    except ConfigError:
        pass


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


def test_the_checks_see_an_injected_instruction_label_and_shell_word():
    """The comparison can fail: an extra RUN line, an extra label, a package that is two words."""
    cells = {c.variant.kind: c for c in LOCK_CELLS}
    dockerfile = render.render_cell(ENV, cells["slim"], LOCK).files["Dockerfile"]
    assert structure(dockerfile) == BASELINE["slim"]
    assert structure(dockerfile.replace("WORKDIR /go", "WORKDIR /go\nRUN id", 1)) != BASELINE["slim"]
    assert structure(dockerfile.replace('io.gobuild.cell="', 'evil="x" io.gobuild.cell="', 1)) != BASELINE["slim"]
    debian = render.render_cell(ENV, cells["debian"], LOCK).files["Dockerfile"]
    assert install_loop_words(debian) == list(cells["debian"].variant.packages)
    assert install_loop_words(debian.replace("for p in ", "for p in git;id ", 1)) != list(
        cells["debian"].variant.packages)
    assert not safe("git\n") and not safe("a b") and not safe("$(id)") and safe("libc6-dev")


if __name__ == "__main__":
    pytest.main([__file__])
