"""The package layout drawn in the README's architecture section, checked from the source: every
``galclip`` import (at module level or inside a function) is read with :mod:`ast`, and the graph
of packages it makes must stay inside the allowed floors and have no cycle."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "galclip"

#: the plain modules at the bottom; they import only each other
GROUND = {"conventions", "storage", "config", "resume", "argtypes", "render", "modalities", "precision",
          "retrieval_metrics", "augment"}
#: package -> the packages it may import besides the ground floor (the README's last column)
ALLOWED = {
    "data": set(),
    "testing": {"data"},
    "sim": {"data"},
    "models": {"data"},
    "train": {"data", "models"},
    "search": {"data", "models"},
    "eval": {"data", "models", "sim", "search"},
    "serve": {"data", "models", "search", "eval"},
    "demo": {"data", "models", "sim", "train", "search", "eval"},
}
#: the lazy top-level API, the command line and ``python -m galclip``: they may import any floor
FACADES = {"galclip", "cli", "__main__"}


def _module_name(path: Path, src: Path = SRC) -> list[str]:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path, src: Path = SRC) -> set[str]:
    """Every galclip module ``path`` imports, absolute or relative."""
    here, found = _module_name(path, src), set()
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found |= {target} if target.startswith("galclip") else set()
            if target == "galclip":  # from galclip import storage, conventions
                found |= {f"galclip.{a.name}" for a in node.names
                          if (src / a.name).is_dir() or (src / f"{a.name}.py").is_file()}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("galclip")}
    return found


def _floor(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "galclip"
    return "ground" if parts[1] in GROUND else parts[1]


def package_graph(src: Path = SRC) -> dict[str, set[str]]:
    """floor -> the other floors its modules import (ground-floor modules count as one floor)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in src.rglob("*.py"):
        a = _floor(".".join(_module_name(path, src)))
        for target in _imports(path, src):
            b = _floor(target)
            if b != a and not (b == "galclip" and target == "galclip"):
                graph[a].add(b)
    return graph


def ground_graph(src: Path = SRC) -> dict[str, set[str]]:
    """ground-floor module -> the galclip modules it imports."""
    return {m: {".".join(t.split(".")[:2]) for t in _imports(src / f"{m}.py", src) if t != "galclip"}
            for m in GROUND}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its nodes in order), or None."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_every_package_imports_only_the_floors_below_it():
    graph = package_graph()
    assert set(graph) - FACADES - {"ground"} <= set(ALLOWED), sorted(graph)
    for pkg, targets in graph.items():
        if pkg in FACADES:
            continue
        allowed = {"ground"} if pkg == "ground" else ALLOWED[pkg] | {"ground"}
        assert targets <= allowed, f"galclip.{pkg} imports {sorted(targets - allowed)}"


def test_the_ground_floor_imports_only_itself():
    for module, targets in ground_graph().items():
        outside = {t for t in targets if t.split(".")[1] not in GROUND}
        assert not outside, f"galclip.{module} imports {sorted(outside)}"


def test_no_import_cycle_between_packages_or_ground_modules():
    assert cycle({k: v - {"galclip"} for k, v in package_graph().items()}) is None
    assert cycle({f"galclip.{k}": v for k, v in ground_graph().items()}) is None


def test_train_and_eval_do_not_import_each_other():
    graph = package_graph()
    assert "eval" not in graph["train"] and "train" not in graph["eval"]


@pytest.mark.parametrize("edge", [("eval", "galclip.train.runner"), ("train", "galclip.eval.metrics"),
                                  ("data", "galclip.search.api")])
def test_the_check_catches_a_forbidden_import(tmp_path, edge):
    """The checks above fail on a copy of the source with one forbidden import added."""
    import shutil

    pkg, target = edge
    src = tmp_path / "galclip"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("*.pyc", "static", "configs"))
    with open(src / pkg / "__init__.py", "a") as f:
        f.write(f"\n\ndef _late():\n    import {target}  # noqa: F401\n")
    graph = package_graph(src)
    assert target.split(".")[1] in graph[pkg] - (ALLOWED[pkg] | {"ground"})


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}}) is None
