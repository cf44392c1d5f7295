"""The package's layers, checked from the source: render draws only what it is handed, explain
computes tensors without drawing, and the run-directory module does not reach into training.

Every ``import``/``from ... import`` node counts, including ones inside functions (lazy imports) and
relative imports, which are resolved against the module's own package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cnnlab"

RULES = {  # module folder or file -> packages it must not import
    "render": ("cnnlab.train", "cnnlab.data", "cnnlab.explain", "cnnlab.app"),
    "explain": ("cnnlab.render", "cnnlab.train", "cnnlab.app"),
    "rundir.py": ("cnnlab.train",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) for every module ``source`` imports; ``package`` is the package the module is
    in (for relative imports). ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule,
    e.g. ``from cnnlab import train``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: level 1 is this package, each further dot one package up
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def _imports_of(path: Path) -> list[tuple[int, str]]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imported_modules(path.read_text(encoding="utf-8"), package)


def _files(target: str) -> list[Path]:
    path = PACKAGE / target
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("target", sorted(RULES))
def test_layer_imports_nothing_it_must_not(target: str) -> None:
    files = _files(target)
    assert files and all(f.is_file() for f in files), f"nothing to check under {PACKAGE / target}"
    bad = [f"{f.relative_to(SRC)}:{line} imports {module}"
           for f in files for line, module in _imports_of(f)
           if any(_is_under(module, forbidden) for forbidden in RULES[target])]
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_the_checker_sees_lazy_relative_and_package_imports() -> None:
    source = ("def f():\n    from cnnlab.train import checkpoint\n"
              "def g():\n    from ..explain import filters\n"
              "from cnnlab import data\nimport cnnlab.app.report as r\nfrom . import grids\n")
    modules = {m for _, m in imported_modules(source, "cnnlab.render")}
    for forbidden in ("cnnlab.train", "cnnlab.explain", "cnnlab.data", "cnnlab.app"):
        assert any(_is_under(m, forbidden) for m in modules), (forbidden, modules)
    assert "cnnlab.render.grids" in modules and "cnnlab.explain.filters" in modules
