"""The genlib source files a module depends on, found by following its imports.

A cached result is keyed by the source that computed it: the file that declares the experiment and
every genlib module it imports, directly or through others (read with ``ast``, so imports inside
functions and under ``TYPE_CHECKING`` count too). Editing a module that a chapter does not reach,
such as the plots, keeps that chapter's cache.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # genlib/
PACKAGE = PACKAGE_ROOT.name


def _module_file(dotted: list[str]) -> Path | None:
    """The file of genlib module ``dotted`` (["genlib", "core", "train"]), or None if there is none."""
    if not dotted or dotted[0] != PACKAGE:
        return None
    base = PACKAGE_ROOT.joinpath(*dotted[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(path: Path) -> list[str] | None:
    """["genlib", "core"] for genlib/core/train.py; None for a file outside genlib."""
    try:
        parts = path.resolve().relative_to(PACKAGE_ROOT).parts
    except ValueError:
        return None
    return [PACKAGE, *parts[:-1]]


def _imports(path: Path) -> set[Path]:
    """The genlib files that ``path`` imports (a module, or a submodule named in ``from X import Y``)."""
    found = set()
    package = _package_of(path)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue
                base = package[: len(package) - node.level + 1]
            else:
                base = []
            module = base + (node.module.split(".") if node.module else [])
            targets = [module] + [module + [alias.name] for alias in node.names]
        else:
            continue
        found |= {f for f in map(_module_file, targets) if f is not None}
    return found


@functools.cache
def dependencies(root: str) -> tuple[Path, ...]:
    """``root`` and every genlib file it reaches through imports, sorted by path."""
    seen: set[Path] = set()
    todo = [Path(root).resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path) - seen)
    return tuple(sorted(seen))
