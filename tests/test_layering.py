"""Package layering: imports run one way (lazy imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flashsim"

# package -> flashsim packages/modules it must never import
FORBIDDEN = {
    "flashsim.models": ("flashsim.objects", "flashsim.generation", "flashsim.refdet",
                        "flashsim.production", "flashsim.processor", "flashsim.simulation"),
    "flashsim.generation": ("flashsim.refdet", "flashsim.production", "flashsim.objects",
                            "flashsim.models"),
    "flashsim.refdet": ("flashsim.generation", "flashsim.production", "flashsim.objects",
                        "flashsim.models"),
    "flashsim.objects": ("flashsim.production", "flashsim.processor", "flashsim.simulation",
                         "flashsim.generation", "flashsim.refdet"),
    "flashsim.pdg": ("flashsim.",),
    "flashsim.clustering": ("flashsim.",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.startswith("flashsim")}


MODULES = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("layer", FORBIDDEN)
def test_imports_run_one_way(layer):
    members = [m for m in MODULES if m == layer or m.startswith(layer + ".")]
    assert members, layer
    bad = {m: sorted(i for i in MODULES[m] if i.startswith(FORBIDDEN[layer]))
           for m in members}
    assert not {m: b for m, b in bad.items() if b}


def test_scan_sees_lazy_imports():
    """The scan is not blind: imports inside functions count (runtime loads objects lazily)."""
    assert any(i.startswith("flashsim.objects") for i in MODULES["flashsim.runtime"])
