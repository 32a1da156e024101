"""The package's shape, read from its imports with `ast`: imports point one way, from `cli/`
down to `kernels/`.

Every import counts, including those inside functions (a lazy import is still a dependency;
it only moves the cost). A failure names the file, the line and the import at fault.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dscoder"

# The layers, top to bottom. A package may import only packages listed below it (or itself).
# Packages on one line are peers and must not import each other.
LAYERS = [
    ["cli"],
    ["eval", "train"],
    ["serve", "data"],
    ["tasks", "verify"],
    ["execute", "repo"],
    ["infer"],
    ["hub"],
    ["tokenizer"],  # GGUF files carry vocabularies too: the tokenizer reads them through formats.gguf
    ["formats"],
    ["model"],
    ["kernels"],
    ["errors", "settings", "files", "cache"],
]
RANK = {pkg: depth for depth, row in enumerate(LAYERS) for pkg in row}


def package_of(module: str) -> str | None:
    """'dscoder.model.cache' -> 'model'; None for anything outside dscoder."""
    parts = module.split(".")
    if parts[0] != "dscoder" or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path, package).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names = [alias.name for alias in node.names]
            if node.module is None or module == "dscoder":  # `from . import x`: each name is a module
                found += [(node.lineno, f"{module}.{name}", []) for name in names]
            else:
                found.append((node.lineno, module, names))
    return found


def all_imports(package: Path = PACKAGE):
    for path in sorted(package.rglob("*.py")):
        source = package_of(module_name(path, package)) or "dscoder"
        for line, module, names in imports(path, package):
            target = package_of(module)
            if target is not None:
                yield path.relative_to(package.parent), line, source, module, target, names


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert packages - set(RANK) == set(), "a new package needs its place in LAYERS"


def test_nothing_outside_cli_imports_cli():
    bad = [f"{f}:{line} imports {module}" for f, line, source, module, target, _ in all_imports()
           if target == "cli" and source != "cli"]
    assert not bad, "\n".join(bad)


def test_imports_point_down_the_layers():
    bad = [f"{f}:{line}: {source} imports {module} ({target} is not below {source})"
           for f, line, source, module, target, _ in all_imports()
           if source in RANK and target != source and RANK[target] <= RANK[source]]
    assert not bad, "\n".join(bad)


def test_model_imports_only_kernels_and_errors():
    bad = [f"{f}:{line} imports {module}" for f, line, source, module, target, _ in all_imports()
           if source == "model" and target not in ("model", "kernels", "errors")]
    assert not bad, "\n".join(bad)


def test_no_cycle_between_packages():
    graph = defaultdict(set)
    for _, _, source, _, target, _ in all_imports():
        if source != target:
            graph[source].add(target)
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_no_private_name_crosses_a_package():
    bad = [f"{f}:{line}: {source} imports {name} from {module}"
           for f, line, source, module, target, names in all_imports() if target != source
           for name in names if name.startswith("_") and not name.startswith("__")]
    assert not bad, "\n".join(bad)


def test_the_reader_sees_a_planted_violation(tmp_path):
    """The reader itself: upward, private and relative imports, in a function too, are found."""
    planted = tmp_path / "dscoder" / "model" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("from ..cli.app import _fail\nfrom . import cache\n"
                       "def f():\n    import dscoder.serve.engine\n")
    found = {(source, module, tuple(names)) for _, _, source, module, _, names in all_imports(tmp_path / "dscoder")}
    assert found == {("model", "dscoder.cli.app", ("_fail",)), ("model", "dscoder.model.cache", ()),
                     ("model", "dscoder.serve.engine", ())}
