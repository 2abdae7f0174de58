"""Pure rendering: matrix cell + locked release + template -> the files of a build context.

Rendering twice gives byte-identical files; ``check`` compares them with what is on disk.
"""
from __future__ import annotations

import difflib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .errors import ConfigError
from .fsutil import atomic_write_text
from .lock import Lock, validate_release
from .matrix import Cell

TEMPLATE = "Dockerfile.j2"
GO_SOURCE = "https://go.googlesource.com/go"
SLIM_UID = 1000
CELL_DIR_RE = re.compile(r"^go1\.\d+(\.\d+)?-[a-z][a-z0-9]*-linux-[a-z0-9]+(-v[0-9]+)?$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\"\\$`]")


def _dq(value: object) -> str:
    """A double-quoted Dockerfile value; anything that could end the quote is refused."""
    text = str(value)
    if _UNSAFE.search(text):
        raise ConfigError(f"value {text[:60]!r} has a character that cannot go into a Dockerfile")
    return f'"{text}"'


def package_templates() -> Path:
    return Path(__file__).resolve().parent / "templates"


def environment(templates: Path | None = None) -> jinja2.Environment:
    folder = templates or package_templates()
    if not (folder / TEMPLATE).is_file():
        raise ConfigError(f"no {TEMPLATE} in {folder}: pass --templates DIR holding one")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["dq"] = _dq
    return env


@dataclass(frozen=True, kw_only=True)
class Context:
    cell: Cell
    files: dict[str, str]  # file name -> content


def render_cell(env: jinja2.Environment, cell: Cell, lock: Lock) -> Context:
    release = lock.release(cell)
    validate_release(f"{lock.path}: go {cell.go}", release)
    artifact = lock.artifact(cell)
    try:
        dockerfile = env.get_template(TEMPLATE).render(
            cell=cell, variant=cell.variant, release=release, artifact=artifact,
            go_source=GO_SOURCE, uid=SLIM_UID,
        )
    except jinja2.TemplateError as exc:
        raise ConfigError(f"{TEMPLATE}: {exc}: fix the template") from None
    files = {"Dockerfile": dockerfile}
    if cell.variant.kind == "slim":
        files["passwd"] = (
            "root:x:0:0:root:/root:/bin/sh\n"
            f"gopher:x:{SLIM_UID}:{SLIM_UID}:gopher:/home/gopher:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        )
        files["group"] = f"root:x:0:\ngopher:x:{SLIM_UID}:\nnogroup:x:65534:\n"
    return Context(cell=cell, files=files)


def render_all(env: jinja2.Environment, cells: tuple[Cell, ...], lock: Lock) -> list[Context]:
    return [render_cell(env, cell, lock) for cell in cells]


def write(out: Path, contexts: list[Context], prune_stale: bool) -> list[Path]:
    """Write each context under out/<cell id>/; return the files that changed."""
    changed = []
    for ctx in contexts:
        folder = out / ctx.cell.id
        for name, content in sorted(ctx.files.items()):
            if atomic_write_text(folder / name, content):
                changed.append(folder / name)
        for extra in sorted(folder.iterdir()):
            if extra.name not in ctx.files:
                extra.unlink()
                changed.append(extra)
    if prune_stale:
        for stale in _stale_dirs(out, contexts):
            shutil.rmtree(stale)
            changed.append(stale)
    return changed


def _stale_dirs(out: Path, contexts: list[Context]) -> list[Path]:
    wanted = {ctx.cell.id for ctx in contexts}
    if not out.is_dir():
        return []
    return sorted(
        d for d in out.iterdir() if d.is_dir() and CELL_DIR_RE.match(d.name) and d.name not in wanted
    )


def check(out: Path, contexts: list[Context], whole_matrix: bool) -> str:
    """A unified diff between what is on disk and what the template renders ('' = same)."""
    diff: list[str] = []
    for ctx in contexts:
        folder = out / ctx.cell.id
        on_disk = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        for name in sorted(on_disk | set(ctx.files)):
            path = folder / name
            old = path.read_text(encoding="utf-8") if path.is_file() else ""
            new = ctx.files.get(name, "")
            diff.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True), new.splitlines(keepends=True),
                    fromfile=f"{path} (committed)", tofile=f"{path} (rendered)",
                )
            )
    if whole_matrix:
        for stale in _stale_dirs(out, contexts):
            diff.append(f"only on disk: {stale} (no such cell in the matrix)\n")
    return "".join(diff)


@dataclass(frozen=True, kw_only=True)
class Rendered:
    out: Path
    contexts: int
    diff: str = ""  # with check: what differs ('' = current)
    changed: tuple[Path, ...] = ()  # without check: the files written or removed


def render_into(cells: tuple[Cell, ...], lock: Lock, templates: Path | None, out: Path, *,
                check_only: bool, whole_matrix: bool) -> Rendered:
    """Render every cell and compare with out (check_only) or write it there; stale cell
    folders count only when the whole matrix was rendered."""
    contexts = render_all(environment(templates), cells, lock)
    if check_only:
        return Rendered(out=out, contexts=len(contexts), diff=check(out, contexts, whole_matrix))
    changed = write(out, contexts, prune_stale=whole_matrix)
    return Rendered(out=out, contexts=len(contexts), changed=tuple(changed))
