"""Compile-on-first-use for the fused CPU LIF: one shared library, cached per source and CPU.

The kernel (``lif_cpu.cpp``, plain C ABI, no torch headers) is compiled with the system C++
compiler (``$MASNN_CXX``, else ``$CXX``, else ``g++``) and loaded with :mod:`ctypes`. No
Python headers, pybind11 or ninja are needed; a build takes about 20 s of one core, once. The
library links ``libgomp.so.1``; torch has already loaded its own copy under that name, so the
kernel shares torch's OpenMP runtime (one thread pool).

Cache: ``$TORCH_EXTENSIONS_DIR`` (torch's own variable; default
``~/.cache/torch_extensions``) / ``masnn_lif_<key>/``, where ``<key>`` hashes the source, the
compiler's version, the flags and the CPU's feature flags: ``-march=native`` code is never
loaded on a CPU it was not built for. The library is written to a temporary name and renamed
into place, so concurrent first uses (DDP ranks) cannot see a half-written file.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_log = logging.getLogger("masnn.neurons.backends")

#: Messages :func:`log_once` has logged in this process (shared by every fused-kernel module).
LOGGED: set[str] = set()


def log_once(logger: logging.Logger, level: int, msg: str) -> None:
    """Log ``msg`` the first time it occurs in this process (fallback reasons, build failures)."""
    if msg not in LOGGED:
        LOGGED.add(msg)
        logger.log(level, msg)


def ptr(t: torch.Tensor | None) -> int | None:
    """A tensor's data pointer for a kernel call through ctypes (``None``: a null pointer)."""
    return None if t is None else t.data_ptr()


def dtype_suffix(dtype: torch.dtype) -> str:
    """The kernels' entry-point suffix of a float32 / float64 tensor."""
    return "f32" if dtype.itemsize == 4 else "f64"


SOURCE = Path(__file__).with_name("lif_cpu.cpp")
#: The LIF step shared by both CPU kernels (``#include``d; hashed into each build key).
COMMON = Path(__file__).with_name("lif_common.h")
FLAGS = (
    "-O3",
    "-march=native",
    "-ffp-contract=off",  # no fused multiply-add: the forward pass equals the reference bit for bit
    "-fno-math-errno",
    "-fopenmp",
    "-fPIC",
    "-shared",
    "-std=c++17",
)


#: Tried when ``FLAGS`` fail (e.g. a compiler without OpenMP or ``-march=native``): a portable,
#: single-threaded build (the OpenMP pragmas are ignored).
FALLBACK_FLAGS = tuple(f for f in FLAGS if f not in ("-march=native", "-fopenmp")) + (
    "-Wno-unknown-pragmas",
)


class BuildError(RuntimeError):
    """The fused kernel could not be compiled or loaded."""


def compiler() -> str:
    """The C++ compiler command: ``$MASNN_CXX``, else ``$CXX``, else ``g++``."""
    return os.environ.get("MASNN_CXX") or os.environ.get("CXX") or "g++"


def cache_root() -> Path:
    """``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions`` (torch's default root)."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "torch_extensions"


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def build_key(cxx: str, sources: tuple[Path, ...] = (SOURCE,)) -> str:
    """Hash of everything the binary depends on: sources, compiler version, flags, CPU."""
    try:
        version = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        raise BuildError(f"C++ compiler {cxx!r} not usable ({exc})") from None
    h = hashlib.sha256()
    flags = " ".join(FLAGS) + " | " + " ".join(FALLBACK_FLAGS)
    for part in (*(p.read_bytes() for p in sources), version.encode(), flags.encode()):
        h.update(part)
        h.update(b"\0")
    h.update(f"{platform.machine()} {cpu_flags()}".encode())
    return h.hexdigest()[:16]


def _compile(cxx: str, out: Path, source: Path = SOURCE) -> None:
    try:
        _compile_with(cxx, out, FLAGS, source)
    except BuildError as first:
        try:
            _compile_with(cxx, out, FALLBACK_FLAGS, source)
        except BuildError:
            raise first from None
        _log.warning("%s built without OpenMP/-march=native (%s)", source.name, first)


def _compile_with(cxx: str, out: Path, flags: tuple[str, ...], source: Path = SOURCE) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out.parent)
    except OSError as exc:
        raise BuildError(f"cache directory {out.parent} not writable ({exc})") from None
    os.close(fd)
    cmd = [cxx, *flags, str(source), "-o", tmp]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            err = (res.stderr or res.stdout).strip().splitlines()
            raise BuildError(f"{' '.join(cmd)} failed: {err[0] if err else res.returncode}")
        os.replace(tmp, out)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"{' '.join(cmd)} failed: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL:
    """Compile (first use) or reuse the cached library and load it; raises :class:`BuildError`."""
    lib = load_shared("masnn_lif", (SOURCE, COMMON), "the fused LIF kernel")
    _declare(lib)
    return lib


@cache
def load_shared(stem: str, sources: tuple[Path, ...], what: str) -> ctypes.CDLL:
    """Compile ``sources[0]`` (first use; it may ``#include`` the others, which the cache key
    also hashes) or reuse the cached ``<stem>.so``, and load it; raises :class:`BuildError`."""
    if os.environ.get("MASNN_NO_BUILD"):
        raise BuildError("MASNN_NO_BUILD is set")
    import torch  # noqa: F401  (torch's libgomp.so.1 must be loaded first: one OpenMP runtime)

    cxx = compiler()
    if shutil.which(cxx) is None and not os.path.isfile(cxx):
        raise BuildError(f"C++ compiler {cxx!r} not found (set MASNN_CXX or CXX)")
    lib_path = cache_root() / f"{stem}_{build_key(cxx, sources)}" / f"{stem}.so"
    if not lib_path.is_file():
        _log.info("compiling %s: %s", what, lib_path)
        _compile(cxx, lib_path, sources[0])
    try:
        return ctypes.CDLL(str(lib_path))
    except OSError as exc:
        raise BuildError(f"cannot load {lib_path}: {exc}") from None


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.masnn_lif_chunk.restype = i64
    lib.masnn_lif_chunk.argtypes = []
    lib.masnn_lif_blocks.restype = i64
    lib.masnn_lif_blocks.argtypes = [i64, i64]
    for dt in ("f32", "f64"):
        fwd = getattr(lib, f"masnn_lif_forward_{dt}")
        fwd.restype = None
        fwd.argtypes = [p, p, p, p, p, i64, i64, p, i32]
        bwd = getattr(lib, f"masnn_lif_backward_{dt}")
        bwd.restype = None
        bwd.argtypes = [p, p, p, p, p, p, p, p, i64, i64, p, i32]
        bn_fwd = getattr(lib, f"masnn_bnlif_forward_{dt}")
        bn_fwd.restype = None
        bn_fwd.argtypes = [p, p, p, i64, i64, p, p, p, i64, i64, p, i32]
        bn_bwd = getattr(lib, f"masnn_bnlif_backward_{dt}")
        bn_bwd.restype = None
        bn_bwd.argtypes = [p, p, p, p, p, p, i64, i64, p, p, p, p, p, p, p, i64, i64, p, i32]
        bn_grad = getattr(lib, f"masnn_bn_input_grad_{dt}")
        bn_grad.restype = None
        bn_grad.argtypes = [p, p, p, p, p, p, i64, i64, i64, i32]
        bn_stats = getattr(lib, f"masnn_bn_plane_stats_{dt}")
        bn_stats.restype = None
        bn_stats.argtypes = [p, p, p, i64, i64, i32]
        pool_stats = getattr(lib, f"masnn_bn_pool_stats_{dt}")
        pool_stats.restype = None
        pool_stats.argtypes = [p, p, p, p, i64, i64, i64, i64, i32]
        avg_pool = getattr(lib, f"masnn_avg_pool_{dt}")
        avg_pool.restype = None
        avg_pool.argtypes = [p, p, i64, i64, i64, i64, i32]
        pool_sums = getattr(lib, f"masnn_bn_pool_grad_sums_{dt}")
        pool_sums.restype = None
        pool_sums.argtypes = [p, p, p, p, i64, i64, i64, i64, i64, i32]
        pool_grad = getattr(lib, f"masnn_bn_pool_input_grad_{dt}")
        pool_grad.restype = None
        pool_grad.argtypes = [p, p, p, p, p, p, i64, i64, i64, i64, i64, i32]
