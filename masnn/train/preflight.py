"""Checks a run makes before it loads any data (environment) and right after (data honesty).

Environment faults — a missing or file-valued data directory, a cache or output directory
that is a file or not writable — are reported in one line naming the config key and the path
before minutes of data loading, not as a traceback after them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masnn.data.cache import default_cache_root
from masnn.data.checks import check_empty_samples
from masnn.fsutil import FileSystemError, check_writable_dir
from masnn.train.config import TrainConfig

DOCS_HINT = "see docs/data.md for where to get it and the expected layout"


def check_data_sources(cfg: TrainConfig) -> None:
    """``run.out_dir``, ``data.cache_dir`` and ``data.root`` are usable.

    Raises:
        FileNotFoundError: a real dataset's ``data.root`` does not exist.
        FileSystemError: a directory is a file or not writable (names the key and path).
    """
    check_writable_dir(cfg.run.out_dir, "run.out_dir")
    cache = cfg.data.cache_dir if cfg.data.cache_dir is not None else default_cache_root()
    check_writable_dir(cache, "data.cache_dir", writable=False)  # writable: when building
    if cfg.data.dataset == "synth_gesture":
        if cfg.data.root is not None:
            root = Path(cfg.data.root).expanduser()
            if root.exists() and not root.is_dir():
                raise FileSystemError(
                    f"data.root={str(root)!r} is a file; the synthetic set needs a directory "
                    "(omit data.root for the default data dir)"
                )
        return
    root = Path(cfg.data.root or "").expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data.root={str(root)!r} does not exist ({DOCS_HINT})")
    if not root.is_dir():
        raise FileSystemError(f"data.root={str(root)!r} is a file, not a directory ({DOCS_HINT})")


def check_samples(data: Any, cfg: TrainConfig) -> None:
    """Empty samples (label windows without events) per ``data.empty_samples``.

    Only event datasets (framed subsets of a source) have label windows; static-image splits
    (ImageNet) have no ``source`` and nothing to check.
    """
    for split, ds in (("train", data.train), ("test", data.test)):
        source = getattr(ds, "source", None)
        if source is not None:
            check_empty_samples(source, split, cfg.data.empty_samples)


def config_diff(saved: TrainConfig, now: TrainConfig, limit: int = 4) -> str:
    """``key: saved -> now`` for the first keys where two configs differ (hashed keys only)."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict) and k != "kwargs":
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(saved.to_dict()), flat(now.to_dict())
    skip = {"notes", "run.name", "run.out_dir", "run.progress", "run.tensorboard"}
    diff = [k for k in a.keys() | b.keys() if k not in skip and a.get(k) != b.get(k)]
    diff.sort()
    shown = [f"{k}: {a.get(k)!r} in the checkpoint, {b.get(k)!r} now" for k in diff[:limit]]
    more = f" and {len(diff) - limit} more" if len(diff) > limit else ""
    return "; ".join(shown) + more
