"""The layers of server/ and sensors/: no module imports from a layer above its own, no import goes round in a
circle, and only the web layer touches Tornado's web framework.

The tool is this file: it reads every module with `ast` (nothing is imported or run) and follows every import
statement, the lazy ones inside functions and those under `if TYPE_CHECKING:` included (a type is a dependency
too). Lowest first:

    foundations  sensors/ (the chips' drivers and their descriptors), the server package itself (its version)
    config       server/config/: config.yaml → frozen dataclasses
    core         server/core/: the hub, the source contract and runner, the last-known state, small helpers
    readings     server/readings/: a reading, its body rules, its path, the history
    features     server/sources/, sensing/, display/, wall/, mqtt/, demo/: the parts of a Homeboard
    assembly     server/homeboard.py: builds the parts, starts and stops them
    web          server/web/: the Tornado application, every handler, the Host check
    commands     the `python -m ...` entry points

A module may import from its own layer and any below it. A new module must be placed in a layer here.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (  # lowest first
    ("foundations", ("server", "server.leanimports", "sensors")),
    ("config", ("server.config",)),
    ("core", ("server.core",)),
    ("readings", ("server.readings",)),
    (
        "features",
        ("server.sources", "server.sensing", "server.display", "server.wall", "server.mqtt", "server.demo"),
    ),
    ("assembly", ("server.homeboard",)),
    ("web", ("server.web",)),
    (
        "commands",
        (
            "server.__main__",
            "server.doctor",
            "server.display.__main__",
            "server.sources.strava.__main__",
            "sensors.__main__",
        ),
    ),
)
PACKAGES = ("server", "sensors")
EXACT = {"server"}  # the package's own __init__ only, not everything under it

# Tornado's web framework belongs to the web layer. The one other module that uses it is not Homeboard's web: the
# demo's stand-in of the remote APIs (weather, departures, Strava, calendars), a server of its own on another port.
TORNADO_WEB = ("tornado.web", "tornado.websocket", "tornado.routing", "tornado.httputil")
TORNADO_WEB_ELSEWHERE = {"server.demo.standin"}


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of the packages checked under `root`."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = module_files(REPO)


def layer_of(module: str) -> int:
    """Index in LAYERS: the most specific prefix that names the module or a package holding it."""
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            covers = module == prefix or (prefix not in EXACT and module.startswith(prefix + "."))
            if covers and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


@functools.cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def imports_of(module: str, modules: dict[str, Path] = MODULES) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import statement of `module`, resolved to the module it loads."""
    tree = _parse(modules[module])
    package = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield node.lineno, submodule if submodule in modules else base


def internal_imports(module: str, modules: dict[str, Path] = MODULES) -> Iterator[tuple[int, str]]:
    for line, target in imports_of(module, modules):
        if target in modules:
            yield line, target


def upward_imports(modules: dict[str, Path]) -> list[str]:
    return [
        f"{module}:{line} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module in modules
        for line, target in internal_imports(module, modules)
        if layer_of(target) > layer_of(module)
    ]


def circles(modules: dict[str, Path]) -> list[list[str]]:
    graph = {m: {t for _, t in internal_imports(m, modules) if t != m} for m in modules}
    return [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 100, "the packages were not found"
    unplaced = sorted(m for m in MODULES if layer_of(m) < 0)
    assert unplaced == [], "place these in a layer of tests/test_layers.py"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    assert upward_imports(MODULES) == []


def test_no_import_goes_round_in_a_circle() -> None:
    assert circles(MODULES) == []


def test_only_the_web_layer_imports_tornados_web_framework() -> None:
    web = dict(LAYERS)["web"]
    outside = [
        f"{module}:{line} imports {target}"
        for module in MODULES
        if not module.startswith(web) and module not in TORNADO_WEB_ELSEWHERE
        for line, target in imports_of(module)
        if target in TORNADO_WEB or target.startswith(tuple(f"{t}." for t in TORNADO_WEB))
    ]
    assert outside == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """The rules can fail: the core importing the assembly (as core/app.py once did, lazily and for a type) and two
    modules importing each other (as strava.py and strava_setup.py once did) are both caught."""
    files = {
        "server/__init__.py": "",
        "server/core/__init__.py": "",
        "server/core/hub.py": "def f():\n    from server.homeboard import Homeboard\n",
        "server/homeboard.py": "from server.core import hub\n",
        "server/sources/__init__.py": "",
        "server/sources/a.py": "from server.sources.b import x\n",
        "server/sources/b.py": "import typing\nif typing.TYPE_CHECKING:\n    from server.sources import a\n",
        "sensors/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    planted = module_files(tmp_path)
    assert upward_imports(planted) == ["server.core.hub:2 (core) imports server.homeboard (assembly)"]
    assert circles(planted) == [["server.core.hub", "server.homeboard"], ["server.sources.a", "server.sources.b"]]


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (a deep import chain must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root, targets in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(targets)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found
