"""Event-driven sparse inference vs the dense fast path: time against spike density.

Two parts (Markdown tables on stdout, raw numbers as JSON with ``--json PATH``):

1. **Per layer, synthetic spikes.** Every layer of the model that takes spikes (the encoder
   takes event counts and always runs dense) is timed on Bernoulli spikes at each density of
   ``--densities`` (default 0.5 %-30 %), through both routes of :class:`SparseLayer`: the
   sparse kernel (index lists in, gather-accumulate, fused LIF) and the dense route (the fast
   path's folded conv / pool / fused LIF on a dense tensor). The crossover density is where
   sparse stops winning (linear interpolation).
2. **Whole models.** ``--ckpt RUN/best.pt`` (repeatable; e.g. the vanilla and the attention
   model of the main job) times ``masnn.inference.fast(model)`` against
   ``masnn.inference.sparse(model)`` on the first ``--samples`` clips of the run's own test set,
   reports each layer's measured input spike density, the routes taken and how many of the N
   predictions agree. Without ``--ckpt``, untrained models (``--model``, vanilla and
   ``--attn``) on synthetic events stand in (their spike rates are not a trained model's).

``--calibrate`` also measures and stores this machine's per-layer thresholds
(:func:`masnn.inference.sparse.calibrate`) that ``sparse(model)`` then uses: for ``--model``
and, before timing them, for every ``--ckpt`` model's own layer geometries.

Timings need a quiet machine (best of ``--repeats``; threads: ``--threads``). Smoke run::

    python benchmarks/bench_sparse.py --tiny
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from masnn import create_model
from masnn.bench.timing import best_of
from masnn.inference import fast, sparse
from masnn.inference.sparse import (
    CALIBRATION_DENSITIES,
    SparseInference,
    calibrate,
    crossover,
    random_spikes,
    time_layer,
)


def per_layer(eng: SparseInference, T: int, B: int, densities: list[float], repeats: int) -> list:
    """Part 1: per-layer sparse/dense times on synthetic spikes."""
    rows = []
    for i, layer in enumerate(eng.layers):
        if layer.why_dense is not None:
            continue
        ts, td = [], []
        for d in densities:
            s = random_spikes(layer.in_shape, T, B, d, seed=i)
            ts.append(time_layer(layer, s, "sparse", repeats))
            td.append(time_layer(layer, s, "dense", repeats))
        rows.append(
            {
                "layer": i,
                "signature": layer.signature(),
                "fused_lif": layer.fused,
                "densities": densities,
                "sparse_s": ts,
                "dense_s": td,
                "crossover": crossover(densities, ts, td),
            }
        )
    return rows


def print_per_layer(rows: list, T: int, B: int) -> None:
    if not rows:
        return
    ds = rows[0]["densities"]
    print(f"\n### Per layer, synthetic spikes (T={T}, B={B}): ms sparse / dense\n")
    print("| layer | " + " | ".join(f"{100 * d:g} %" for d in ds) + " | crossover |")
    print("|---|" + "---|" * (len(ds) + 1))
    for r in rows:
        cells = [f"{1e3 * a:.2f} / {1e3 * b:.2f}" for a, b in zip(r["sparse_s"], r["dense_s"])]
        name = f"{r['layer']} `{r['signature']}`" + ("" if r["fused_lif"] else " (attn)")
        print(f"| {name} | " + " | ".join(cells) + f" | {100 * r['crossover']:.1f} % |")


def _ckpt_model_and_data(path: str, samples: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from masnn.train.evaluate import rebuild_run
    from masnn.train.runner import torch_globals_restored

    with torch_globals_restored():
        run = rebuild_run(path, command="bench_sparse")
    model, data = run.model, run.data
    xs, ys = [], []
    for i in range(min(samples, len(data.test))):
        x, y = data.test[i]
        x = np.asarray(x)
        xs.append(torch.from_numpy(x[0] if x.ndim == 5 else x).float())  # (T, C, H, W)
        ys.append(y)
    return model.eval(), torch.stack(xs, 1), torch.tensor(ys)  # (T, N, C, H, W)


def whole_model(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                batch: int, repeats: int) -> dict:  # fmt: skip
    """Part 2: the dense fast path vs the sparse engine on the same inputs."""
    fm, eng = fast(model), sparse(model)
    chunks = list(x.split(batch, dim=1))

    def run_fast() -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([fm(c) for c in chunks])

    def run_sparse() -> torch.Tensor:
        return torch.cat([eng(c) for c in chunks])

    t_fast = best_of(run_fast, repeats, warmup=1)
    t_sparse = best_of(run_sparse, repeats, warmup=1)
    p_fast, p_sparse = run_fast().argmax(1), run_sparse().argmax(1)
    # per-layer input densities over the whole set (routes as the engine chose them)
    dens: list[list[float]] = []
    routes: list[str] = []
    for c in chunks:
        eng(c)
        dens.append([d for _, d in eng.last_routes])
        routes = [r for r, _ in eng.last_routes]
    mean_d = np.array(dens, dtype=float).mean(axis=0).tolist()  # nan: the encoder (events)
    return {
        "model": name,
        "samples": int(x.shape[1]),
        "fast_s": t_fast,
        "sparse_s": t_sparse,
        "speedup": t_fast / t_sparse,
        "layer_input_density": mean_d,
        "routes": routes,
        "thresholds": [la.threshold for la in eng.layers],
        "agree": int((p_fast == p_sparse).sum()),
        "acc_fast": None if y is None else float((p_fast == y).float().mean()),
        "acc_sparse": None if y is None else float((p_sparse == y).float().mean()),
    }


def print_models(rows: list) -> None:
    if not rows:
        return
    print("\n### Whole models: dense fast path vs sparse\n")
    print("| model | N | fast (s) | sparse (s) | speed-up | input density per layer | routes "
          "| predictions agree |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        dens = ", ".join("-" if d != d else f"{100 * d:.1f} %" for d in r["layer_input_density"])
        routes = "".join("S" if x == "sparse" else "D" for x in r["routes"])
        print(
            f"| {r['model']} | {r['samples']} | {r['fast_s']:.3f} | {r['sparse_s']:.3f} | "
            f"{r['speedup']:.2f}x | {dens} | {routes} | {r['agree']}/{r['samples']} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ma_snn3", help="model for part 1 / untrained part 2")
    p.add_argument("--attn", default="tcsa", help="the attention variant next to vanilla")
    p.add_argument("--timesteps", type=int, default=None)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--densities", type=float, nargs="+", default=list(CALIBRATION_DENSITIES))
    p.add_argument("--ckpt", action="append", default=[], help="trained run checkpoint(s)")
    p.add_argument("--samples", type=int, default=64, help="test clips per checkpoint")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--calibrate", action="store_true", help="store this machine's thresholds")
    p.add_argument("--tiny", action="store_true", help="smoke run: tiny model, T=2, B=2")
    p.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    kw: dict[str, Any] = {}
    if a.tiny:
        a.model, a.batch, a.repeats, a.samples = "ma_snn3_tiny", 2, 1, 4
        a.timesteps = a.timesteps or 2
        a.densities = [0.005, 0.05, 0.3]
        kw = {"channels": (4, 8, 8), "hidden": 8}
    T = a.timesteps or create_model(a.model, attn="none").timesteps
    base = create_model(a.model, attn="none", timesteps=T, **kw).eval()
    eng = sparse(base)
    if a.calibrate:
        got = calibrate(eng, steps=T, batch=a.batch, repeats=a.repeats)
        print("calibrated thresholds: " + json.dumps(got))
    layers = per_layer(eng, T, a.batch, a.densities, a.repeats)
    print(f"threads={torch.get_num_threads()}  (timings are only meaningful on a quiet machine)")
    print_per_layer(layers, T, a.batch)
    models = []
    if a.ckpt:
        for path in a.ckpt:
            model, x, y = _ckpt_model_and_data(path, a.samples)
            if a.calibrate:  # the trained model's own layer geometries (e.g. ma_snn3_tiny)
                got = calibrate(sparse(model), steps=x.shape[0], batch=a.batch, repeats=a.repeats)
                print(f"calibrated thresholds ({Path(path).parent.name}): " + json.dumps(got))
            models.append(whole_model(Path(path).parent.name, model, x, y, a.batch, a.repeats))
    else:
        g = torch.Generator().manual_seed(1)
        c, h, w = base.input_size
        x = (torch.rand(T, a.samples, c, h, w, generator=g) < 0.05).float()
        for attn in ("none", a.attn):
            m = create_model(a.model, attn=attn, timesteps=T, **kw).eval()
            models.append(whole_model(f"{a.model} {attn} (untrained)", m, x, None, a.batch,
                                      a.repeats))  # fmt: skip
    print_models(models)
    if a.json:
        a.json.write_text(json.dumps({"per_layer": layers, "models": models}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
