#!/usr/bin/env python3
"""Check the import layers of the packages (`make layers`, part of `make check` and `make test`).

Each package has names it must never import: other packages of the project above it, and
third-party libraries that belong to another process (the server never loads mlxtend or pandas,
the serving core never pykka or aiohttp). The check follows the project's own imports
transitively, so `http_api` importing a `mining` module that imports pandas is caught at the
`mining` module, with the chain that leads there. Third-party names are matched on their
top-level module (`pandas.api.types` is `pandas`). Every import counts, at module level or
inside a function, except those under ``if TYPE_CHECKING:``, which never run.

    python3 scripts/check_layers.py [--root DIR]

Standard library only. Exit 0 when every rule holds, 1 with one line per broken rule.
"""

import argparse
import ast
import sys
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Third-party libraries of the mining job alone (pyfim's module is `fim`).
MINING_LIBRARIES = frozenset({"mlxtend", "pandas", "pyarrow", "scipy", "fim"})
# Package -> the top-level names it must never import, directly or through the project.
RULES: dict[str, frozenset[str]] = {
    "mining": frozenset({"recommender", "actors", "http_api", "client", "evaluation"}),
    "recommender": frozenset({"actors", "http_api", "client", "evaluation"})
    | {"pykka", "aiohttp", "watchdog"}
    | MINING_LIBRARIES,
    "actors": frozenset({"http_api", "client", "evaluation"}) | MINING_LIBRARIES,
    "http_api": frozenset({"client", "evaluation"}) | MINING_LIBRARIES,
    "client": frozenset({"recommender", "actors", "http_api", "evaluation"}),
}


@dataclass(frozen=True)
class Import:
    """One import statement's target in a module, as an absolute dotted name."""

    name: str
    line: int


@dataclass(frozen=True)
class Violation:
    """A module of ``package`` reaches ``imported`` (under ``forbidden``) through ``chain``:
    (module, line of its import of the next one) pairs, the last one importing ``imported``."""

    package: str
    forbidden: str
    chain: tuple[tuple[str, int], ...]
    imported: str

    def __str__(self) -> str:
        steps = " -> ".join(f"{module}:{line}" for module, line in self.chain)
        return f"{self.package} must not import {self.forbidden}: {steps} imports {self.imported}"


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module in the packages at ``root`` (folders with an
    ``__init__.py``, and their subpackages)."""
    modules: dict[str, Path] = {}
    for init in sorted(root.glob("*/__init__.py")):
        package = init.parent
        for path in sorted(package.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes_that_run(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> list[Import]:
    """The absolute names ``module`` (the file ``path``) imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in _nodes_that_run(tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module or ""
            found.append(Import(origin, node.lineno))
            # `from package import submodule` imports the submodule too.
            found += [
                Import(f"{origin}.{alias.name}", node.lineno)
                for alias in node.names
                if f"{origin}.{alias.name}" in modules
            ]
    return sorted(found, key=lambda found_import: found_import.line)


def _project_targets(name: str, modules: Mapping[str, Path]) -> list[str]:
    """The project modules importing ``name`` runs: the longest known prefix and its parents."""
    parts = name.split(".")
    targets = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return [target for target in targets if target in modules]


def check(root: Path, rules: Mapping[str, frozenset[str]] = RULES) -> list[Violation]:
    """Every rule broken by the packages at ``root``: one violation per forbidden name reached
    per module that imports it, with the shortest chain from the package that may not."""
    modules = project_modules(root)
    graph = {module: imports_of(module, path, modules) for module, path in modules.items()}
    violations: dict[tuple[str, str, str], Violation] = {}
    for package, forbidden in rules.items():
        starts = sorted(m for m in modules if m.split(".")[0] == package)
        # Breadth first from all of the package's modules at once: the shortest chains.
        chains: dict[str, tuple[tuple[str, int], ...]] = {start: () for start in starts}
        queue = deque(starts)
        while queue:
            module = queue.popleft()
            for imported in graph[module]:
                top = imported.name.split(".")[0]
                chain = (*chains[module], (module, imported.line))
                if top in forbidden:
                    key = (package, top, module)
                    if key not in violations or len(chain) < len(violations[key].chain):
                        violations[key] = Violation(package, top, chain, imported.name)
                    # Reported where the chain enters it, not again for each of its modules.
                    continue
                for target in _project_targets(imported.name, modules):
                    if target not in chains:
                        chains[target] = chain
                        queue.append(target)
    return sorted(violations.values(), key=lambda v: (v.package, v.forbidden, v.chain))


def main(argv: list[str] | None = None) -> int:
    """Print each broken rule; exit 1 when there is one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the project's directory")
    args = parser.parse_args(argv)
    violations = check(args.root)
    for violation in violations:
        print(f"check_layers: {violation}", file=sys.stderr)
    if violations:
        return 1
    checked = ", ".join(sorted(RULES))
    print(f"check_layers: the import layers hold ({checked})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
