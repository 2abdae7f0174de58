"""What every command reads (matrix, lock, templates, selection), the one rule that finds them,
and the options several commands share.

The rule: walk up from the current directory to the first folder holding
``images/matrix.yaml``: that is the project folder, and the matrix (``images/matrix.yaml``),
the lock (``images/lock.json``) and the templates (``templates/``) all come from it. A project
may keep only its own matrix: when it has no ``templates/`` folder, the packaged template is
used, and ``--help`` and ``gobuild doctor`` say so. With no project folder above the current
directory, everything comes from the packaged defaults (``builder/data``,
``builder/templates``). ``--matrix``, ``--lock`` and ``--templates`` win over the rule, each on
its own; ``--matrix`` alone keeps its lock beside it.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import click

from .errors import ConfigError
from .matrix import PLATFORMS, Selection

PACKAGE = Path(__file__).resolve().parent
PACKAGED_MATRIX = PACKAGE / "data" / "matrix.yaml"
PACKAGED_TEMPLATES = PACKAGE / "templates"
MATRIX_IN_PROJECT = Path("images") / "matrix.yaml"
LOCK_IN_PROJECT = Path("images") / "lock.json"
TEMPLATES_IN_PROJECT = Path("templates")


def find_project(start: Path) -> Path | None:
    """The nearest folder at or above start holding images/matrix.yaml, or None."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / MATRIX_IN_PROJECT).is_file():
            return folder
    return None


def _shown(path: Path, cwd: Path) -> Path:
    """Paths inside the current directory stay relative, as the user typed them before."""
    try:
        return path.relative_to(cwd)
    except ValueError:
        return path


@dataclass(frozen=True, kw_only=True)
class Defaults:
    """Where the matrix, lock and templates come from when no option names them."""

    project: Path | None  # None: the packaged defaults
    matrix: Path
    lock: Path
    templates: Path

    @property
    def source(self) -> str:
        if self.project is None:
            return f"the packaged defaults in {PACKAGE} (no images/matrix.yaml above the current directory)"
        note = "" if self.templates_from_project else " (no templates/ there: the packaged template)"
        return f"the project folder {self.project}{note}"

    @property
    def templates_from_project(self) -> bool:
        return self.project is not None and self.templates != PACKAGED_TEMPLATES

    def as_json(self) -> dict:
        return {"project": str(self.project) if self.project else None,
                "matrix": str(self.matrix.absolute()), "lock": str(self.lock.absolute()),
                "templates": str(self.templates.absolute())}


def defaults(cwd: Path | None = None) -> Defaults:
    """Apply the rule from cwd (the current directory when None; paths are then shown relative
    to it where they can be, else absolute)."""
    here = Path(os.getcwd())
    cwd = Path(cwd or here)
    project = find_project(cwd)
    if project is None:
        return Defaults(project=None, matrix=PACKAGED_MATRIX,
                        lock=PACKAGED_MATRIX.parent / "lock.json", templates=PACKAGED_TEMPLATES)
    shown = _shown(project, here.resolve())
    templates = shown / TEMPLATES_IN_PROJECT
    has_template = (project / TEMPLATES_IN_PROJECT / "Dockerfile.j2").is_file()
    return Defaults(
        project=project, matrix=shown / MATRIX_IN_PROJECT, lock=shown / LOCK_IN_PROJECT,
        templates=templates if has_template else PACKAGED_TEMPLATES,
    )


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What every command reads: the matrix, the lock, the templates and the selection."""

    matrix_path: Path
    lock_path: Path
    templates: Path
    selection: Selection
    allow_http: bool = False  # --allow-http: plain http:// downloads off this machine

    @classmethod
    def resolve(cls, *, matrix_path: Path | None = None, lock_path: Path | None = None,
                templates: Path | None = None, selection: Selection | None = None,
                cwd: Path | None = None, allow_http: bool = False) -> Inputs:
        """Explicit paths win; the rest come from the one rule (see the module's docstring)."""
        found = defaults(cwd)
        if matrix_path is None:
            matrix_path, default_lock = found.matrix, found.lock
        else:
            default_lock = matrix_path.parent / "lock.json"
        return cls(matrix_path=matrix_path, lock_path=lock_path or default_lock,
                   templates=templates or found.templates, selection=selection or Selection(),
                   allow_http=allow_http)

    def writable(self, path: Path, option: str) -> Path:
        """path, unless it lies in the installed package (no project folder was found and no
        option named another place): gobuild never writes into its own installation."""
        if path.absolute().is_relative_to(PACKAGE):
            raise ConfigError(f"no project folder here (no images/matrix.yaml above {os.getcwd()}): "
                              f"run in a gobuild project, or pass {option}")
        return path

    def matrix(self):
        from .matrix import load_matrix

        return load_matrix(self.matrix_path)

    def cells(self):
        from .matrix import select

        return select(self.matrix(), self.selection)

    def lock(self):
        from .lock import load_lock

        return load_lock(self.lock_path, allow_http=self.allow_http)


def platform_callback(ctx, param, values):
    from .matrix import parse_platform

    return tuple(parse_platform(v) for v in values)  # ConfigError: one line, exit 2


class DefaultFromProject(click.Option):
    """An option whose help names the path the rule picks, computed when help is shown (the
    current directory decides it, not the place gobuild was installed from)."""

    def __init__(self, *args, pick, **kw):
        super().__init__(*args, **kw)
        self.pick = pick

    def get_help_record(self, ctx):
        record = super().get_help_record(ctx)
        if record is None:
            return None
        name, text = record
        found = defaults()
        where = "the project folder" if found.project else "the packaged default"
        return name, f"{text} [default: {Path(self.pick(found)).absolute()}, {where}]"


def inputs_options(func):
    """--matrix, --lock, --templates and the selectors, shared by every command."""

    @click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False, path_type=Path),
                  cls=DefaultFromProject, pick=lambda d: d.matrix,
                  help="Matrix file (else images/matrix.yaml of the nearest folder above the "
                       "current directory that has one, else the packaged matrix).")
    @click.option("--lock", "lock_path", type=click.Path(dir_okay=False, path_type=Path),
                  cls=DefaultFromProject, pick=lambda d: d.lock,
                  help="Lock file (else lock.json beside the matrix).")
    @click.option("--templates", type=click.Path(file_okay=False, path_type=Path),
                  cls=DefaultFromProject, pick=lambda d: d.templates,
                  help="Folder holding Dockerfile.j2 (else templates/ of that project folder, "
                       "else the packaged template).")
    @click.option("--go", "go", multiple=True, metavar="VERSION",
                  help="Go version(s) to select; repeatable; globs allowed (--go '1.2*'); 'latest' is the newest.")
    @click.option("--platform", "platforms", multiple=True, callback=platform_callback,
                  metavar="OS/ARCH",
                  help=f"Platform(s) to select, repeatable: {', '.join(PLATFORMS)} [default: "
                       "every platform of the matrix].")
    @click.option("--variant", "variants", multiple=True, metavar="NAME",
                  help="Variant(s) to select: bookworm, slim.")
    @click.option("--allow-http", is_flag=True, envvar="GOBUILD_ALLOW_HTTP",
                  help="Accept plain http:// download URLs (in the lock, --mirror) off this "
                       "machine; loopback addresses always are. file:// never is.")
    @functools.wraps(func)
    def wrapper(matrix_path, lock_path, templates, go, platforms, variants, allow_http, **kw):
        inputs = Inputs.resolve(
            matrix_path=matrix_path, lock_path=lock_path, templates=templates,
            selection=Selection(go=go, platforms=platforms, variants=variants),
            allow_http=allow_http,
        )
        if inputs.selection != Selection():
            # A selector that matches nothing is refused here, before any command asks an
            # engine (run, shell and bench ask it first for the defaults of unset selectors).
            inputs.cells()
        kw["inputs"] = inputs
        return func(**kw)

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


def emit(data, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def hosts_options(func):
    """--host (repeatable) and --config: the Docker hosts of a fleet (builder/hosts.py). Goes
    below @inputs_options (it reads the matrix's folder for gobuild.yaml); passes hosts=()
    when none is named, which means the one engine gobuild always used."""

    @click.option("--host", "host_specs", multiple=True, metavar="HOST",
                  help="A Docker host to use, repeatable: local, unix://PATH, tcp://ADDR:PORT, "
                       "ssh://USER@HOST, or a Docker context name; LABEL=ENDPOINT names it; options "
                       "follow a comma: pi5=tcp://ADDR:2376,tls=DIR,platforms=linux/arm64+linux/arm/v7,"
                       "timeout=30 (platforms: what it builds natively). "
                       "[default: the hosts: of gobuild.yaml beside the matrix, else the local engine]")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="gobuild.yaml whose hosts: section names the hosts [default: gobuild.yaml "
                       "beside the matrix, when there is one].")
    @functools.wraps(func)
    def wrapper(host_specs, config_path, **kw):
        from .hosts import resolve

        inputs = kw.get("inputs")  # doctor has none: the matrix the rule finds
        beside = (inputs.matrix_path if inputs is not None else defaults().matrix).parent
        kw["hosts"] = resolve(host_specs, config_path, beside)
        return func(**kw)

    return wrapper
