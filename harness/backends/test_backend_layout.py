"""Product code never imports the test doubles of the cluster tools."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_product_module_imports_the_fake_cluster_tools() -> None:
    offenders = []
    packages = ("base", "stages", "orchestrator", "harness", "platforms")
    for path in sorted(p for package in packages for p in (ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.name.startswith("test_") or "testing" in rel.parts:
            continue
        if any(name.startswith("harness.backends.testing") for name in _imports(path)):
            offenders.append(str(rel))
    assert offenders == [], f"product code imports test doubles: {offenders}"
    assert (ROOT / "harness/backends/testing/fake_cluster_tools.py").is_file()
