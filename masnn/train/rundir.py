"""Run directories: created atomically, never shared, their state readable at a glance.

A run directory ``<run.out_dir>/<run.name>`` is claimed with an exclusive create of its
``status.json`` (``os.mkdir`` for auto names), so two processes never share one. Auto names are
``<date>-<time>-<model>-<hash6>``, with ``-2``, ``-3``, ... appended when taken.
``status.json`` says ``running`` (with the pid), ``failed`` (with the one-line error) or
``finished``; a directory left ``running`` by a dead process is an interrupted run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from masnn.errors import MasnnError
from masnn.fsutil import FileSystemError, describe_os_error, write_text
from masnn.train.config import TrainConfig

STATUS = "status.json"
#: Files that mark a directory as a masnn run (``--replace`` deletes only such directories).
RUN_FILES = (STATUS, "config.yaml", "run.json", "checkpoint.pt", "best.pt", "metrics.json")


class RunDirError(MasnnError):
    """A run directory cannot be used as asked; the message says why and what to do."""


def read_status(run_dir: Path) -> dict[str, Any]:
    """``status.json`` of a run (``{"state": "unknown"}`` when absent or unreadable)."""
    try:
        st = json.loads((run_dir / STATUS).read_text())
        return st if isinstance(st, dict) else {"state": "unknown"}
    except (OSError, ValueError):
        if (run_dir / "metrics.json").is_file():
            return {"state": "finished"}
        return {"state": "unknown"}


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except OSError:
        return True
    return True


def describe(run_dir: Path) -> str:
    """What a run directory holds, in words: finished, failed (why), interrupted, running."""
    st = read_status(run_dir)
    state = st.get("state")
    if (run_dir / "metrics.json").is_file() or state == "finished":
        return "a finished run"
    ck = run_dir / "checkpoint.pt"
    at = "no checkpoint yet"
    if ck.is_file():
        at = "a checkpoint"
    if state == "failed":
        return f"a failed run ({at}; error: {st.get('error', '?')})"
    if state == "running" and st.get("host") == platform.node() and _pid_alive(st.get("pid")):
        return f"a run in progress (pid {st.get('pid')})"
    return f"an interrupted run ({at})"


def collision_message(run_dir: Path) -> str:
    """Why ``run_dir`` cannot be used, and the commands that continue or replace it."""
    what = describe(run_dir)
    hints = []
    if (run_dir / "checkpoint.pt").is_file() and not what.startswith("a finished"):
        hints.append(f"continue it with --resume {run_dir}")
    hints.append("start it again with --replace")
    hints.append("or pick another run.name")
    return f"run directory {run_dir} already holds {what}: " + ", ".join(hints)


def _claim(run_dir: Path) -> bool:
    """Exclusive create of ``status.json``; False if another run already owns ``run_dir``."""
    try:
        fd = os.open(run_dir / STATUS, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    set_status(run_dir, "running")
    return True


def set_status(run_dir: Path, state: str, **extra: Any) -> None:
    """Write ``status.json`` (atomically)."""
    doc = {
        "state": state,
        "pid": os.getpid(),
        "host": platform.node(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }
    write_text(run_dir / STATUS, json.dumps(doc, indent=1) + "\n")


def auto_name(cfg: TrainConfig) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model.name}-{cfg.hash()[:6]}"


def create_run_dir(cfg: TrainConfig, *, replace: bool = False) -> Path:
    """Create and claim a fresh run directory for ``cfg`` (see the module docstring).

    Raises:
        RunDirError: ``run.name`` is taken (the message says by what and how to resume or
            replace it).
        FileSystemError: ``run.out_dir`` cannot be created or written.
    """
    out = Path(cfg.run.out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.run.name is None:
            base = auto_name(cfg)
            for k in range(1, 10_000):
                run_dir = out / (base if k == 1 else f"{base}-{k}")
                try:
                    run_dir.mkdir()
                except FileExistsError:
                    continue
                if _claim(run_dir):
                    return run_dir
            raise RunDirError(f"no free run directory name under {out} for {base}")
        run_dir = out / cfg.run.name
        if replace and run_dir.exists():
            remove_run(run_dir)
        run_dir.mkdir(exist_ok=True)
        if not run_dir.is_dir():
            raise RunDirError(f"run directory {run_dir} is a file; pick another run.name")
        others = [p for p in run_dir.iterdir() if p.name != STATUS]
        if others or not _claim(run_dir):
            raise RunDirError(collision_message(run_dir))
        return run_dir
    except OSError as exc:
        raise FileSystemError(describe_os_error(exc, out, "create a run directory in")) from exc


def remove_run(run_dir: Path) -> None:
    """Delete a run directory for ``--replace``; refuse anything that is not a masnn run."""
    if not run_dir.is_dir():
        raise RunDirError(f"--replace: {run_dir} is not a directory")
    names = {p.name for p in run_dir.iterdir()}
    if names and not names & set(RUN_FILES):
        raise RunDirError(f"--replace: {run_dir} does not look like a masnn run; not deleting it")
    if "a run in progress" in describe(run_dir):
        raise RunDirError(f"--replace: {run_dir} is {describe(run_dir)}; not deleting it")
    shutil.rmtree(run_dir)


def resolve_resume(path: str | os.PathLike[str]) -> Path:
    """The ``checkpoint.pt`` to resume from ``path`` (a run directory or a checkpoint).

    Raises:
        RunDirError: the run is finished, or failed before its first checkpoint (with the
            command that starts it again).
    """
    p = Path(path)
    run_dir = p if p.is_dir() else p.parent
    ck = p / "checkpoint.pt" if p.is_dir() else p
    if (run_dir / "metrics.json").is_file() and ck.name == "checkpoint.pt":
        try:
            acc = json.loads((run_dir / "metrics.json").read_text())["test"]["acc"]
            done = f" (test accuracy {100 * acc:.2f} %)"
        except (OSError, ValueError, KeyError, TypeError):
            done = ""
        raise RunDirError(
            f"--resume {path}: the run in {run_dir} is finished{done}; nothing to resume "
            "(evaluate it with masnn eval, or start it again with --replace)"
        )
    if "a run in progress" in describe(run_dir) and read_status(run_dir).get("pid") != os.getpid():
        raise RunDirError(f"--resume {path}: {run_dir} is {describe(run_dir)}; let it finish")
    if not ck.is_file() and (run_dir / STATUS).is_file():
        raise RunDirError(
            f"--resume {path}: {run_dir} holds {describe(run_dir)}; there is nothing to resume "
            f"- start it again with --replace --set run.name={run_dir.name}"
        )
    return ck
