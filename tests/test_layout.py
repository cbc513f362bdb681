"""The package layout is the data flow: each stage imports only from the stages before it, and
no module takes part in an import circle (top-level or inside a function alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gwsproxy"

# The pipeline, first to last. A module may import from its own stage and earlier ones.
STAGES = (
    (
        "errors",
        "lenient",
        "redact",
        "processes",
        "tls",
    ),  # leaves: nothing of gwsproxy but each other
    ("bayeux",),
    ("gws",),
    ("correlate",),
    ("verdict",),
    ("capture",),
    ("record",),
    ("report", "report_har", "report_parquet"),
    ("replay",),
    ("swarm",),  # a capture replayed as load through Locust (its locustfile)
    ("sim",),
    ("testing",),
    ("tui",),
    ("demo", "cli"),  # the edges: the demo composes every stage, the command line runs them
)
RANK = {name: rank for rank, names in enumerate(STAGES) for name in names}


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every gwsproxy module that `path` imports, wherever the import statement stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gwsproxy"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("gwsproxy"):
                continue
            for alias in node.names:  # `from gwsproxy import gws` names a module
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {name for name in found if name != module}


def _known(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


FILES = {_module_of(p): p for p in sorted(PACKAGE.rglob("*.py"))}
MODULES = set(FILES)
GRAPH = {name: {_known(i) for i in _imports(path, name)} for name, path in FILES.items()}


def _stage(module: str) -> int:
    parts = module.split(".")
    return RANK[parts[1]] if len(parts) > 1 else -1


def test_every_module_belongs_to_a_stage() -> None:
    strays = sorted(m for m in MODULES if m != "gwsproxy" and m.split(".")[1] not in RANK)
    assert not strays, f"modules in no stage of the pipeline: {strays}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_from_earlier_stages(module: str) -> None:
    later = sorted(i for i in GRAPH[module] if _stage(i) > _stage(module))
    assert not later, f"{module} imports from a later stage: {later}"


def test_no_import_circle() -> None:
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> None:
        if node in path:
            cycle = path[path.index(node) :] + [node]
            pytest.fail("import circle: " + " -> ".join(cycle))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if nxt != "gwsproxy":
                visit(nxt)
        path.pop()
        done.add(node)

    for module in sorted(MODULES):
        visit(module)


def test_capture_framing_knows_nothing_of_correlation() -> None:
    for module in (m for m in MODULES if m.startswith("gwsproxy.capture")):
        assert all(i.startswith(("gwsproxy.capture", "gwsproxy.errors")) for i in GRAPH[module])
