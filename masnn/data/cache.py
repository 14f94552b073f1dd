"""On-disk cache of preprocessed samples: built once, written atomically, keyed by content.

A cache entry is a directory ``<cache_root>/<name>-<key>/`` holding ``.npy`` arrays and a
``meta.json`` that records the key's inputs, the byte size and the CRC-32 of every array. It is
built in a temporary sibling directory (:func:`masnn.fsutil.atomic_directory`) and renamed into
place only when complete, so a process killed while writing leaves no entry (only a temporary
directory, removed on the next build). On load, ``meta.json``, the sizes, the checksums and the
``.npy`` headers are checked; a damaged entry is named in a warning, deleted and rebuilt.

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
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from masnn.fsutil import (
    FileSystemError,
    atomic_directory,
    check_writable_dir,
    file_crc32,
    remove_stale_temps,
)
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


class CacheDamaged(Exception):
    """Internal: a cache entry failed verification (the message names the file)."""


def _verify_entry(path: Path) -> dict[str, Any]:
    """``meta.json`` of a whole, undamaged entry; raise :class:`CacheDamaged` naming the file."""
    try:
        meta = json.loads((path / META).read_text())
        files = meta["files"]
        sums = meta.get("crc32", {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CacheDamaged(f"{path / META}: unreadable ({exc})") from None
    for name, size in files.items():
        f = path / name
        try:
            if f.stat().st_size != size:
                raise CacheDamaged(f"{f}: {f.stat().st_size} bytes, meta.json says {size}")
            if name in sums and file_crc32(f) != sums[name]:
                raise CacheDamaged(f"{f}: content does not match its checksum")
        except OSError as exc:
            raise CacheDamaged(f"{f}: unreadable ({exc.strerror or exc})") from None
    return dict(meta)


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

    A damaged entry (size, checksum or ``.npy`` header) is named in a warning, removed and
    rebuilt once.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    check_writable_dir(root, "data.cache_dir", writable=False)
    key = cache_key(parts)
    entry = root / f"{name}-{key}"
    for attempt in (0, 1):
        if entry.exists():
            try:
                meta = _verify_entry(entry)
                arrays = {}
                for f in meta["files"]:
                    arrays[f[: -len(".npy")]] = _load(entry / f)
                return entry, arrays
            except CacheDamaged as exc:
                if attempt:
                    raise FileSystemError(
                        f"cache entry rebuilt but still unreadable: {exc}"
                    ) from None
                warnings.warn(
                    f"damaged cache entry removed and rebuilt: {exc}", UserWarning, stacklevel=2
                )
                shutil.rmtree(entry, ignore_errors=True)
        _build_entry(root, entry, name, key, parts, build)
    raise AssertionError("unreachable")  # pragma: no cover


def _build_entry(
    root: Path,
    entry: Path,
    name: str,
    key: str,
    parts: dict[str, Any],
    build: Callable[[Path], dict[str, np.ndarray]],
) -> None:
    check_writable_dir(root, "data.cache_dir")  # a read-only cache serves existing entries only
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(root)
    with atomic_directory(entry) as tmp:
        arrays = build(tmp)
        for arr_name, arr in arrays.items():
            np.save(tmp / f"{arr_name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        # arrays returned by ``build`` and ``.npy`` files it wrote itself (large ones)
        npys = sorted(tmp.glob("*.npy"))
        meta = {"name": name, "key": key, "masnn": __version__, "parts": parts}
        meta["files"] = {f.name: f.stat().st_size for f in npys}
        meta["crc32"] = {f.name: file_crc32(f) for f in npys}
        meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        (tmp / META).write_text(json.dumps(meta, indent=1, default=repr))


def _load(path: Path) -> np.ndarray:
    try:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:  # zero-length arrays cannot be memory-mapped
            if "header" in str(exc).lower() or "magic" in str(exc).lower():
                raise
            return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CacheDamaged(f"{path}: not a readable .npy array ({exc})") from None
