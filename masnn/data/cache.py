"""On-disk cache of preprocessed samples: built once, written atomically, keyed by content.

A cache entry is a directory ``<cache_root>/<name>-<key>/`` holding ``.npy`` arrays and a
``meta.json`` that records the key's inputs and the byte size of every array. It is built in a
sibling ``.tmp-<pid>-...`` directory and renamed into place only when complete, so a process
killed while writing leaves no entry (only a temporary directory, removed on the next build).
On load, ``meta.json`` and the array sizes are checked; a damaged entry is deleted and rebuilt.

The key is the SHA-1 of a JSON document covering: the raw files (name, size and mtime, or the
SHA-1 of small text files such as label CSVs), the preprocessing configuration (including any
``FrameCfg``) and the masnn version. Changing any of them selects a different entry.

The cache root is ``cache_dir`` if given, else ``$MASNN_CACHE``, else
``$XDG_CACHE_HOME/masnn`` (default ``~/.cache/masnn``): never the raw data directory, which may be
read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from masnn.version import __version__

META = "meta.json"
SMALL_FILE_BYTES = 1 << 20  # files up to this size are hashed; larger ones use size + mtime


def default_cache_root() -> Path:
    """``$MASNN_CACHE``, else ``$XDG_CACHE_HOME/masnn``, else ``~/.cache/masnn``."""
    env = os.environ.get("MASNN_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "masnn"


def fingerprint(paths: Iterable[str | os.PathLike[str]], base: str | os.PathLike[str]) -> list[Any]:
    """Identity of raw files: ``[relpath, size, sha1]`` for small files, else ``[relpath, size, mtime_ns]``."""
    out: list[Any] = []
    for p in sorted(Path(x) for x in paths):
        st = p.stat()
        rel = os.path.relpath(p, base)
        if st.st_size <= SMALL_FILE_BYTES:
            out.append([rel, st.st_size, hashlib.sha1(p.read_bytes()).hexdigest()])
        else:
            out.append([rel, st.st_size, st.st_mtime_ns])
    return out


def cache_key(parts: dict[str, Any]) -> str:
    """SHA-1 (16 hex digits) of ``parts`` plus the masnn version."""
    doc = json.dumps({"masnn": __version__, **parts}, sort_keys=True, default=repr)
    return hashlib.sha1(doc.encode()).hexdigest()[:16]


def _valid_entry(path: Path) -> bool:
    try:
        meta = json.loads((path / META).read_text())
        files = meta["files"]
        return all((path / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_dead_tmp(root: Path, name: str) -> None:
    for d in root.glob(f".tmp-{name}-*"):
        try:
            pid = int(d.name.split("-")[-2])
        except (ValueError, IndexError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def load_or_build(
    name: str,
    parts: dict[str, Any],
    build: Callable[[Path], dict[str, np.ndarray]],
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Path, dict[str, np.ndarray]]:
    """Return ``(entry_dir, arrays)`` for the entry keyed by ``parts``, building it if needed.

    Args:
        name: dataset and split, e.g. ``"dvs128_gesture-train"`` (a readable prefix).
        parts: everything the content depends on (JSON-serialisable; see :func:`cache_key`).
        build: called with a scratch directory; returns the arrays to store (name -> array). It
            may also write ``<name>.npy`` files into the directory itself (to stream large
            arrays); those are part of the entry too.
        cache_dir: cache root (default :func:`default_cache_root`).

    Returns:
        The entry directory and its arrays, memory-mapped read-only.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    key = cache_key(parts)
    entry = root / f"{name}-{key}"
    if entry.exists() and not _valid_entry(entry):
        shutil.rmtree(entry, ignore_errors=True)  # half-written or damaged: rebuild
    if not entry.exists():
        root.mkdir(parents=True, exist_ok=True)
        _remove_dead_tmp(root, name)
        tmp = root / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            arrays = build(tmp)
            for arr_name, arr in arrays.items():
                np.save(tmp / f"{arr_name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
            # arrays returned by ``build`` and ``.npy`` files it wrote itself (large ones)
            files = {f.name: f.stat().st_size for f in sorted(tmp.glob("*.npy"))}
            meta = {"name": name, "key": key, "masnn": __version__, "parts": parts}
            meta["files"] = files
            meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            (tmp / META).write_text(json.dumps(meta, indent=1, default=repr))
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            try:
                os.rename(tmp, entry)
            except OSError:
                if not _valid_entry(entry):  # someone else's rename won only if theirs is whole
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads((entry / META).read_text())
    return entry, {f[: -len(".npy")]: _load(entry / f) for f in meta["files"]}


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:  # zero-length arrays cannot be memory-mapped
        return np.load(path, allow_pickle=False)
