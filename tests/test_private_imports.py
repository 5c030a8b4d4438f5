"""No package of hyft imports another package's private names (``_name``): what one package needs from
another is part of that package's public surface. (import-linter sees modules, not names, so the rule
is checked here; the layer order itself is `lint-imports`, run by `make test`.)"""

from __future__ import annotations

import ast

from tests.conftest import REPO


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_package_imports_a_private_name_of_another():
    found = []
    for path in sorted((REPO / "hyft").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if (
                not isinstance(node, ast.ImportFrom)
                or node.level
                or not (node.module or "").startswith("hyft.")
            ):
                continue
            if _package(node.module) == _package(module):
                continue
            private = [alias.name for alias in node.names if alias.name.startswith("_")]
            private_module = any(part.startswith("_") for part in node.module.split("."))
            if private or private_module:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: from {node.module} import {private}")
    assert found == []
