"""The package's shape, measured from its source: import cycles between modules, imports
that point up the layers docs/development.md names, the length of each ``training/``
file, and the files a run's ``TrainConfig`` is handed to below ``train()``. Prints JSON.

    python benchmarks/structure.py

Every ``import`` counts, those inside functions too (a lazy import is still a
dependency); ``if TYPE_CHECKING:`` ones too.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cnnlab"

# Bottom to top: a module may import from its own layer and those below it.
LAYERS = [
    {"errors", "version", "environ", "lazy", "logs", "fsutil"},
    {"ops", "data", "device", "accel"},
    {"layers"},
    {"models", "rundir", "viz"},
    {"training", "evaluation"},
    {"predict", "export", "report", "sweep", "demos", "compat"},
    {"cli", "__main__", "__init__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def resolve(name: str, modules: set[str]) -> str:
    """The module ``name`` is, or is in ('' for none)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def reexports(paths: dict[str, Path], modules: set[str]) -> dict[str, dict[str, str]]:
    """For each package, the names its ``__init__`` takes from its modules (imported, or
    listed for :func:`cnnlab.lazy.lazy_names`), and the module each comes from."""
    found: dict[str, dict[str, str]] = {}
    for package, path in paths.items():
        if path.name != "__init__.py":
            continue
        names = found.setdefault(package, {})
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module != package:
                for alias in node.names:
                    names[alias.asname or alias.name] = resolve(node.module, modules)
            elif isinstance(node, ast.Call) and ast.unparse(node.func) == "lazy_names":
                table = node.args[1]
                if isinstance(table, ast.Dict):
                    for key, value in zip(table.keys, table.values, strict=True):
                        if isinstance(key, ast.Constant) and isinstance(value, ast.Constant):
                            where = value.value
                            where = where if where.startswith("cnnlab") else f"{package}.{where}"
                            names[key.value] = resolve(where, modules)
    return found


def imports(path: Path, modules: set[str], exported: dict[str, dict[str, str]]) -> set[str]:
    """The cnnlab modules ``path`` imports: a name taken from a package counts as the
    module that defines it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {resolve(a.name, modules) for a in node.names if a.name.startswith("cnnlab")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("cnnlab"):
                continue
            package = resolve(node.module, modules)
            for alias in node.names:
                if f"{package}.{alias.name}" in modules:
                    found.add(f"{package}.{alias.name}")
                else:
                    found.add(exported.get(package, {}).get(alias.name, package))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def config_files() -> list[str]:
    """The files below ``train()`` with a function or method taking a ``TrainConfig``."""
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "cli" or path.name in ("cli.py", "sweep.py"):
            continue  # above train(): where a config is made
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                annotations = [a.annotation for a in node.args.args + node.args.kwonlyargs]
                if any("TrainConfig" in ast.unparse(a) for a in annotations if a is not None):
                    files.append(str(path.relative_to(PACKAGE)))
                    break
    return files


def main() -> None:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    exported = reexports(paths, modules)
    graph = {m: imports(p, modules, exported) - {m} for m, p in paths.items()}
    upward = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        for d in deps
        if layer(d) > layer(m) and not m.startswith(d + ".")  # a package's own __init__
    )
    lines = {
        str(p.relative_to(PACKAGE)): len(p.read_text().splitlines())
        for p in sorted((PACKAGE / "training").glob("*.py"))
    }
    print(
        json.dumps(
            {
                "modules": len(modules),
                "cycles": cycles(graph),
                "upward_imports": upward,
                "training_lines_max": max(lines.values()),
                "training_lines": lines,
                "config_taken_in": config_files(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
