"""Doctests over ``masnn/`` (pyproject ``--doctest-modules``): a module whose import needs an
optional package that is not installed is not collected (its own tests skip the same way)."""

from __future__ import annotations

import importlib.util

collect_ignore: list[str] = []
if importlib.util.find_spec("triton") is None:  # the Triton kernels import triton at module level
    collect_ignore.append("masnn/neurons/backends/_triton_kernels.py")
if importlib.util.find_spec("neurobench") is None:  # the NeuroBench wrapper needs neurobench
    collect_ignore.append("masnn/analysis/neurobench.py")
