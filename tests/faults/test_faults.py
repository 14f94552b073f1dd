"""The fault suite: every guarded failure, as a hostile or clumsy user meets it.

Each row of :data:`FAULTS` sets up a fault in a fresh directory, runs the ``masnn`` CLI in
process and checks the exit code, that stderr is ONE line matching the row's pattern (which
names the path or key), and what is on disk afterwards: the row's own check plus, for every
row, no temporary file, no lock file and no write outside the case's directory.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from masnn.cli import main
from masnn.train import checkpoint as ckpt_io
from masnn.train.config import OptimCfg
from tests.data.ibm_fixture import make_ibm
from tests.faults.conftest import copy_run
from tests.train.conftest import TINY_MODEL, tiny_overrides


@dataclass
class Ctx:
    """What a case gets: its own directory and the shared read-only fixtures."""

    tmp: Path
    gesture: Path
    gait: Path
    done: Path
    monkeypatch: pytest.MonkeyPatch
    data: dict[str, Any] = field(default_factory=dict)

    def over(
        self, root: Path | None = None, dataset: str = "dvs128_gesture", own_cache: bool = False
    ) -> list[str]:
        over = tiny_overrides(root or self.gesture, self.tmp, dataset) + TINY_MODEL
        if root is None and not own_cache:  # the finished run's cache: already built, shared
            over.append(f"data.cache_dir={self.done.parent.parent / 'cache'}")
        return over

    def ibm(self, train: dict | None = None, test: dict | None = None) -> Path:
        from tests.data import ibm_fixture as F

        return make_ibm(self.tmp / "ibm", train or F.TRAIN, test or F.TEST)


@dataclass
class Fault:
    id: str
    argv: Callable[[Ctx], list[str]]
    rc: int
    pattern: str
    check: Callable[[Ctx], None] | None = None
    one_line: bool = True


# ----------------------------------------------------------------------------- helpers


def _train(c: Ctx, *extra: str) -> list[str]:
    return ["train", "--set", *c.over(), *extra]


def _packets(path: Path) -> list[int]:
    data = path.read_bytes()
    pos = data.index(b"#!END-HEADER") + len(b"#!END-HEADER\r\n")
    out = []
    while pos + 28 <= len(data):
        out.append(pos)
        cap, size = (
            struct.unpack_from("<i", data, pos + 20)[0],
            struct.unpack_from("<i", data, pos + 4)[0],
        )
        pos += 28 + cap * size
    return out


def _set_overflow(path: Path, packet: int, value: int) -> None:
    raw = bytearray(path.read_bytes())
    struct.pack_into("<i", raw, _packets(path)[packet] + 12, value)
    path.write_bytes(bytes(raw))


def _ckpt_ok(path: Path) -> None:
    st = ckpt_io.load_checkpoint(path)
    assert all(torch.isfinite(v).all() for v in st["model"].values() if v.is_floating_point())


def _holds(pred: Callable[[Ctx], bool]) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        assert pred(c)

    return check


def _status(run: Path) -> str:
    return json.loads((run / "status.json").read_text())["state"]


# ----------------------------------------------------------------------------- setups


def corrupt_run(c: Ctx, how: str) -> Path:
    run = copy_run(c.done, c.tmp)
    p = run / "best.pt"
    st = torch.load(p, weights_only=True)
    if how == "nan":
        k = next(iter(st["model"]))
        st["model"][k] = st["model"][k] * float("nan")
        ckpt_io.save_checkpoint(
            p,
            **{
                k: v
                for k, v in st.items()
                if k not in ("schema_version", "masnn_version", "checksum")
            },
        )
    elif how == "flip":  # same size, one byte of one weight changed
        raw = bytearray(p.read_bytes())
        k = next(k for k in st["model"] if st["model"][k].numel() > 16)
        needle = st["model"][k].numpy().tobytes()[:16]
        i = bytes(raw).index(needle)
        raw[i] ^= 0x40
        p.write_bytes(bytes(raw))
    elif how == "shape":
        st["config"]["model"]["kwargs"] = {"channels": [8, 8, 8], "hidden": 16}
        ckpt_io.save_checkpoint(
            p,
            **{
                k: v
                for k, v in st.items()
                if k not in ("schema_version", "masnn_version", "checksum")
            },
        )
    elif how == "truncate":
        p.write_bytes(p.read_bytes()[:100])
    return run


def failed_run(c: Ctx, with_checkpoint: bool) -> Path:
    run = copy_run(c.done, c.tmp, "r")
    (run / "metrics.json").unlink()
    if not with_checkpoint:
        (run / "checkpoint.pt").unlink()
    (run / "status.json").write_text(json.dumps({"state": "failed", "error": "boom", "pid": 1}))
    return run


def running_run(c: Ctx, pid: int) -> Path:
    """A run whose status says ``running`` by ``pid`` on this host (alive or dead)."""
    import platform

    run = failed_run(c, with_checkpoint=True)
    doc = {"state": "running", "pid": pid, "host": platform.node()}
    (run / "status.json").write_text(json.dumps(doc))
    return run


def _dead_pid() -> int:
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def enospc_checkpoint(c: Ctx) -> list[str]:
    """The 2nd checkpoint write hits a full disk (injected at the write call)."""
    real = ckpt_io.torch.save
    calls = {"n": 0}

    def save(obj: Any, f: Any, *a: Any, **k: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(obj, f, *a, **k)

    c.monkeypatch.setattr(ckpt_io.torch, "save", save)
    return _train(c, "run.epochs=2", "data.val_fraction=0", "run.name=full")


def _after_enospc(c: Ctx) -> None:
    run = c.tmp / "runs" / "full"
    st = ckpt_io.load_checkpoint(run / "checkpoint.pt")  # the previous checkpoint, intact
    assert st["epoch"] == 1
    assert _status(run) == "failed"


def tmpfs_out(c: Ctx) -> list[str]:
    mnt = c.tmp / "tiny"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
        ).returncode
    ):
        pytest.skip("cannot mount a tmpfs here")
    c.data["mnt"] = mnt
    # fill it so that the first checkpoint no longer fits
    (mnt / "filler").write_bytes(b"\0" * 200_000)
    over = [o for o in c.over() if not o.startswith("run.out_dir")]
    return ["train", "--set", *over, f"run.out_dir={mnt}", "run.name=t"]


def _after_tmpfs(c: Ctx) -> None:
    mnt = c.data["mnt"]
    try:
        left = [p.name for p in (mnt / "t").iterdir()] if (mnt / "t").exists() else []
        assert not [n for n in left if ".tmp" in n]
        assert "checkpoint.pt" not in left
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def enospc_generate(c: Ctx) -> list[str]:
    """The first recording hits a full disk at its fsync (injected at the write call)."""
    real = os.fsync
    calls = {"n": 0}

    def fsync(fd: int) -> None:
        if ".aedat.tmp" in os.readlink(f"/proc/self/fd/{fd}"):
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    c.monkeypatch.setattr(os, "fsync", fsync)
    return ["data", "synth-gesture", "--out", str(c.tmp / "synth"), "--workers", "1"]


def _after_generate(c: Ctx) -> None:
    d = c.tmp / "synth"
    assert not (d / "manifest.json").exists()  # incomplete: regenerated on the next start
    assert (d / ".masnn-synth").exists()


def empty_labels(c: Ctx) -> list[str]:
    from tests.data import ibm_fixture as F

    train = {k: list(v) for k, v in F.TRAIN.items()}
    train["user02_led"] = [(3, 2_000_000, 4_000_000), (11, 4_000, 8_000)]  # ms taken as us
    root = c.ibm(train)
    return ["train", "--set", *c.over(root)]


def _set_ts(path: Path, packet: int, event: int, ts: int) -> None:
    raw = bytearray(path.read_bytes())
    struct.pack_into("<i", raw, _packets(path)[packet] + 28 + 8 * event + 4, ts)
    path.write_bytes(bytes(raw))


def backwards(c: Ctx) -> list[str]:
    root = c.ibm()
    _set_ts(root / "user01_fluorescent.aedat", 2, 7, 3)  # one timestamp goes back to 3 us
    return ["train", "--set", *c.over(root)]


def overflow_ahead(c: Ctx) -> list[str]:
    root = c.ibm()
    _set_overflow(root / "user01_fluorescent.aedat", 2, 5)  # 3rd packet ~3 h ahead
    return ["train", "--set", *c.over(root)]


def jump_last(c: Ctx) -> list[str]:
    root = c.ibm()
    f = root / "user02_led.aedat"
    _set_overflow(f, len(_packets(f)) - 1, 5)
    return ["train", "--set", *c.over(root)]


def neg_start(c: Ctx) -> list[str]:
    root = c.ibm()
    p = root / "user02_led_labels.csv"
    p.write_text(p.read_text().replace("3,2000,4000", "3,-5,4000"))
    return ["train", "--set", *c.over(root)]


def escape_trial(c: Ctx) -> list[str]:
    root = c.ibm()
    (c.tmp / "x.aedat").write_bytes(b"")
    (root / "trials_to_train.txt").write_text("../x.aedat\nuser02_led.aedat\n")
    return ["train", "--set", *c.over(root)]


def gait_outside(c: Ctx) -> list[str]:
    root = c.tmp / "gait"
    shutil.copytree(c.gait, root)
    f = root / "train" / "03" / "001.txt"
    lines = f.read_text().splitlines()
    t, x, y, p = lines[10].split()
    lines[10] = f"{t} 200 {y} {p}"
    f.write_text("\n".join(lines) + "\n")
    return ["train", "--set", *c.over(root, "dvs128_gait"), "data.workers=2"]


def verify_decode(c: Ctx, kind: str) -> list[str]:
    if kind == "order":
        root = c.ibm()
        _set_ts(root / "user01_fluorescent.aedat", 2, 7, 3)
    else:
        from tests.data import ibm_fixture as F

        train = {k: list(v) for k, v in F.TRAIN.items()}
        train["user02_led"] = [(3, 2_000_000, 4_000_000), (11, 4_000, 8_000)]
        root = c.ibm(train)
    return ["data", "verify", str(root), "--decode"]


def inject_step(c: Ctx, what: str) -> list[str]:
    real = torch.optim.Adam.step
    n = {"k": 0}

    def step(self: Any, *a: Any, **k: Any) -> Any:
        n["k"] += 1
        if n["k"] == 4 and what == "grad":
            self.param_groups[0]["params"][1].grad.fill_(float("inf"))
        out = real(self, *a, **k)
        if n["k"] == 4 and what == "param":
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    if what == "param":
        c.monkeypatch.setattr(torch.optim.Adam, "step", step)
    else:  # the gradient check runs before the step: corrupt it in backward's last hook
        from masnn.train import engine

        real_first = engine.first_nonfinite
        m = {"k": 0}

        def first(model: Any, grads: bool) -> Any:
            if grads:
                m["k"] += 1
                if m["k"] == 4:
                    p = next(model.parameters())
                    p.grad.fill_(float("inf"))
            return real_first(model, grads)

        c.monkeypatch.setattr(engine, "first_nonfinite", first)
    return _train(c, "run.epochs=3", "data.val_fraction=0", "run.name=div")


def _kept_epoch1(c: Ctx) -> None:
    run = c.tmp / "runs" / "div"
    st = ckpt_io.load_checkpoint(run / "checkpoint.pt")
    assert st["epoch"] == 1
    _ckpt_ok(run / "checkpoint.pt")
    assert _status(run) == "failed"


def silent(c: Ctx) -> list[str]:
    from masnn.train import build

    real = build.build_model

    def mute(cfg: Any, data: Any) -> Any:
        m = real(cfg, data)
        m.register_forward_hook(lambda mod, i, o: o * 0)
        return m

    c.monkeypatch.setattr(build, "build_model", mute)
    return _train(c, "run.name=s")


def damaged_cache(c: Ctx, how: str) -> list[str]:
    over = c.over(own_cache=True)
    assert main(["train", "--set", *over, "run.name=first"]) == 0
    entry = next(
        p for p in (c.tmp / "cache").iterdir() if p.name.startswith("dvs128_gesture-train")
    )
    if how == "header":
        f = entry / "events.npy"
        raw = bytearray(f.read_bytes())
        raw[:6] = b"XXXXXX"
    else:
        f = entry / "labels.npy"
        raw = bytearray(f.read_bytes())
        raw[-1] ^= 0x01
    f.write_bytes(bytes(raw))
    c.data["entry"] = entry
    return ["train", "--set", *over, "run.name=second"]


def _rebuilt(c: Ctx) -> None:
    assert (c.tmp / "runs" / "second" / "metrics.json").is_file()
    assert c.data["entry"].is_dir()  # rebuilt under the same key


def concurrent_names(c: Ctx) -> list[str]:
    from masnn.train import rundir

    c.monkeypatch.setattr(rundir.time, "strftime", lambda *a: "20260101-000000")
    over = [o for o in c.over() if not o.startswith("run.name")]
    assert main(["train", "--set", *over]) == 0
    return ["train", "--set", *over]


def _two_dirs(c: Ctx) -> None:
    names = sorted(p.name for p in (c.tmp / "runs").iterdir())
    assert len(names) == 2 and names[1] == names[0] + "-2", names
    assert all((c.tmp / "runs" / n / "metrics.json").is_file() for n in names)


def repeats_again(c: Ctx) -> list[str]:
    argv = _train(c, "run.name=sw", "run.max_steps_per_epoch=1")
    assert main([*argv, "--repeats", "2"]) == 0
    return [*argv, "--repeats", "2"]


def moved_resume(c: Ctx) -> list[str]:
    run = failed_run(c, with_checkpoint=True)
    moved = c.tmp / "elsewhere" / "r"
    moved.parent.mkdir()
    shutil.move(str(run), moved)
    c.data["moved"] = moved
    return ["train", "--resume", str(moved)]


def _resumed(c: Ctx) -> None:
    assert (c.data["moved"] / "metrics.json").is_file()
    assert _status(c.data["moved"]) == "finished"


def _dup_yaml(c: Ctx) -> list[str]:
    p = c.tmp / "c.yaml"
    p.write_text("optim:\n  lr: 0.1\n  lr: 0.2\n")
    return ["train", str(p)]


def _ro_dir(c: Ctx) -> Path:
    """An empty read-only directory (a read-only tmpfs when running as root)."""
    d = c.tmp / "ro"
    d.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: use a read-only mount
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)],
                          capture_output=True).returncode:  # fmt: skip
            pytest.skip("cannot mount a read-only tmpfs here")
        c.data["umount"] = d
    else:
        d.chmod(0o500)
    return d


def _ro_out(c: Ctx) -> list[str]:
    return _train(c, f"run.out_dir={_ro_dir(c)}")


def _umount(c: Ctx) -> None:
    if "umount" in c.data:
        subprocess.run(["umount", str(c.data["umount"])], check=True)


def _file(c: Ctx, name: str) -> Path:
    p = c.tmp / name
    p.write_text("not a directory\n")
    return p


# ----------------------------------------------------------------------------- the table

FAULTS: list[Fault] = [
    # configuration and command line
    Fault("lr-inf", lambda c: _train(c, "optim.lr=.inf"), 2, r"optim\.lr: expected a finite number"),
    Fault("lr-nan", lambda c: _train(c, "optim.lr=.nan"), 2, r"optim\.lr: expected a finite number"),
    Fault("ds-too-big-for-model", lambda c: _train(c, "data.ds=64", "data.shift=0", "model.name=ma_snn3", "model.kwargs={}"), 2, r"data\.ds=64 gives frames \(2, 2, 2\), too small for model\.name='ma_snn3'.*lower data\.ds"),
    Fault("shift-too-big", lambda c: _train(c, "data.ds=32", "data.shift=4"), 2, r"data\.shift=4 is not smaller than the framed clip's 4x4 pixels \(data\.ds=32\); allowed: 0\.\.3"),
    Fault("ds-huge", lambda c: _train(c, "data.ds=1000"), 2, r"data\.ds=1000 .*allowed: 1\.\.64"),
    Fault("momentum-range", lambda c: _train(c, "optim.momentum=1.5"), 2, r"optim\.momentum must be in"),
    Fault("duplicate-yaml-key", _dup_yaml, 2, r"c\.yaml: duplicate key 'lr' at line 3"),
    Fault("set-yaml-at", lambda c: _train(c, "run.name=@exp1"), 2, r"--set run\.name=@exp1: the value is not valid YAML"),
    Fault("set-yaml-bracket", lambda c: _train(c, "run.epochs=[1"), 2, r"--set run\.epochs=\[1: the value is not valid YAML"),
    Fault("set-unquoted-mapping", lambda c: ["train", "--set", "model.kwargs={channels:", "[4,", "8]}"], 2, r"--set model\.kwargs=\{channels:: the value is not valid YAML.*quote"),
    Fault("set-no-equals", lambda c: ["train", "--set", "run.epochs"], 2, r"--set expects key=value, got 'run\.epochs'"),
    Fault("unknown-key", lambda c: _train(c, "optim.lrr=1"), 2, r"unknown config key 'optim\.lrr'.*did you mean 'optim\.lr'"),
    Fault("config-missing", lambda c: ["train", str(c.tmp / "no.yaml")], 2, r"config file not found: .*no\.yaml"),
    Fault("run-name-escape", lambda c: _train(c, "run.name=../../x"), 2, r"run\.name='\.\./\.\./x': must be one directory name", _holds(lambda c: not (c.tmp.parent / "x").exists())),
    Fault("run-name-hidden", lambda c: _train(c, "run.name=.h"), 2, r"run\.name='\.h': must be one directory name"),
    Fault("run-name-slash", lambda c: _train(c, "run.name=a/b"), 2, r"run\.name='a/b': must be one directory name"),
    # environment
    Fault("out-dir-is-file", lambda c: _train(c, f"run.out_dir={_file(c, 'o')}"), 2, r"run\.out_dir=.*/o'.*is a file"),
    Fault("out-dir-read-only", _ro_out, 2, r"run\.out_dir=.*/ro'.*not writable", _umount),
    Fault("cache-dir-read-only", lambda c: ["train", "--set", *c.over(own_cache=True), f"data.cache_dir={_ro_dir(c)}"], 2, r"data\.cache_dir=.*/ro'.*not writable", _umount),
    Fault("synth-root-read-only", lambda c: _train(c, "data.dataset=synth_gesture", f"data.root={_ro_dir(c) / 'set'}"), 2, r"data\.root=.*/ro/set'.*/ro is not writable", _umount),
    Fault("cache-dir-is-file", lambda c: _train(c, f"data.cache_dir={_file(c, 'k')}"), 2, r"data\.cache_dir=.*/k'.*is a file"),
    Fault("data-root-missing", lambda c: _train(c, f"data.root={c.tmp / 'nowhere'}"), 2, r"data\.root=.*nowhere' does not exist"),
    Fault("data-root-is-file", lambda c: _train(c, f"data.root={_file(c, 'r')}"), 2, r"data\.root=.*/r' is a file"),
    Fault("synth-root-is-file", lambda c: _train(c, "data.dataset=synth_gesture", f"data.root={_file(c, 's')}"), 2, r"data\.root=.*/s' is a file; the synthetic set needs a directory"),
    Fault("enospc-checkpoint", enospc_checkpoint, 2, r"cannot write .*checkpoint\.pt: no space left", _after_enospc),
    Fault("tmpfs-full-run-dir", tmpfs_out, 2, r"cannot write .*/t/.*: no space left", _after_tmpfs),
    Fault("enospc-generate", enospc_generate, 2, r"cannot write .*\.aedat: no space left", _after_generate),
    # data honesty
    Fault("empty-samples", empty_labels, 2, r"ibm: 1 of 6 train samples hold no event \(first: user02_led\.aedat #1\).*data\.empty_samples=warn"),
    Fault("timestamps-backwards", backwards, 2, r"user01_fluorescent\.aedat @ byte \d+: timestamps go backwards"),
    Fault("damaged-ts-overflow", overflow_ahead, 2, r"user01_fluorescent\.aedat @ byte \d+: timestamps jump 10737\.4 s ahead"),
    Fault("timestamps-jump", jump_last, 2, r"user02_led\.aedat @ byte \d+: timestamps jump .* s ahead"),
    Fault("negative-start", neg_start, 2, r"user02_led_labels\.csv @ byte \d+: row 2: negative startTime_usec -5"),
    Fault("trial-list-escape", escape_trial, 2, r"trials_to_train\.txt: trial list entry '\.\./x\.aedat' leads outside"),
    Fault("gait-outside-sensor", gait_outside, 2, r"train/03/001\.txt: event 10 has x=200 outside the sensor"),
    Fault("verify-decode-order", lambda c: verify_decode(c, "order"), 1, r"PROBLEM: .*user01_fluorescent\.aedat @ byte \d+: timestamps go backwards", one_line=False),
    Fault("verify-decode-empty", lambda c: verify_decode(c, "empty"), 1, r"PROBLEM: .*user02_led_labels\.csv: row 2 \(class 3, 2000000\.\.4000000 us\) selects no event", one_line=False),
    # divergence and liveness
    Fault("nonfinite-parameter", lambda c: inject_step(c, "param"), 2, r"parameter .* became NaN/inf in the optimiser step at epoch 2, step 2; the last good checkpoint is kept", _kept_epoch1),
    Fault("nonfinite-gradient", lambda c: inject_step(c, "grad"), 2, r"non-finite gradient of .* at epoch 2, step 2", _kept_epoch1),
    Fault("silent-network", silent, 0, r"warning: epoch 1: the output layer never spiked", one_line=False),
    # checkpoints and masnn eval
    Fault("eval-nan-weights", lambda c: ["eval", str(corrupt_run(c, "nan") / "best.pt")], 2, r"best\.pt: 1 of \d+ tensors hold NaN/inf \(first: '.*'\)"),
    Fault("eval-byte-flip", lambda c: ["eval", str(corrupt_run(c, "flip") / "best.pt")], 2, r"best\.pt: (checkpoint content does not match its checksum|cannot read checkpoint)"),
    Fault("eval-shape-mismatch", lambda c: ["eval", str(corrupt_run(c, "shape") / "best.pt")], 2, r"best\.pt: the weights do not fit the model: '.*' has shape \[\d.*\] in the checkpoint, \[\d.*\] in the model; model built from \[.*model\.kwargs="),
    Fault("eval-truncated", lambda c: ["eval", str(corrupt_run(c, "truncate") / "best.pt")], 2, r"best\.pt: cannot read checkpoint"),
    Fault("eval-missing", lambda c: ["eval", str(c.tmp / "none.pt")], 2, r"checkpoint not found: .*none\.pt"),
    # run directories
    Fault("name-taken-finished", lambda c: (copy_run(c.done, c.tmp, "r"), _train(c, "run.name=r"))[1], 2, r"runs/r already holds a finished run: start it again with --replace"),
    Fault("name-taken-failed", lambda c: (failed_run(c, False), _train(c, "run.name=r"))[1], 2, r"runs/r already holds a failed run \(no checkpoint yet; error: boom\)"),
    Fault("name-taken-interrupted", lambda c: (failed_run(c, True), _train(c, "run.name=r"))[1], 2, r"runs/r already holds a failed run \(a checkpoint.*continue it with --resume .*runs/r"),
    Fault("name-taken-killed", lambda c: (running_run(c, _dead_pid()), _train(c, "run.name=r"))[1], 2, r"runs/r already holds an interrupted run \(a checkpoint\): continue it with --resume .*runs/r"),
    Fault("resume-run-in-progress", lambda c: ["train", "--resume", str(running_run(c, 1))], 2, r"runs/r is a run in progress \(pid 1\); let it finish"),
    Fault("replace-run-in-progress", lambda c: (running_run(c, 1), [*_train(c, "run.name=r"), "--replace"])[1], 2, r"--replace: .*runs/r is a run in progress \(pid 1\); not deleting it"),
    Fault("replace-not-a-run", lambda c: ((c.tmp / "runs" / "r").mkdir(parents=True), (c.tmp / "runs" / "r" / "mine.txt").write_text("x"), [*_train(c, "run.name=r"), "--replace"])[2], 2, r"--replace: .*runs/r does not look like a masnn run; not deleting it", _holds(lambda c: (c.tmp / "runs" / "r" / "mine.txt").is_file())),
    Fault("replace", lambda c: (failed_run(c, True), [*_train(c, "run.name=r"), "--replace"])[1], 0, r"", _holds(lambda c: _status(c.tmp / "runs" / "r") == "finished"), one_line=False),
    Fault("resume-finished", lambda c: ["train", "--resume", str(copy_run(c.done, c.tmp))], 2, r"runs/copy is finished \(test accuracy .*%\); nothing to resume"),
    Fault("resume-no-checkpoint", lambda c: ["train", "--resume", str(failed_run(c, False))], 2, r"runs/r holds a failed run .*nothing to resume - start it again with --replace --set run\.name=r"),
    Fault("resume-other-config", lambda c: ["train", "--resume", str(failed_run(c, True)), "--set", *c.over(), "optim.lr=0.5"], 2, rf"another config \(.*optim\.lr: {re.escape(str(OptimCfg().lr))} in the checkpoint, 0\.5 now"),
    Fault("resume-best-pt", lambda c: ["train", "--resume", str(failed_run(c, True) / "best.pt")], 2, r"best\.pt: cannot resume from it"),
    Fault("resume-moved-run", moved_resume, 0, r"", _resumed, one_line=False),
    Fault("repeats-again", repeats_again, 2, r"runs/sw-seed0 already holds a finished run: start it again with --replace"),
    Fault("same-second-auto-names", concurrent_names, 0, r"", _two_dirs, one_line=False),
    Fault("cache-npy-header", lambda c: damaged_cache(c, "header"), 0, r"", _rebuilt, one_line=False),
    Fault("cache-byte-flip", lambda c: damaged_cache(c, "flip"), 0, r"", _rebuilt, one_line=False),
]  # fmt: skip


def _snapshot(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(
    fault: Fault,
    tmp_path: Path,
    one_user_root: Path,
    gait_root: Path,
    finished_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recwarn: pytest.WarningsRecorder,
) -> None:
    monkeypatch.delenv("MASNN_TRACEBACK", raising=False)
    monkeypatch.setenv("MASNN_CACHE", str(tmp_path / "envcache"))
    monkeypatch.chdir(tmp_path)
    ctx = Ctx(tmp_path, one_user_root, gait_root, finished_run, monkeypatch)
    shared = {p: _snapshot(p) for p in (one_user_root, finished_run.parent.parent)}
    outside = _snapshot(tmp_path.parent)
    argv = fault.argv(ctx)
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    try:
        assert rc == fault.rc, (rc, err[-3000:])
        assert "Traceback" not in err
        text = err if fault.rc == 2 else out + err + "\n".join(str(w.message) for w in recwarn)
        if fault.one_line:
            lines = err.strip().splitlines()
            assert len(lines) == 1, err
            assert lines[0].startswith(f"masnn {argv[0]}: error: "), lines[0]
        assert re.search(fault.pattern, text), (fault.pattern, text[-3000:])
    finally:
        if fault.check is not None:
            fault.check(ctx)
    # on disk: no temporary files, no lock files, nothing written outside the case directory
    left = [p for p in tmp_path.rglob("*") if ".tmp" in p.name or p.suffix == ".lock"]
    assert not left, left
    for p, before in shared.items():
        assert _snapshot(p) == before, f"{p} changed"
    assert _snapshot(tmp_path.parent) - outside <= {str(tmp_path)} | {
        s for s in _snapshot(tmp_path.parent) if s.startswith(str(tmp_path))
    }


def test_fault_table_covers_the_issue() -> None:
    assert len(FAULTS) >= 40
    assert len({f.id for f in FAULTS}) == len(FAULTS)
