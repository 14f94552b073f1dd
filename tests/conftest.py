"""Collection rules for the whole suite.

``--doctest-modules`` (pyproject ``addopts``) runs the package's docstring examples; under
``tests/`` only the test modules are collected: the helper scripts (torchrun workers, golden
makers) run code at import and are not modules to import.
"""

from __future__ import annotations

from pathlib import Path


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    name = collection_path.name
    if (
        collection_path.suffix == ".py"
        and not name.startswith("test_")
        and name not in ("conftest.py", "__init__.py")
    ):
        return True
    return None
