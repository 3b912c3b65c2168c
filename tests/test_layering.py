"""Layering: a command module (one that a console script of setup.py runs) parses its arguments
and calls library modules; it never imports another command module, and no library module
imports a command module. Read from the source (ast), so nothing is imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where each installed package's sources live in the checkout (setup.py's package_dir).
FOLDERS = {"sf_fairseq.preprocess": "preprocess", "sf_fairseq.eval": "eval", "sf_fairseq.user_dir": "user_dir",
           "sf_fairseq": "sf_fairseq"}

def command_modules() -> set[str]:
    """The modules of setup.py's console scripts."""
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    return set(re.findall(r'"[\w-]+=([\w.]+):main"', text))


def source_file(module: str) -> Path:
    for package, folder in FOLDERS.items():
        if module == package or module.startswith(package + "."):
            rel = module[len(package):].lstrip(".").replace(".", "/")
            base = ROOT / folder / rel if rel else ROOT / folder
            return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    raise ValueError(f"{module} is not in a package of this checkout")


def imported_modules(module: str) -> set[str]:
    """Every module ``module`` imports, anywhere in its body (``from a import b`` counts ``a``
    and ``a.b``, since ``b`` may be a submodule)."""
    path = source_file(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def command_imports() -> set[tuple[str, str]]:
    commands = command_modules()
    return {(module, other) for module in commands for other in imported_modules(module) & commands
            if other != module}


def test_the_command_list_is_read():
    commands = command_modules()
    assert {"sf_fairseq.eval.score_video", "sf_fairseq.preprocess.prepare", "sf_fairseq.paths_cli"} <= commands
    assert all(source_file(module).is_file() for module in commands)


def test_relative_and_submodule_imports_are_resolved():
    found = imported_modules("sf_fairseq.eval.score_video")
    assert "sf_fairseq.eval.video_engine" in found and "sf_fairseq.resume" in found


def test_no_command_module_imports_another():
    found = sorted(command_imports())
    assert not found, "command modules importing other command modules (move what they use into a " \
        f"library module): {found}"


def library_modules() -> set[str]:
    """Every module of the checkout's packages that no console script runs."""
    found = set()
    for package, folder in FOLDERS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if "__pycache__" in rel.parts or not all(p.isidentifier() for p in parts):
                continue
            module = ".".join([package, *parts])
            if source_file(module) == path:  # the name resolves back to this file
                found.add(module)
    return found - command_modules()


def test_no_library_module_imports_a_command_module():
    commands = command_modules()
    found = sorted((module, other) for module in library_modules() for other in imported_modules(module) & commands)
    assert not found, f"library modules importing command modules (move what they use out of the command): {found}"


def test_library_modules_are_listed():
    libraries = library_modules()
    assert {"sf_fairseq.eval.batch_engine", "sf_fairseq.paths", "sf_fairseq.data.rates",
            "sf_fairseq.preprocess.prepare_engine"} <= libraries
    assert not libraries & command_modules()
