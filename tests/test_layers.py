"""Dependencies point one way: a lower layer never imports a higher one; the public API is what __all__ says."""

from __future__ import annotations

import ast
from pathlib import Path

import routerforge

SRC = Path(routerforge.__file__).parent

# Lower number = lower layer. Modules at the package root (errors, config) are below everything.
LAYERS = {
    "errors": 0,
    "config": 0,
    "files": 0,
    "data": 1,
    "embed": 2,
    "index": 3,
    "routers": 4,
    "policy": 5,
    "evaluate": 6,
    "backends": 2,
    "judges": 3,
    "evalrun": 7,
    "tasks": 7,
    "gateway": 8,
    "sdk": 9,
    "integrations": 9.5,  # adapters for other tools (LiteLLM): above the SDK, below the CLI
    "cli": 10,
    "migrations": 11,
}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "routerforge" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, is_top_level) for every routerforge import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, id(node) in top_level) for alias in node.names)
    return [(m, t) for m, t in found if m.startswith("routerforge")]


def test_lower_layers_never_import_higher_ones() -> None:
    violations = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        own = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem
        if own not in LAYERS:
            continue
        for module, _ in _imports(path):
            other = _layer_of(module)
            if other is None or other == own or other not in LAYERS:
                continue
            if LAYERS[other] > LAYERS[own]:
                violations.append(f"{rel} imports {module}")
    assert not violations, "layer violations:\n" + "\n".join(violations)


def test_every_package_is_assigned_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), f"unassigned packages: {packages - set(LAYERS)}"


def test_public_api_is_importable() -> None:
    for name in routerforge.__all__:
        assert hasattr(routerforge, name), name
