"""The house rules of humanlike_tui's imports, checked over the real import graph (every `import` in a
module, at module level or inside a function: a lazy import is still a dependency).

    ui -> engine -> core        core = config, events, errors, paths, records, formatting, protocols, energy, fileio
    cli/commands -> ui | engine | core

- core imports nothing of ours outside core, and no torch, transformers or textual;
- the engine never imports the UI, the CLI or textual;
- the UI reaches the engine only through its service adapters (ui/services.py, ui/chat_services.py),
  and only inside functions, so the first frame never waits for torch; screens and widgets import
  protocols and records, never engine modules and never another screen (shared dialogs are fine);
- no circles among our modules;
- no private names (`_name`) taken from another module;
- rooms of the engine that stay independent of each other (ROOM_RULES): evaluation never imports training,
  data never imports models.

`violations(root)` returns every broken rule as a line of text; the contract test asserts it is empty,
and shows that it is not when a forbidden import is added to a copy of the package.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "humanlike_tui"
CORE = {f"{PACKAGE}.{m}" for m in ("config", "events", "errors", "paths", "records", "formatting", "protocols",
                                   "energy", "fileio")}
CORE |= {PACKAGE, f"{PACKAGE}.presets", f"{PACKAGE}.data"}
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "trl", "accelerate", "datasets")
UI_ADAPTERS = {f"{PACKAGE}.ui.services", f"{PACKAGE}.ui.chat_services"}
# (importing room, forbidden room, why): a room is a package under humanlike_tui.engine.
ROOM_RULES = [
    ("evaluation", "training", "scoring never depends on training (log-probs live in engine/logprobs.py)"),
    ("data", "models", "data needs only a tokenizer, which its caller loads (the hub check lives in engine/hub.py)"),
]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str  # a module of ours, or an outside top-level package
    line: int
    lazy: bool  # inside a function
    names: tuple[str, ...]  # names taken by `from target import ...`


def module_names(root: Path) -> dict[str, Path]:
    out = {}
    for path in (root / PACKAGE).rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str:
    """The longest prefix of `name` that is one of our modules (or its top-level package if outside)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in mods:
            return ".".join(parts[:i])
    return parts[0]


@functools.lru_cache(maxsize=None)
def _parsed(source: str) -> tuple[tuple[ast.AST, ...], frozenset[int]]:
    """Every node of a module, and the lines of its imports inside functions. Walked once per distinct text:
    the contract test checks many copies of the same package, and the walks are most of its time."""
    tree = ast.parse(source)
    nodes = tuple(ast.walk(tree))
    lazy_lines = frozenset(n.lineno for f in nodes if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                           for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return nodes, lazy_lines


def edges_of(module: str, path: Path, mods: dict[str, Path]) -> list[Edge]:
    nodes, lazy_lines = _parsed(path.read_text(encoding="utf-8"))
    out = []
    for node in nodes:
        lazy = getattr(node, "lineno", 0) in lazy_lines
        if isinstance(node, ast.Import):
            out += [Edge(module, _resolve(a.name, mods), node.lineno, lazy, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:  # `from pkg import submodule` is an edge to the submodule
                sub = f"{node.module}.{a.name}"
                target = sub if sub in mods else _resolve(node.module, mods)
                out.append(Edge(module, target, node.lineno, lazy, () if sub in mods else (a.name,)))
    return [e for e in out if e.target != module]


def layer(module: str) -> str:
    if module in CORE:
        return "core"
    for name in ("engine", "ui", "commands"):
        if module.startswith(f"{PACKAGE}.{name}.") or module == f"{PACKAGE}.{name}":
            return name
    if module.startswith(PACKAGE):
        return "cli"  # cli.py, __main__.py
    return "outside"


ALLOWED = {"core": {"core"}, "engine": {"engine", "core"}, "ui": {"ui", "core", "engine"},
           "commands": {"commands", "cli", "ui", "engine", "core"}, "cli": {"cli", "commands", "ui", "core"}}


def _edge_problems(e: Edge, mods: dict[str, Path]) -> list[str]:
    where = f"{e.source} (line {e.line}) imports {e.target}"
    src, dst = layer(e.source), layer(e.target)
    out = []
    if dst == "outside":
        top = e.target.split(".")[0]
        if src in ("core", "engine") and top == "textual":
            out.append(f"{where}: only the UI may import textual")
        if src == "core" and top in HEAVY:
            out.append(f"{where}: core modules stay stdlib-light (no {top})")
        if src == "ui" and top in HEAVY and not e.lazy:
            out.append(f"{where}: the UI imports {top} only inside functions (the first frame must not wait for it)")
        return out
    if dst not in ALLOWED[src]:
        out.append(f"{where}: {src} may not import {dst} (ui -> engine -> core)")
    if src == "ui" and dst == "engine":
        if e.source not in UI_ADAPTERS:
            out.append(f"{where}: screens and widgets reach the engine through the service protocols, "
                       "not engine modules")
        elif not e.lazy:
            out.append(f"{where}: the UI's adapters import the engine only inside functions")
    if ".ui.screens." in e.source and ".ui.screens." in e.target and not e.target.endswith("dialogs"):
        out.append(f"{where}: a screen never imports another screen")
    out += _room_problems(e, where)
    private = [n for n in e.names if n.startswith("_") and not n.startswith("__")]
    if private:
        out.append(f"{where}: takes private name(s) {', '.join(private)} from another module")
    return out


def _in_room(module: str, room: str) -> bool:
    name = f"{PACKAGE}.engine.{room}"
    return module == name or module.startswith(name + ".")


def _room_problems(e: Edge, where: str) -> list[str]:
    return [f"{where}: {src} may not import {dst}: {why}" for src, dst, why in ROOM_RULES
            if _in_room(e.source, src) and _in_room(e.target, dst)]


def _private_attributes(module: str, path: Path, mods: dict[str, Path]) -> list[str]:
    """`alias._name` where alias is one of our modules imported here."""
    nodes, _ = _parsed(path.read_text(encoding="utf-8"))
    aliases = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                if f"{node.module}.{a.name}" in mods:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    out = []
    for node in nodes:
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.append(f"{module} (line {node.lineno}) uses private {aliases[node.value.id]}.{node.attr}")
    return out


def _circles(graph: dict[str, set[str]]) -> list[str]:
    """Strongly connected components with more than one module (Tarjan), each as one problem."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[str] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append("import circle: " + " -> ".join(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def violations(root: Path) -> list[str]:
    mods = module_names(root)
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    for module, path in sorted(mods.items()):
        for e in edges_of(module, path, mods):
            problems += _edge_problems(e, mods)
            # A package's __init__ re-exporting its own modules is not a circle with them.
            if e.target in mods and not module.startswith(e.target + ".") and not e.target.startswith(module + "."):
                graph.setdefault(module, set()).add(e.target)
        problems += _private_attributes(module, path, mods)
    return problems + _circles(graph)
