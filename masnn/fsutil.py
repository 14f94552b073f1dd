"""The one atomic-write helper, cross-process locks and file-system error messages.

Every file masnn writes (AEDAT recordings, checkpoints, run logs, the synthetic set's text
files, cache entries) goes through :func:`atomic_write`: the bytes go to a hidden temporary
``.<name>.tmp<pid>`` in the target's directory, are flushed and ``fsync``-ed, then renamed over
the target (and the directory is ``fsync``-ed). A failure at any point (disk full, permission,
a kill) leaves the previous file untouched; the temporary file is removed on failure, and
:func:`remove_stale_temps` removes those a killed process left behind.

Locks are :class:`filelock.FileLock` (``fcntl`` on POSIX, ``msvcrt`` on Windows). A lock file
is left in place after release (deleting it would race with a waiting process); the callers
keep lock files out of run and dataset directories.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from masnn.errors import MasnnError

_TMP_MARK = ".tmp"


class FileSystemError(MasnnError):
    """An environment fault (permission, disk full, a file where a directory belongs, ...).

    The message is one line naming the path and what to do.
    """


def temp_name(path: Path) -> Path:
    """The temporary sibling :func:`atomic_write` uses for ``path`` in this process."""
    return path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")


def _fsync_dir(d: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    Args:
        path: the target file (its directory must exist or is created).
        mode: ``"wb"`` or ``"w"`` (text, UTF-8, ``\\n`` line ends).

    Raises:
        FileSystemError: the write failed (disk full, permission, ...); names the path. The
            previous ``path`` and no temporary file are left.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    tmp = temp_name(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        kw: dict[str, Any] = {"encoding": "utf-8", "newline": "\n"} if mode == "w" else {}
        with open(tmp, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise FileSystemError(describe_os_error(exc, target, "write")) from exc
    except RuntimeError as exc:  # torch.save wraps the OSError of its zip writer
        import shutil

        try:
            full = shutil.disk_usage(target.parent).free < (1 << 20)
        except OSError:
            full = False
        why = "no space left on the device" if full else " ".join(str(exc).split())[:200]
        raise FileSystemError(f"cannot write {target}: {why}{_space_hint(target)}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temporary sibling name; rename it to ``path`` when complete.

    Every file in it is ``fsync``-ed before the rename. If ``path`` appears meanwhile (another
    process won the race), the rename fails and ``path`` is left as that process wrote it.

    Raises:
        FileSystemError: creating or filling the directory failed; names the path. No
            temporary directory is left.
    """
    import shutil
    import uuid

    target = Path(path)
    tmp = target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        yield tmp
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
        _fsync_dir(target.parent)
    except OSError as exc:
        raise FileSystemError(describe_os_error(exc, target, "write")) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, OverflowError):
        return True  # exists but not ours, or cannot tell: keep its files
    return True


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove ``.<name>.tmp<pid>`` files (and directories) of processes that no longer run.

    Returns:
        the removed paths.
    """
    import shutil

    d = Path(directory)
    removed: list[Path] = []
    if not d.is_dir():
        return removed
    for p in d.glob(f".*{_TMP_MARK}*"):
        tail = p.name.rsplit(_TMP_MARK, 1)[-1]
        pid_s = tail.split("-")[0]
        if not pid_s.isdigit() or _pid_alive(int(pid_s)):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        removed.append(p)
    return removed


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], timeout: float = -1) -> Iterator[None]:
    """Hold an exclusive cross-process lock on ``path`` (created if absent)."""
    from filelock import FileLock, Timeout

    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(p), timeout=timeout)
        lock.acquire()
    except Timeout:
        raise FileSystemError(f"{p}: held by another process for more than {timeout} s") from None
    except OSError as exc:
        raise FileSystemError(describe_os_error(exc, p, "lock")) from exc
    try:
        yield
    finally:
        lock.release()


def _space_hint(path: Path) -> str:
    return f"; free space on the file system of {path.parent} or choose another directory"


def describe_os_error(exc: OSError, path: str | os.PathLike[str] | None, action: str) -> str:
    """One line for an ``OSError``: what failed, on which path, and what to do."""
    where = Path(exc.filename) if getattr(exc, "filename", None) else path
    code = exc.errno
    reason = exc.strerror or str(exc)
    hint = ""
    if code == errno.ENOSPC:
        hint = f"; free space on the file system of {where} or choose another directory"
        reason = "no space left on the device"
    elif code == errno.EDQUOT:
        hint = "; the disk quota is exhausted"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "; choose a writable directory"
    elif code == errno.ENOTDIR:
        reason = "a path component is a file, not a directory"
    elif code == errno.EEXIST:
        reason = "already exists (as a file?)"
    return f"cannot {action} {where}: {reason}{hint}"


def check_writable_dir(path: str | os.PathLike[str], key: str, writable: bool = True) -> Path:
    """Make sure ``path`` is (or can be created as) a directory, writable unless ``writable``
    is false; return it.

    Raises:
        FileSystemError: naming the config ``key`` and the path.
    """
    p = Path(path).expanduser()
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise FileSystemError(
            f"{key}={str(p)!r}: {probe} is a file, not a directory; choose a directory"
        )
    if writable and not os.access(probe, os.W_OK | os.X_OK):
        raise FileSystemError(f"{key}={str(p)!r}: {probe} is not writable; choose a directory")
    return p


def tree_checksum(obj: Any) -> str:
    """A content checksum of a nested structure of tensors, arrays and plain values.

    Tensors and arrays contribute their dtype, shape and bytes; dict keys are visited in
    insertion order (which ``torch.save`` preserves).
    """
    import numpy as np
    import torch

    h = hashlib.sha256()

    def visit(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(o, np.ndarray):
            h.update(f"A{o.dtype}{o.shape}".encode())
            h.update(np.ascontiguousarray(o).tobytes())
        elif isinstance(o, dict):
            h.update(b"{")
            for k, v in o.items():
                h.update(repr(k).encode())
                visit(v)
            h.update(b"}")
        elif isinstance(o, (list, tuple)):
            h.update(b"[" if isinstance(o, list) else b"(")
            for v in o:
                visit(v)
            h.update(b"]")
        else:
            h.update(repr(o).encode())

    visit(obj)
    return h.hexdigest()


def file_crc32(path: str | os.PathLike[str], chunk: int = 1 << 24) -> int:
    """CRC-32 of a file's bytes (fast enough for multi-GB cache entries)."""
    crc = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return crc
            crc = zlib.crc32(b, crc)
