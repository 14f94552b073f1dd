"""masnn.events and masnn.frames are numpy-only; masnn.data imports torch only lazily."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "masnn"


@pytest.mark.parametrize("sub", ["events", "frames", "data"])
def test_no_module_level_torch_import(sub: str) -> None:
    for f in sorted((PKG / sub).glob("*.py")):
        tree = ast.parse(f.read_text())
        for node in tree.body:  # module level only; collate.py imports torch inside its function
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f
