"""Slim made from files: the matrix's prune lists, the userland tree, a Dockerfile with no RUN,
and a plan that needs no Debian base."""
import os
import stat
from pathlib import Path

import pytest

from builder import build, render, userland
from builder.errors import BuildError, ConfigError
from builder.lock import load_lock
from builder.matrix import Selection, load_matrix, parse_matrix, select
from builder.prune import GROUP_NAMES

MATRIX = """
go: ["1.22"]
platforms: [linux/amd64, linux/arm64]
variants:
  bookworm: {kind: debian, base: "debian:bookworm-slim"}
  slim: {kind: slim}
  lean: {kind: slim, prune: [symbols, docs]}
"""


def parse(text):
    return parse_matrix(text, Path("m.yaml"))


def test_slim_prunes_every_group_unless_it_lists_its_own():
    by_name = {v.name: v for v in parse(MATRIX).variants}
    assert by_name["slim"].prune == GROUP_NAMES
    assert by_name["bookworm"].prune == ()
    assert by_name["lean"].prune == ("docs", "symbols")  # in the groups' order


@pytest.mark.parametrize("prune, message", [
    ("[symbol]", "unknown group 'symbol' (did you mean 'symbols'?)"),
    ("docs", "must be a list of group names"),
    ("[1]", "must be a list of group names"),
])
def test_a_bad_prune_list_is_one_line_naming_the_groups(prune, message):
    with pytest.raises(ConfigError) as exc:
        parse(MATRIX.replace("prune: [symbols, docs]", f"prune: {prune}"))
    assert message in exc.value.message and "\n" not in exc.value.message


@pytest.fixture
def contexts(root):
    matrix = load_matrix(root / "images" / "matrix.yaml")
    lock = load_lock(root / "images" / "lock.json")
    cells = select(matrix, Selection(variants=("slim",), platforms=("linux/amd64", "linux/arm64")))
    return render.render_all(render.environment(), cells, lock), lock


def test_every_slim_dockerfile_is_copy_only_from_scratch_with_its_prune_label(contexts):
    ctxs, _ = contexts
    assert ctxs
    for ctx in ctxs:
        lines = ctx.files["Dockerfile"].splitlines()
        assert not [x for x in lines if x.lstrip().upper().startswith(("RUN", "ARG BASE"))], ctx.cell.id
        assert [x for x in lines if x.startswith("FROM")] == ["FROM scratch"]
        assert "COPY rootfs/ /" in lines
        assert f'io.gobuild.prune="{",".join(GROUP_NAMES)}"' in ctx.files["Dockerfile"]


class NoBase:
    """An engine with no images at all: a slim plan must not ask for a base."""

    class images:
        @staticmethod
        def get(ref):
            import docker.errors
            raise docker.errors.ImageNotFound(ref)

        @staticmethod
        def pull(*a, **k):
            raise AssertionError("a slim plan pulled a base image")


def test_a_slim_plan_needs_no_debian_base(contexts, tmp_path, monkeypatch):
    ctxs, lock = contexts
    monkeypatch.setattr(build.engine, "image_labels", lambda client, tag: None)
    seen = []

    def fake_ensure(cache_root, suite, arch, mirror):
        seen.append((suite, arch))
        return userland.Userland(folder=tmp_path, applets=("sh",), digest=arch * 8)

    monkeypatch.setattr(build.userland, "ensure", fake_ensure)
    planned = build.plan(NoBase(), ctxs, lock, cache_root=tmp_path)
    assert {p.base_ref for p in planned} == {""}
    assert sorted(set(seen)) == [("bookworm", "amd64"), ("bookworm", "arm64")]
    # the userland is an input: another busybox is another image
    one = {p.cell.id: p.digest for p in planned}
    monkeypatch.setattr(build.userland, "ensure", lambda *a: userland.Userland(
        folder=tmp_path, applets=("sh",), digest="other"))
    assert all(one[p.cell.id] != p.digest for p in build.plan(NoBase(), ctxs, lock, cache_root=tmp_path))


def test_buildx_argv_without_a_base_passes_no_build_arg():
    argv = build.buildx_argv(Path("/ctx"), "t", "linux/arm64", "", "d")
    assert not any(a.startswith("BASE=") for a in argv) and "--build-arg" not in argv


def busybox_like(names):
    return b"\x7fELF junk\x00" + b"\x00".join(n.encode() for n in names) + b"\x00\x00more"


def test_applet_names_are_read_from_the_table_without_running_busybox():
    names = ["[", "[[", "ash", "busybox", "cat", "ls", "sh", "wget"] + [f"x{i:02}" for i in range(50)]
    got = userland.applet_names(busybox_like(sorted(names)))
    assert got == tuple(n for n in sorted(names) if n != "busybox")


@pytest.mark.parametrize("data", [
    b"\x7fELF no table at all",
    busybox_like(["[", "[[", "zz", "aa"] + [f"x{i:02}" for i in range(50)]),  # not sorted
    busybox_like(["[", "[["] + [f"x{i:02}" for i in range(50)]),  # no sh
])
def test_an_unreadable_applet_table_is_a_build_error(data):
    with pytest.raises(BuildError, match="report it with the package version"):
        userland.applet_names(data)


def test_the_ca_bundle_is_every_certificate_in_name_order(tmp_path):
    for i in range(60):
        (tmp_path / "mozilla").mkdir(exist_ok=True)
        (tmp_path / "mozilla" / f"c{i:02}.crt").write_text(f"cert {i}")
    bundle = userland.ca_bundle(tmp_path)
    assert bundle.splitlines() == [f"cert {i}" for i in range(60)]
    with pytest.raises(BuildError, match="only 0 certificates"):
        userland.ca_bundle(tmp_path / "none")


def test_the_context_tree_has_image_modes_fixed_mtimes_and_applet_links(tmp_path):
    land_dir = tmp_path / "land"
    land_dir.mkdir()
    (land_dir / "busybox").write_bytes(b"bb")
    (land_dir / "ca-certificates.crt").write_text("certs")
    land = userland.Userland(folder=land_dir, applets=("sh", "ls", "[["), digest="d")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    userland.write_tree(ctx, land, "root:x:0:0::/:/bin/sh\n", "root:x:0:\n")
    root = ctx / "rootfs"
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((root / "bin/busybox").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "etc/passwd").stat().st_mode) == 0o644
    assert os.readlink(root / "bin/sh") == "busybox" and os.readlink(root / "bin/[[") == "busybox"
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_text() == "certs"
    assert (ctx / "gopher/go/bin").is_dir() and (ctx / "gopher/home/gopher").is_dir()
    for top in (root, ctx / "gopher"):
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                assert os.lstat(os.path.join(dirpath, name)).st_mtime == userland.MTIME


def test_extract_argv_unpacks_without_running_anything():
    argv = userland.extract_argv("bookworm", "arm64", Path("/o"), "http://mirror/debian")
    assert argv[:3] == ["mmdebstrap", "--variant=extract", "--architectures=arm64"]
    assert "--include=busybox-static,ca-certificates" in argv
    assert argv[-3:] == ["bookworm", "/o", "http://mirror/debian"]
