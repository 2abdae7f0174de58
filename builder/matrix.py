"""The matrix file -> frozen dataclasses, cell identifiers and the selectors every command shares.

A matrix says which Go versions, platforms and variants to build. Each combination is a Cell
with a stable identifier such as ``go1.22-slim-linux-arm64``.
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .prune import GROUP_NAMES as PRUNE_GROUPS

# linux/arm/v7 and linux/arm/v6 are the 32-bit Raspberry Pis (v6: Pi Zero and Pi 1).
PLATFORMS: tuple[str, ...] = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6")

# The one table of architecture names. Go calls them GOARCH (amd64, arm64, arm: the second part
# of a platform); the kernel's `uname -m`, Docker's `info()["Architecture"]` and manylinux wheel
# tags call the same machines x86_64, aarch64 and armv7l.
MACHINE_BY_GOARCH: dict[str, str] = {"amd64": "x86_64", "arm64": "aarch64", "arm": "armv7l"}
GOARCHES: tuple[str, ...] = tuple(MACHINE_BY_GOARCH)
# Machine name -> GOARCH; a GOARCH maps to itself (macOS and some engines report "arm64").
GOARCH_BY_MACHINE: dict[str, str] = {
    **{machine: arch for arch, machine in MACHINE_BY_GOARCH.items()},
    **{arch: arch for arch in MACHINE_BY_GOARCH},
    "armv6l": "arm", "armv8l": "arm",
}
# GOARM of the 32-bit ARM platforms: what the image's go.env sets, so that `go build` there
# makes binaries for that board (the official image once shipped the wrong default).
GOARM_BY_PLATFORM: dict[str, int] = {"linux/arm/v7": 7, "linux/arm/v6": 6}
# The Debian architecture whose packages a platform's userland comes from. armhf is ARMv7
# hard-float; Debian has no ARMv6 hard-float port, and armel (ARMv5T soft-float) runs on ARMv6
# boards, so v6 takes only a static busybox from armel (slim) and has no Debian variant.
DEBIAN_ARCH: dict[str, str] = {"linux/amd64": "amd64", "linux/arm64": "arm64",
                               "linux/arm/v7": "armhf", "linux/arm/v6": "armel"}
DEBIAN_VARIANT_PLATFORMS: tuple[str, ...] = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def platform_arch(platform: str) -> str:
    """The GOARCH of a platform: "linux/arm/v7" -> "arm"."""
    return platform.split("/")[1]


def platform_tag(platform: str) -> str:
    """The platform without its OS, as image tags and file names show it: "arm64", "arm-v7"."""
    return platform.split("/", 1)[1].replace("/", "-")


def platform_variant(platform: str) -> str | None:
    """The CPU variant of a platform ("v7" of "linux/arm/v7"), as image configs record it."""
    parts = platform.split("/")
    return parts[2] if len(parts) > 2 else None


def debian_arch(platform: str) -> str:
    """The Debian architecture of a platform's packages: "linux/arm/v7" -> "armhf"."""
    return DEBIAN_ARCH[platform]


def goarch(machine: str) -> str:
    """The GOARCH of a machine name ("x86_64" -> "amd64"); an unknown name comes back as given
    (lowercased), so that messages can show what the host said."""
    name = machine.strip().lower()
    return GOARCH_BY_MACHINE.get(name, name)


# 32-bit ARM machine names and the platform whose images run there natively. An ARMv8 core in
# 32-bit mode (armv8l) runs v7 code; a Pi Zero or Pi 1 (armv6l) runs only v6 code.
PLATFORM_BY_ARM_MACHINE: dict[str, str] = {"armv7l": "linux/arm/v7", "armv8l": "linux/arm/v7",
                                           "armv6l": "linux/arm/v6"}


def machine_platform(machine: str) -> str:
    """The platform a machine runs natively, CPU variant included: "armv6l" -> "linux/arm/v6",
    "x86_64" -> "linux/amd64" (what an engine's Architecture, `uname -m`, says)."""
    name = machine.strip().lower()
    return PLATFORM_BY_ARM_MACHINE.get(name) or f"linux/{goarch(name)}"


def image_platform(architecture: str, variant: str | None = None) -> str:
    """The platform of an image config's Architecture and Variant: ("arm", "v7") ->
    "linux/arm/v7". The variant counts for 32-bit ARM only (v7 and v6 images hold the same
    toolchain and differ there); an arm64 image's "v8" is left out, as the matrix spells it."""
    return f"linux/arm/{variant}" if architecture == "arm" and variant else f"linux/{architecture}"


def machine_name(arch: str) -> str:
    """The machine name (manylinux tag, `uname -m`) of a GOARCH: "arm64" -> "aarch64"."""
    return MACHINE_BY_GOARCH[arch]
VariantKind = Literal["debian", "slim"]
VARIANT_KINDS: tuple[str, ...] = ("debian", "slim")

# Values that reach a Dockerfile are checked against these before anything is rendered.
GO_VERSION_RE = re.compile(r"^1\.(0|[1-9][0-9]{0,3})(\.(0|[1-9][0-9]{0,3}))?\Z")  # 4 digits: no 300-char tags
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,30}\Z")
DEB_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,80}\Z")
IMAGE_REF_RE = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?\Z"
)

TOP_KEYS = ("go", "platforms", "variants")
VARIANT_KEYS = ("kind", "base", "packages", "description", "prune")


def closest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """' (did you mean X?)' for the nearest valid choice, or '' when nothing is close."""
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _one_line(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, kw_only=True)
class Variant:
    name: str
    kind: VariantKind
    base: str
    packages: tuple[str, ...] = ()
    description: str = ""
    prune: tuple[str, ...] = ()  # group names of builder/prune.py, in that file's order

    @property
    def cgo(self) -> bool:
        return self.kind == "debian"


@dataclass(frozen=True, kw_only=True)
class Cell:
    go: str  # the matrix's Go version: a minor ("1.22") or an exact release ("1.22.10")
    platform: str  # "linux/arm64"
    variant: Variant

    @property
    def arch(self) -> str:
        """GOARCH: "arm" for both 32-bit ARM platforms (the lock's key: one toolchain serves
        both; the image's go.env sets its GOARM)."""
        return platform_arch(self.platform)

    @property
    def arch_tag(self) -> str:
        """The platform in image tags: "arm64", "arm-v7" (v7 and v6 images are different)."""
        return platform_tag(self.platform)

    @property
    def goarm(self) -> int | None:
        return GOARM_BY_PLATFORM.get(self.platform)

    @property
    def id(self) -> str:
        return f"go{self.go}-{self.variant.name}-{self.platform.replace('/', '-')}"

    def as_json(self) -> dict:
        return {"id": self.id, "go": self.go, "platform": self.platform,
                "variant": self.variant.name, "kind": self.variant.kind, "cgo": self.variant.cgo}


@dataclass(frozen=True, kw_only=True)
class Matrix:
    go: tuple[str, ...]
    platforms: tuple[str, ...]
    variants: tuple[Variant, ...]
    path: Path

    def cells(self) -> tuple[Cell, ...]:
        return tuple(
            Cell(go=g, platform=p, variant=v)
            for g in self.go
            for v in self.variants
            for p in self.platforms
            if v.kind == "slim" or p in DEBIAN_VARIANT_PLATFORMS
        )


@dataclass(frozen=True, kw_only=True)
class Selection:
    """The selectors every command shares: --go (glob), --platform, --variant; empty = all."""

    go: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()


def parse_platform(value: str) -> str:
    if value not in PLATFORMS:
        raise ConfigError(
            f"unknown platform {value!r}{closest(value, PLATFORMS)}: "
            f"choose from {', '.join(PLATFORMS)}"
        )
    return value


def _check_keys(where: str, data: dict, allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key {key!r}{closest(str(key), allowed)}; "
                f"valid keys: {', '.join(allowed)}"
            )


def _go_version(where: str, value: Any) -> str:
    text = str(value) if isinstance(value, (str, float, int)) else None
    if isinstance(value, float):
        raise ConfigError(
            f"{where}: Go version {value!r} must be quoted in YAML (\"{value}\"), "
            "or 1.20 becomes 1.2"
        )
    if text is None or not GO_VERSION_RE.match(text):
        raise ConfigError(
            f"{where}: invalid Go version {_one_line(value)}: write a release such as "
            "\"1.22\" (newest patch) or \"1.22.10\" (exact)"
        )
    return text


def _variant(path: Path, name: Any, data: Any) -> Variant:
    where = f"{path}: variants.{name}"
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"{path}: invalid variant name {_one_line(name)}: use lowercase letters and digits"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping with keys {', '.join(VARIANT_KEYS)}")
    _check_keys(where, data, VARIANT_KEYS)
    kind = data.get("kind")
    if kind not in VARIANT_KINDS:
        raise ConfigError(
            f"{where}.kind: {_one_line(kind)} is not a variant kind{closest(str(kind), VARIANT_KINDS)}; "
            f"choose from {', '.join(VARIANT_KINDS)}"
        )
    base = data.get("base", "debian:bookworm-slim")
    if not isinstance(base, str) or not IMAGE_REF_RE.match(base):
        raise ConfigError(f"{where}.base: invalid image reference {_one_line(base)}")
    packages = data.get("packages", [])
    if not isinstance(packages, list) or not all(
        isinstance(p, str) and DEB_PACKAGE_RE.match(p) for p in packages
    ):
        raise ConfigError(
            f"{where}.packages: must be a list of Debian package names, got {_one_line(packages)}"
        )
    description = data.get("description", "")
    if not isinstance(description, str) or "\n" in description or "\r" in description:
        raise ConfigError(f"{where}.description: must be one line of text")
    return Variant(
        name=name, kind=kind, base=base, packages=tuple(packages), description=description,
        prune=_prune_groups(where, data.get("prune", PRUNE_GROUPS if kind == "slim" else [])),
    )


def _prune_groups(where: str, value: Any) -> tuple[str, ...]:
    """A variant's prune list (slim prunes every group unless it says otherwise)."""
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise ConfigError(f"{where}.prune: must be a list of group names ({', '.join(PRUNE_GROUPS)})")
    for name in value:
        if name not in PRUNE_GROUPS:
            raise ConfigError(
                f"{where}.prune: unknown group {_one_line(name)}{closest(name, PRUNE_GROUPS)}; "
                f"groups: {', '.join(PRUNE_GROUPS)}"
            )
    return tuple(g for g in PRUNE_GROUPS if g in value)


def parse_matrix(text: str, path: Path) -> Matrix:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping with keys {', '.join(TOP_KEYS)}")
    _check_keys(str(path), data, TOP_KEYS)
    for key in TOP_KEYS:
        if not data.get(key):
            raise ConfigError(f"{path}: {key!r} is missing or empty")

    if not isinstance(data["go"], list):
        raise ConfigError(f"{path}: 'go' must be a list of versions")
    go = tuple(_go_version(f"{path}: go", v) for v in data["go"])
    if not isinstance(data["platforms"], list):
        raise ConfigError(f"{path}: 'platforms' must be a list")
    platforms = tuple(_platform_in_file(path, p) for p in data["platforms"])
    if not isinstance(data["variants"], dict):
        raise ConfigError(f"{path}: 'variants' must be a mapping of name -> settings")
    variants = tuple(_variant(path, n, d) for n, d in data["variants"].items())

    for label, values in (("go version", go), ("platform", platforms)):
        seen = set()
        for v in values:
            if v in seen:
                raise ConfigError(f"{path}: duplicate {label} {v!r}: list each once")
            seen.add(v)
    minors = {}
    for v in go:
        minor = ".".join(v.split(".")[:2])
        if minor in minors:
            raise ConfigError(
                f"{path}: go {minors[minor]!r} and {v!r} are the same minor release: keep one"
            )
        minors[minor] = v
    return Matrix(go=go, platforms=platforms, variants=variants, path=path)


def _platform_in_file(path: Path, value: Any) -> str:
    try:
        return parse_platform(str(value))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None


def load_matrix(path: Path) -> Matrix:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"matrix file {path} not found: pass --matrix FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read matrix file {path}: {exc}") from None
    return parse_matrix(text, path)


def select(matrix: Matrix, selection: Selection) -> tuple[Cell, ...]:
    """Cells matching every selector; a selector that matches nothing is an error."""
    for v in selection.variants:
        names = tuple(x.name for x in matrix.variants)
        if v not in names:
            raise ConfigError(
                f"no variant {v!r} in {matrix.path}{closest(v, names)}; "
                f"variants: {', '.join(names)}"
            )
    for p in selection.platforms:
        parse_platform(p)
        if p not in matrix.platforms:
            raise ConfigError(f"platform {p!r} is not in {matrix.path}: add it under 'platforms'")
        kinds = {v.kind for v in matrix.variants if not selection.variants or v.name in selection.variants}
        if p not in DEBIAN_VARIANT_PLATFORMS and kinds == {"debian"}:
            raise ConfigError(f"platform {p} has slim variants only (Debian has no ARMv6 "
                              "hard-float port): select a slim --variant")
    newest = max(matrix.go, key=lambda v: tuple(int(x) for x in v.split(".")))
    patterns = tuple(newest if p == "latest" else p for p in selection.go)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(g, pattern) for g in matrix.go):
            raise ConfigError(
                f"--go {pattern!r} matches no Go version in {matrix.path} "
                f"({', '.join(matrix.go)})"
            )
    return tuple(
        c
        for c in matrix.cells()
        if (not patterns or any(fnmatch.fnmatchcase(c.go, p) for p in patterns))
        and (not selection.platforms or c.platform in selection.platforms)
        and (not selection.variants or c.variant.name in selection.variants)
    )
