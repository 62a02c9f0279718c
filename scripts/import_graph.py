"""Check the import layering of TASC Studio and draw it.

The layers, lowest first; a module may import only from its own layer or a lower one:

    core <- spec <- ft <- compare <- methods <- bench <- commands <- studio <- app

`commands` is `tasc.commands.*`, `tasc.cli` and `tasc.__main__`; the root package `tasc` counts
as `core`. Nothing under `tasc/` may import `studio`, `app` or `gradio`, and
`tasc/spec/ngram_index.py` may import neither torch nor transformers. Every import is read with
`ast` (top-level ones, ones inside functions, ones under `if TYPE_CHECKING:`, relative ones, and
`importlib.import_module` with a literal name), so the check needs none of the imported packages.

    python scripts/import_graph.py                      # print violations and cycles; exit 1 if any
    python scripts/import_graph.py --mermaid docs/imports.md   # also write the layer diagram
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS: tuple[str, ...] = (
    "core",
    "spec",
    "ft",
    "compare",
    "methods",
    "bench",
    "commands",
    "studio",
    "app",
)
RANK: dict[str, int] = {name: i for i, name in enumerate(LAYERS)}
PROJECT_TOPS: frozenset[str] = frozenset({"tasc", "studio", "app"})
# Third-party packages some modules must not import: kept in `module_imports` under their top name.
WATCHED_EXTERNAL: frozenset[str] = frozenset({"gradio", "torch", "transformers"})
# module -> third-party packages it must not import (on top of gradio for all of tasc)
FORBIDDEN_EXTERNAL: dict[str, frozenset[str]] = {
    "tasc.spec.ngram_index": frozenset({"torch", "transformers"}),
}
UNASSIGNED = "unassigned"
EXTERNAL = "external"


class ModuleImports(dict[str, set[str]]):
    """`module -> set of imported modules`, plus where each module and each import lives.

    `files[module]` is the module's path relative to the root; `sites[(module, target)]` lists
    the `(path, line, where)` of every statement that makes that import, where `where` is ''
    for an import run at import time, 'lazy' inside a function, or 'TYPE_CHECKING'. Plain dicts work wherever a
    `ModuleImports` does; they just give no line numbers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, str] = {}
        self.sites: dict[tuple[str, str], list[tuple[str, int, str]]] = {}


def source_files(root: Path) -> dict[str, Path]:
    """Map each project module name to its file: tasc/**/*.py, studio/**/*.py and app.py."""
    modules: dict[str, Path] = {}
    for top in ("tasc", "studio"):
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    app = root / "app.py"
    if app.is_file():
        modules["app"] = app
    return modules


def layer_of(module: str) -> str:
    """The layer of a module: one of LAYERS, 'unassigned' (in tasc, no layer) or 'external'."""
    parts = module.split(".")
    top = parts[0]
    if top == "app" and len(parts) == 1:
        return "app"
    if top == "studio":
        return "studio"
    if top != "tasc":
        return EXTERNAL
    if len(parts) == 1:
        return "core"  # the root package: imported by everything, so it must import nothing
    second = parts[1]
    if second in ("commands", "cli", "__main__"):
        return "commands"
    if second in RANK and second not in ("studio", "app"):
        return second
    return UNASSIGNED


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_relative(module: str, path: Path, level: int, name: str | None) -> str | None:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    package = module if _is_package(path) else module.rpartition(".")[0]
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    if name:
        parts.extend(name.split("."))
    return ".".join(parts) or None


def _literal_import(node: ast.Call) -> str | None:
    """The module named by `importlib.import_module("x.y")` / `__import__("x.y")`, if literal.

    An f-string with a literal head (`f"tasc.commands.{name}"`) counts as the package before the
    first placeholder (`tasc.commands`).
    """
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values:
        head = arg.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str) and "." in head.value:
            return head.value.rpartition(".")[0]
    return None


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an `if` test is `TYPE_CHECKING` or `typing.TYPE_CHECKING`."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _walk(node: ast.AST, where: str) -> Iterator[tuple[ast.AST, str]]:
    """Every node below `node` with where it runs: '' (import time), 'lazy' or 'TYPE_CHECKING'."""
    for child in ast.iter_child_nodes(node):
        inner = where
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not where:
            inner = "lazy"
        yield child, where
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from _walk(child.test, where)
            for stmt in child.body:
                yield stmt, "TYPE_CHECKING"
                yield from _walk(stmt, "TYPE_CHECKING")
            for stmt in child.orelse:
                yield stmt, where
                yield from _walk(stmt, where)
            continue
        yield from _walk(child, inner)


def _raw_imports(module: str, path: Path) -> Iterator[tuple[str, str | None, int, str]]:
    """Yield `(base, name, line, where)` for every import in a file.

    `import a.b` gives `("a.b", None)`; `from a import b, c` gives `("a", "b")` and `("a", "c")`;
    `where` is '' for an import run at import time, 'lazy' inside a function, or 'TYPE_CHECKING'.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node, where in _walk(tree, ""):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno, where
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, path, node.level, node.module)
            else:
                base = node.module
            if base is None:
                continue
            for alias in node.names:
                yield base, (None if alias.name == "*" else alias.name), node.lineno, where
        elif isinstance(node, ast.Call):
            name = _literal_import(node)
            if name:
                yield name, None, node.lineno, where


def _target(base: str, name: str | None, known: Mapping[str, Path]) -> str | None:
    """The project module (or watched third-party package) an import refers to, else None."""
    top = base.split(".")[0]
    if top in WATCHED_EXTERNAL:
        return top
    if top not in PROJECT_TOPS:
        return None
    if name is not None:
        sub = f"{base}.{name}"
        if sub in known:
            return sub
        # `from tasc import methods` before tasc/methods.py exists: still a (missing) submodule
        if base in known and layer_of(sub) not in (layer_of(base), UNASSIGNED, EXTERNAL):
            return sub
    if base in known:
        return base
    # a module that does not exist: keep the longest existing prefix if it has the same layer
    parts = base.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in known and layer_of(prefix) == layer_of(base):
            return prefix
    return base


def module_imports(root: Path) -> ModuleImports:
    """Map every module of tasc/, studio/ and app.py to the project modules it imports.

    The sets also hold the watched third-party packages (gradio, torch, transformers) by their
    top-level name, so `violations` can check them. A module's import of itself is left out.
    """
    known = source_files(root)
    result = ModuleImports()
    for module, path in known.items():
        rel = path.relative_to(root).as_posix()
        result.files[module] = rel
        targets: set[str] = set()
        for base, name, line, where in _raw_imports(module, path):
            target = _target(base, name, known)
            if target is None or target == module:
                continue
            targets.add(target)
            result.sites.setdefault((module, target), []).append((rel, line, where))
        result[module] = targets
    return result


def _where(imports: Mapping[str, Iterable[str]], module: str, target: str) -> str:
    """`file:line` of the statements importing `target` in `module` (the file alone if unknown)."""
    sites = getattr(imports, "sites", {}).get((module, target))
    if sites:
        return ", ".join(
            f"{path}:{line}" + (f" [{where}]" if where else "")
            for path, line, where in sorted(set(sites))
        )
    files = getattr(imports, "files", {})
    if module in files:
        return files[module]
    return "app.py" if module == "app" else module.replace(".", "/") + ".py"


def violations(imports: Mapping[str, Iterable[str]]) -> list[str]:
    """Every import that breaks the layering, as one readable sentence each."""
    found: list[str] = []
    for module in sorted(imports):
        layer = layer_of(module)
        in_tasc = module.split(".")[0] == "tasc"
        if layer == UNASSIGNED:
            found.append(
                f"{_where(imports, module, '')}: module {module} is in no layer "
                f"(move it under one of tasc/{{core,spec,ft,compare,bench,commands}}/ "
                f"or add it to LAYERS in scripts/import_graph.py)"
            )
        for target in sorted(imports[module]):
            where = _where(imports, module, target)
            target_layer = layer_of(target)
            if target_layer == EXTERNAL:
                forbidden = FORBIDDEN_EXTERNAL.get(module, frozenset())
                if in_tasc and target == "gradio":
                    found.append(
                        f"{where}: {module} (layer {layer}) imports gradio; "
                        f"gradio belongs in studio/ and app.py only"
                    )
                elif target in forbidden:
                    found.append(
                        f"{where}: {module} imports {target}; "
                        f"it must stay a plain data structure without {', '.join(sorted(forbidden))}"
                    )
                continue
            if in_tasc and target_layer in ("studio", "app"):
                found.append(
                    f"{where}: {module} (layer {layer}) imports {target}; "
                    f"nothing under tasc/ may import {target_layer}"
                )
                continue
            if layer in RANK and target_layer in RANK and RANK[target_layer] > RANK[layer]:
                found.append(
                    f"{where}: {module} (layer {layer}) imports {target} "
                    f"from the higher layer {target_layer}"
                )
    return found


def _sccs(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of a directed graph (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _shortest_cycle(graph: Mapping[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child not in within:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if child not in seen:
                    seen.add(child)
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start]


def cycles(imports: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Import cycles between project modules, each as [a, b, ..., z] where z imports a.

    Found from the strongly connected components of the module graph (all imports, lazy ones
    included); every module of a component lies on at least one of the cycles returned.
    """
    graph = {
        module: {t for t in targets if t in imports and t != module}
        for module, targets in imports.items()
    }
    found: list[list[str]] = []
    for component in _sccs(graph):
        if len(component) < 2:
            continue
        members = set(component)
        covered: set[str] = set()
        for module in component:
            if module in covered:
                continue
            cycle = _shortest_cycle(graph, module, members)
            covered.update(cycle)
            found.append(cycle)
    return found


def describe_cycle(imports: Mapping[str, Iterable[str]], cycle: list[str]) -> str:
    """One sentence for a cycle: each hop with the file:line that makes it."""
    hops = [
        f"{a} -> {b} ({_where(imports, a, b)})" for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=False)
    ]
    return "import cycle: " + "; ".join(hops)


def layer_edges(imports: Mapping[str, Iterable[str]]) -> Counter[tuple[str, str]]:
    """Count module-to-module imports between distinct layers: (from, to) -> count."""
    counts: Counter[tuple[str, str]] = Counter()
    for module, targets in imports.items():
        source = layer_of(module)
        for target in targets:
            dest = layer_of(target)
            if dest != EXTERNAL and dest != source:
                counts[(source, dest)] += 1
    return counts


def mermaid(imports: Mapping[str, Iterable[str]]) -> str:
    """A Mermaid flowchart of the imports between layers, edges labelled with their counts."""
    modules = Counter(layer_of(module) for module in imports)
    edges = layer_edges(imports)
    present = [layer for layer in (*LAYERS, UNASSIGNED) if modules[layer]]
    present += [
        layer for pair in edges for layer in pair if layer not in present and layer != EXTERNAL
    ]
    lines = ["flowchart TD"]
    for layer in reversed(present):
        count = modules[layer]
        noun = "module" if count == 1 else "modules"
        lines.append(f'    {layer}["{layer}<br/>{count} {noun}"]')

    def order(pair: tuple[str, str]) -> tuple[int, int]:
        return (-RANK.get(pair[0], len(LAYERS)), -RANK.get(pair[1], len(LAYERS)))

    for source, dest in sorted(edges, key=order):
        upward = RANK.get(dest, -1) > RANK.get(source, len(LAYERS))
        arrow = "-.->" if upward else "-->"
        label = f"{edges[(source, dest)]} upward!" if upward else str(edges[(source, dest)])
        lines.append(f"    {source} {arrow}|{label}| {dest}")
    return "\n".join(lines) + "\n"


README_BEGIN, README_END = "<!-- IMPORTS:BEGIN -->", "<!-- IMPORTS:END -->"


def readme_diagram(imports: Mapping[str, Iterable[str]]) -> str:
    """The README's block between its IMPORTS markers: the layer diagram as a Mermaid code block."""
    return f"{README_BEGIN}\n```mermaid\n{mermaid(imports)}```\n{README_END}"


def with_diagram(readme: str, imports: Mapping[str, Iterable[str]]) -> str:
    """The README text with the block between its IMPORTS markers replaced by today's diagram."""
    start, end = readme.index(README_BEGIN), readme.index(README_END) + len(README_END)
    return readme[:start] + readme_diagram(imports) + readme[end:]


def main(argv: list[str] | None = None) -> int:
    """Print the layering violations and import cycles; exit 1 if there are any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root")
    parser.add_argument("--readme", type=Path, metavar="PATH",
                        help="rewrite the layer diagram between the README's IMPORTS markers")
    args = parser.parse_args(argv)

    imports = module_imports(args.root)
    problems = violations(imports)
    loops = cycles(imports)
    for problem in problems:
        print(problem)
    for loop in loops:
        print(describe_cycle(imports, loop))
    edges = sum(layer_of(t) != EXTERNAL for targets in imports.values() for t in targets)
    print(
        f"{len(imports)} modules, {edges} imports between them: "
        f"{len(problems)} layering violation(s), {len(loops)} import cycle(s)"
    )
    if args.readme:
        args.readme.write_text(with_diagram(args.readme.read_text(encoding="utf-8"), imports), encoding="utf-8")
        print(f"wrote the layer diagram into {args.readme}")
    return 1 if problems or loops else 0


if __name__ == "__main__":
    sys.exit(main())
