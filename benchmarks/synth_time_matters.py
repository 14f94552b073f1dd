"""Does frame order matter on the synthetic gesture set? Order-invariant vs order-aware models.

Frames each labelled gesture of the set (``T`` windows of ``dt`` ms at 32x32, ds = 4, via
``masnn.frames.integrate_window``) and trains, on the train split, the same classifiers on

* ``sum``: the events summed over the whole window (``(2, 32, 32)``), frame-order invariant;
* ``bins``: ``BINS`` consecutive sub-window sums, i.e. the same input with its frame order.

Two classifier families: multinomial logistic regression and a tiny CNN (two 3x3 conv layers).
It reports test accuracy on all classes and on the time-pair classes (2/3 waves, 4/5 and 6/7
rotations: exact time reversals / mirror images), plus the pair-confusion rate.

Run::

    python benchmarks/synth_time_matters.py --root DIR [--seed 0] [--size small]

(``--root`` is generated if it does not hold the set.) ``--checkpoint RUN/best.pt`` (repeatable)
adds trained masnn models (e.g. the SNNs of the calibration runs; each is evaluated on its own
run's data; ``--skip-baselines`` scores only them), scored on the same pair
classes from the confusion matrix of ``masnn eval``. Numbers go to ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from masnn.events import read_aedat
from masnn.events.schema import DVS128
from masnn.frames import integrate_window
from masnn.synth import TIME_PAIRS, ensure_synth_gesture

PAIR_CLASSES = sorted({c for p in TIME_PAIRS for c in p})


def load_split(
    root: Path,
    split: str,
    timesteps: int = 16,
    dt_ms: int = 50,
    ds: int = 4,
    crops: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(N, T, 2, H/ds, W/ds)`` and 1-based labels of one split of an IBM-layout set.

    ``crops == 1`` takes the window centred in each gesture; ``crops > 1`` takes that many
    windows at random starts inside the gesture (training augmentation).
    """
    rng = np.random.default_rng(seed)
    names = (root / f"trials_to_{split}.txt").read_text().split()
    dt = dt_ms * 1000
    span = timesteps * dt
    xs, ys = [], []
    for name in names:
        ev = read_aedat(root / name)
        with open(root / name.replace(".aedat", "_labels.csv")) as fh:
            rows = [r for r in csv.reader(fh) if r and r[0].strip().isdigit()]
        for cls, a, b in ((int(r[0]), int(r[1]), int(r[2])) for r in rows):
            lo, hi = np.searchsorted(ev["t"], [a, b])
            seg = ev[lo:hi]
            room = max(b - a - span, 0)
            starts = [a + room // 2] if crops == 1 else a + rng.integers(0, room + 1, crops)
            for s in starts:
                xs.append(integrate_window(seg, DVS128, int(s), dt, timesteps, ds))
                ys.append(cls)
    return np.stack(xs), np.asarray(ys)


def features(x: np.ndarray, mode: str, bins: int = 4) -> torch.Tensor:
    """``sum``: ``(N, 2, h, w)``; ``bins``: ``(N, 2 * bins, h, w)``; log-compressed counts."""
    if mode == "sum":
        f = x.sum(axis=1)
    elif mode == "bins":
        n, t = x.shape[:2]
        f = x.reshape(n, bins, t // bins, *x.shape[2:]).sum(axis=2).reshape(n, -1, *x.shape[3:])
    else:
        raise ValueError(f"mode must be 'sum' or 'bins', got {mode!r}")
    return torch.from_numpy(np.log1p(f)).float()


def _model(kind: str, in_ch: int, hw: int, classes: int = 11) -> nn.Module:
    if kind == "logreg":
        return nn.Sequential(nn.Flatten(), nn.Linear(in_ch * hw * hw, classes))
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(in_ch, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(32 * (hw // 4) ** 2, classes),
        )
    raise ValueError(f"kind must be 'logreg' or 'cnn', got {kind!r}")


def fit_predict(
    kind: str,
    xtr: torch.Tensor,
    ytr: np.ndarray,
    xte: torch.Tensor,
    epochs: int = 40,
    seed: int = 0,
) -> np.ndarray:
    """Train ``kind`` on ``(xtr, ytr)`` (labels 1..11) with Adam; return predicted labels."""
    torch.manual_seed(seed)
    mean, std = xtr.mean(), xtr.std() + 1e-6
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    model = _model(kind, xtr.shape[1], xtr.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-3)
    y = torch.from_numpy(ytr - 1).long()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xtr[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return model(xte).argmax(1).numpy() + 1


def scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy overall and on the time-pair classes, and the within-pair confusion rate."""
    on_pairs = np.isin(y, PAIR_CLASSES)
    partner = {a: b for p in TIME_PAIRS for a, b in (p, p[::-1])}
    swapped = np.array([partner.get(int(t)) == int(q) for t, q in zip(y, pred)])
    return {
        "acc": float(np.mean(pred == y)),
        "acc_pairs": float(np.mean(pred[on_pairs] == y[on_pairs])),
        "pair_swaps": float(np.mean(swapped[on_pairs])),
    }


def scores_from_confusion(confusion: list[list[int]]) -> dict[str, float]:
    """:func:`scores` from a confusion matrix (rows: true class index = IBM id - 1)."""
    c = np.asarray(confusion, dtype=float)
    if c.shape != (11, 11):
        raise ValueError(f"expected an 11-class gesture confusion matrix, got shape {c.shape}")
    pairs = [k - 1 for k in PAIR_CLASSES]
    if c[pairs].sum() == 0:
        raise ValueError("no test sample of the time-pair classes (2-7) in this confusion matrix")
    partner = {a - 1: b - 1 for p in TIME_PAIRS for a, b in (p, p[::-1])}
    n_pairs = c[pairs].sum()
    return {
        "acc": float(np.trace(c) / c.sum()),
        "acc_pairs": float(sum(c[i, i] for i in pairs) / n_pairs),
        "pair_swaps": float(sum(c[i, partner[i]] for i in pairs) / n_pairs),
    }


def run(
    root: Path,
    timesteps: int = 16,
    dt_ms: int = 50,
    bins: int = 4,
    crops: int = 4,
    epochs: int = 40,
    kinds: tuple[str, ...] = ("logreg", "cnn"),
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """All (classifier, input) combinations on one set; returns their scores."""
    xtr, ytr = load_split(root, "train", timesteps, dt_ms, crops=crops, seed=seed)
    xte, yte = load_split(root, "test", timesteps, dt_ms)
    out = {}
    for kind in kinds:
        for mode in ("sum", "bins"):
            pred = fit_predict(
                kind, features(xtr, mode, bins), ytr, features(xte, mode, bins), epochs, seed
            )
            out[f"{kind}/{mode}"] = scores(pred, yte)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=None, help="set directory (generated if absent)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", default="small", choices=("small", "full"))
    ap.add_argument("--timesteps", type=int, default=16)
    ap.add_argument("--dt-ms", type=int, default=50)
    ap.add_argument("--bins", type=int, default=4)
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="a masnn checkpoint to score on the same pair classes (repeatable)",
    )
    ap.add_argument("--skip-baselines", action="store_true", help="only score --checkpoint")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tic = time.perf_counter()
    res = {}
    if not args.skip_baselines:
        if args.root is not None and (args.root / "manifest.json").is_file():
            root = args.root  # a complete set (any configuration): measure it as it is
        else:
            root = ensure_synth_gesture(args.root, args.size, args.seed, verbose=True)
        res = run(
            root, args.timesteps, args.dt_ms, args.bins, args.crops, args.epochs, seed=args.seed
        )
        print(f"set {root} (T={args.timesteps}, dt={args.dt_ms} ms, 32x32, bins={args.bins})")
    for ck in args.checkpoint:
        from masnn.train.evaluate import evaluate_checkpoint

        ev = evaluate_checkpoint(ck)  # on the data the checkpoint was trained with
        res[f"ckpt:{ck}"] = scores_from_confusion(ev["stats"]["confusion"])
    print(f"{'model/input':14s} {'acc':>6s} {'pairs':>6s} {'swaps':>6s}")
    for k, v in res.items():
        print(f"{k:14s} {v['acc']:6.3f} {v['acc_pairs']:6.3f} {v['pair_swaps']:6.3f}")
    print(json.dumps(res))
    print(f"total {time.perf_counter() - tic:.1f} s")


if __name__ == "__main__":
    main()
