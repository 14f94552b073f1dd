"""Run a script where the C++ compiler does not exist: the fused kernels' fallback checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_without_compiler(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter with ``MASNN_CXX`` pointing at no compiler and an
    empty extension cache; asserts it exited 0 and that nothing was built."""
    env = {
        **os.environ,
        "MASNN_CXX": str(tmp_path / "no-such-compiler"),
        "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"),
        "PYTHONPATH": str(REPO),
    }
    res = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "ext").exists() or not any((tmp_path / "ext").rglob("*.so"))
    return res


def assert_warned_once(res: subprocess.CompletedProcess[str], msg: str) -> None:
    """The fallback warning names the missing compiler and is logged once, not per call."""
    assert msg in res.stderr and "no-such-compiler" in res.stderr
    assert res.stderr.count(msg) == 1
