"""No import cycles inside attnbench, deferred imports included.

A cycle hidden behind an import inside a function still decides what may be imported first: the
day someone moves that import to the top, or a module of the cycle is imported on its own, a name
is read from a half-initialised module. So the graph here counts every attnbench-internal import
statement, at module level and inside functions, and every module is a node (a package's
__init__ included). Edges, per statement (relative imports resolved the same way):

    import attnbench.a.b             -> attnbench.a.b
    from attnbench.a import b        -> attnbench.a (its namespace is read), and attnbench.a.b too
                                        when b is a submodule
    from attnbench.a.b import name   -> attnbench.a.b

Not edges: the parent packages Python initialises on the way (importing attnbench.a.b runs
attnbench/a/__init__.py, but a package is in sys.modules before its __init__ runs, so a submodule
importing a sibling by its full name is safe while the package loads), imports under
`if TYPE_CHECKING:` (they never run: the way to annotate with a type from a module that imports
this one), and importlib.import_module calls (names built at run time, the backend registry's).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

Edges = dict[str, dict[str, int]]  # module -> {imported module: line of the first such import}


def module_names(src: Path, package: str) -> dict[str, Path]:
    """Every module of the package under src: dotted name -> file (a package's name -> __init__.py)."""
    names = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under an `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`) block."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                hidden.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return hidden


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: from the package holding this module, up level - 1 more
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    found = [source]
    found += [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in known]
    return found


def import_graph(src: Path, package: str) -> Edges:
    """Module -> the package's modules it imports anywhere in its file (see the docstring for edges)."""
    names = module_names(src, package)
    known = set(names)
    graph: Edges = {}
    for module, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        hidden = _type_checking_only(tree)
        edges: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in hidden:
                for target in _targets(node, module, path.name == "__init__.py", known):
                    if target in known and target != module:
                        edges[target] = min(edges.get(target, node.lineno), node.lineno)
        graph[module] = edges
    return graph


def find_cycle(graph: Edges) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search; an edge back onto the path closes one)."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph.get(node, {})):
            if nxt in on_path:
                return path[path.index(nxt):] + [nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def describe(cycle: list[str], graph: Edges, names: dict[str, Path], src: Path) -> str:
    pairs = zip(cycle[:-1], cycle[1:], strict=True)
    steps = [f"  {a} -> {b}   ({names[a].relative_to(src)}:{graph[a][b]})" for a, b in pairs]
    return "import cycle:\n" + "\n".join(steps)


def test_attnbench_has_no_import_cycle():
    graph = import_graph(ROOT, "attnbench")
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300  # the whole package was read
    cycle = find_cycle(graph)
    assert cycle is None, describe(cycle, graph, module_names(ROOT, "attnbench"), ROOT)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    src = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low.py": "def f():\n    from pkg.high import g\n    return g\n",
        "pkg/high.py": "from pkg.low import f\n",
    })  # fmt: skip
    graph = import_graph(src, "pkg")
    cycle = find_cycle(graph)
    assert cycle in (["pkg.high", "pkg.low", "pkg.high"], ["pkg.low", "pkg.high", "pkg.low"])
    text = describe(cycle, graph, module_names(src, "pkg"), src)
    assert "pkg.low -> pkg.high   (pkg/low.py:2)" in text and "pkg.high -> pkg.low   (pkg/high.py:1)" in text


def test_a_cycle_through_a_package_init_and_relative_imports_is_found(tmp_path):
    # the package re-exports from a submodule that imports a sibling through the package
    src = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "from .build import write\n",
        "pkg/sub/build.py": "from pkg.sub import table\n\ndef write():\n    return table\n",
        "pkg/sub/table.py": "X = 1\n",
    })  # fmt: skip
    graph = import_graph(src, "pkg")
    assert graph["pkg.sub"] == {"pkg.sub.build": 1}
    assert graph["pkg.sub.build"] == {"pkg.sub": 1, "pkg.sub.table": 1}
    assert find_cycle(graph) == ["pkg.sub", "pkg.sub.build", "pkg.sub"]


def test_type_checking_imports_and_parent_packages_are_not_edges(tmp_path):
    src = _package(tmp_path, {
        "pkg/__init__.py": "from pkg.sub.a import A\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/a.py": "from typing import TYPE_CHECKING\n\nfrom pkg.sub.b import B\n\nA = 1\n",
        "pkg/sub/b.py": "import typing\n\nif typing.TYPE_CHECKING:\n    from pkg.sub.a import A\nB = 2\n",
    })  # fmt: skip
    graph = import_graph(src, "pkg")
    assert graph == {"pkg": {"pkg.sub.a": 1}, "pkg.sub": {}, "pkg.sub.a": {"pkg.sub.b": 3}, "pkg.sub.b": {}}
    assert find_cycle(graph) is None
