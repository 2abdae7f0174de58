"""The shape the house style asks for, checked on the source: commands are registered in one
place, nothing imports the entry point, and the library under the CLI knows nothing of Click."""
from __future__ import annotations

import ast
from pathlib import Path

import builder

PACKAGE = Path(builder.__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the builder modules a file imports ('builder.cli', ...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(("builder", *path.relative_to(PACKAGE).parts[:-1]))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    return ".".join(("builder", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
        ".__init__")


def test_no_import_circle_among_the_modules():
    """Imports inside functions count too: a circle hidden in a function is still one."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {name: {m for m in imported_modules(path) if m in modules and m != name}
             for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        assert name not in trail, "import circle: " + " -> ".join(trail[trail.index(name):] + [name])
        if name in done:
            return
        for other in sorted(edges[name]):
            visit(other, [*trail, name])
        done.add(name)

    for name in sorted(modules):
        visit(name, [])


def test_no_module_imports_the_entry_point():
    offenders = [
        str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "cli.py" and "builder.cli" in imported_modules(path)
    ]
    assert offenders == []


def test_every_command_is_registered_in_cli_py_and_nowhere_else():
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "@main.command" not in text, path
        assert ("main.add_command" in text) == (path.name == "cli.py"), path
    from builder.cli import main

    assert set(main.commands) >= {"matrix", "lock", "render", "images", "pull", "join", "base",
                                  "bench", "doctor"}


def test_the_images_pipeline_and_inputs_rule_are_click_free_library_code():
    for name in ("pipeline.py", "registry.py", "build.py", "base.py", "engine.py", "bench/run.py",
                 "bench/runner.py", "bench/results.py", "bench/output.py"):
        assert not {m for m in imported_modules(PACKAGE / name) if m.split(".")[0] == "click"}, name


def test_the_thin_cli_modules_make_no_engine_calls():
    for name in ("cli.py", "cli_images.py", "cli_bench.py"):
        mods = imported_modules(PACKAGE / name)
        assert "builder.engine" not in mods, name
        assert "engine." not in (PACKAGE / name).read_text(encoding="utf-8"), name
