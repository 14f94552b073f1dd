"""``run_report``: train (or reuse) every setting over N seeds, analyse each run, aggregate.

One run per ``(setting, seed)``, trained by :func:`masnn.train.runner.train` into
``<out>/runs/<setting>-s<seed>-<key>/`` where ``key`` is the hash of the resolved training config
(without ``run.out_dir``): a run whose directory holds a finished ``metrics.json`` and
``best.pt`` made by the same config is reused, a killed one is resumed from its
``checkpoint.pt``. Every setting gets the same seeds, hence the same validation users, data
order and random windows: the runs are *paired* by seed.

Each finished run is analysed once from its ``best.pt`` (:func:`analyze_run`, cached in
``analysis.json`` / ``maps.pt`` next to it): the test set's first clip through
:func:`masnn.analysis.measure` (exactly what ``masnn eval`` reports: NASAR, NSAR(t), spikes,
energy, per-layer rates), the per-neuron firing-rate maps of every spiking layer and the TA
weights over time, and the per-sample predictions, whose count of correct samples must equal the
run's logged test result (else it raises).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from masnn.analysis.hooks import HookSet
from masnn.errors import MasnnError
from masnn.report.variants import Variant, all_variants, parse_variant, variant_overrides
from masnn.train.config import TrainConfig, config_from_dict, load_config, migrate_saved_config
from masnn.train.runlog import git_sha
from masnn.version import __version__

#: Bump when :func:`analyze_run`'s output changes (cached analyses are then redone).
ANALYSIS_VERSION = 1


@dataclass(frozen=True)
class Preset:
    """A report budget: which settings, how many seeds, which training overrides.

    Attributes:
        name: ``tiny`` | ``quick`` | ``full``.
        variants: the rows.
        seeds: default number of seeds.
        overrides: ``--set`` applied to the base config before the user's ``--set``.
        isometry: keyword arguments of :func:`masnn.analysis.isometry.isometry_sweep`.
        about: one line for the docs and the report header.
    """

    name: str
    variants: tuple[Variant, ...]
    seeds: int
    overrides: tuple[str, ...] = ()
    isometry: dict[str, Any] = field(default_factory=dict)
    about: str = ""


def _v(*keys: str) -> tuple[Variant, ...]:
    return tuple(parse_variant(k) for k in keys)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny",
        _v("none", "ta"),
        2,
        (
            "run.epochs=1",
            "run.max_steps_per_epoch=3",
            "model.kwargs={channels: [4, 8, 8], hidden: 16}",
            "run.progress=false",
        ),
        {
            "depths": (18,),
            "timesteps": (1,),
            "widths": (4, 8, 8, 8),
            "size": 16,
            "batch": 2,
            "probes": 1,
        },
        "development and tests: vanilla and TA, 1 epoch of 3 steps, a 4/8/8-channel net",
    ),
    "quick": Preset(
        "quick",
        _v("none", "ta", "ca", "tcsa"),
        3,
        ("run.epochs=20", "optim.lr=0.001", "data.shift=0"),
        {
            "depths": (18, 34, 104),
            "timesteps": (1, 4),
            "widths": (8, 16, 32, 64),
            "size": 32,
            "batch": 2,
            "probes": 2,
        },
        "the main job's model and data with its first recipe (ma_snn3_tiny, 20 epochs, Adam 1e-3, "
        "no spatial shift, synthetic small set; the main job now trains 70 epochs at 2e-3 with "
        "data.shift=2) for vanilla, TA "
        "(the time pairs), CA (the main job) and TCSA (the paper's headline), paper placement",
    ),
    "full": Preset(
        "full",
        tuple(all_variants()),
        5,
        (),
        {"depths": (18, 34, 104), "timesteps": (1, 4), "widths": (16, 32, 64, 128), "size": 32},
        "every Table 6 setting in both placements plus vanilla and the ReLU-only control, main "
        "job recipe",
    ),
}


@dataclass(frozen=True)
class RunSpec:
    """One planned run: its setting, seed, resolved config, key and directory."""

    variant: Variant
    seed: int
    cfg: TrainConfig
    key: str
    run_dir: Path


def config_key(cfg: TrainConfig) -> str:
    """The run's identity: the config hash without ``run.out_dir``/``run.progress``."""
    return replace(cfg, run=replace(cfg.run, out_dir="", progress=True)).hash()


def _paper_neuron(cfg: TrainConfig) -> str | None:
    """The neuron the model uses with the ``paper`` placement (pinned for every setting)."""
    from masnn.models import model_cfg

    return model_cfg(cfg.model.name).resolve({"placement": "paper"}).neuron.preset


def plan_runs(
    preset: Preset,
    *,
    seeds: int | None = None,
    out: str | os.PathLike[str] = "report",
    config: str | None = None,
    overrides: Sequence[str] = (),
    variants: Sequence[Variant] | None = None,
) -> list[RunSpec]:
    """Resolve every ``(setting, seed)`` of the report into a config and a run directory.

    Override order: the preset's, then the caller's (``--set``), then the setting's attention
    keys (:func:`~masnn.report.variants.variant_overrides`), then ``run.seed``/``run.out_dir``/
    ``run.name``. ``model.neuron`` is pinned to the model's ``paper``-placement neuron when the
    config leaves it unset, so the ``code`` rows change the attention only (pooling, kernel,
    ratio, ReLU), not the neuron.
    """
    n_seeds = preset.seeds if seeds is None else int(seeds)
    if n_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {n_seeds}")
    runs_dir = Path(out) / "runs"
    base_over = [*preset.overrides, *overrides]
    base = load_config(config, base_over)
    seed0 = base.run.seed
    pin = [] if base.model.neuron is not None else [f"model.neuron={_paper_neuron(base)}"]
    specs = []
    for v in variants if variants is not None else preset.variants:
        for k in range(n_seeds):
            seed = seed0 + k
            over = [*base_over, *pin, *variant_overrides(v.name, v.placement)]
            over += [f"run.seed={seed}", f"run.out_dir={runs_dir}"]
            cfg = load_config(config, over)
            key = config_key(cfg)
            name = (
                _existing_run(runs_dir, f"{v.key}-s{seed}-", key) or f"{v.key}-s{seed}-{key[:10]}"
            )
            cfg = replace(cfg, run=replace(cfg.run, name=name))
            specs.append(RunSpec(v, seed, cfg, key, runs_dir / name))
    return specs


def _saved_key(d: Path) -> str | None:
    """The key of the run saved in ``d`` (its config migrated from older masnn versions)."""
    if not (d / "config.yaml").is_file():
        return None
    return config_key(config_from_dict(migrate_saved_config(_load_yaml(d / "config.yaml"))))


def _existing_run(runs_dir: Path, prefix: str, key: str) -> str | None:
    """The name of a run directory ``prefix*`` whose saved config has ``key``: a run trained
    before a masnn upgrade changed the config's shape (and so the key in its name) is reused."""
    if not runs_dir.is_dir():
        return None
    for d in sorted(runs_dir.glob(prefix + "*")):
        if d.is_dir() and not d.name.endswith(key[:10]) and _saved_key(d) == key:
            return d.name
    return None


def is_finished(spec: RunSpec) -> bool:
    """A finished run of ``spec``'s config exists (raises if its directory holds another config)."""
    d = spec.run_dir
    if not ((d / "metrics.json").is_file() and (d / "best.pt").is_file()):
        return False
    saved_key = _saved_key(d)
    if saved_key != spec.key:
        raise MasnnError(
            f"{d}: holds a run of another config (key {saved_key}, expected {spec.key}); "
            "move it away"
        )
    return True


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def ensure_run(spec: RunSpec, *, quiet: bool = True) -> tuple[dict[str, Any], bool]:
    """Train the run of ``spec`` unless a finished one exists; resume a killed one.

    Returns:
        ``(metrics, reused)``.
    """
    from masnn.train.runner import train

    d = spec.run_dir
    if is_finished(spec):
        return json.loads((d / "metrics.json").read_text()), True
    ckpt = d / "checkpoint.pt"
    if ckpt.is_file():
        saved = config_from_dict(
            migrate_saved_config(torch.load(ckpt, weights_only=True)["config"])
        )
        if config_key(saved) != spec.key:
            raise MasnnError(f"{ckpt}: made by another config; move {d} away")
        # resume under the saved config (its out_dir may name where the report used to live)
        return train(saved, resume=ckpt, quiet=quiet), False
    if d.exists():
        leftovers = {p.name for p in d.iterdir()}
        if leftovers - {"config.yaml", "run.json", "log.csv", "status.json", "log.txt"}:
            raise MasnnError(f"{d}: an unfinished run without checkpoint.pt; move it away")
        shutil.rmtree(d)  # a run killed before its first checkpoint: start it again
    return train(spec.cfg, quiet=quiet), False


# -- analysis of one finished run -------------------------------------------------------------


class _RateMaps(HookSet):
    """Forward hooks: per-neuron spike counts of every LIF layer, summed over T and samples."""

    def __init__(self, model: nn.Module) -> None:
        from masnn.neurons import LIF

        super().__init__()
        self.lifs = [(n, m) for n, m in model.named_modules() if isinstance(m, LIF)]
        self.sums: dict[str, Tensor] = {}
        self.samples: dict[str, int] = {}
        self.steps: dict[str, int] = {}

    def _install(self) -> None:
        self.hook_each(self.lifs, self._hook)

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            s = (out[0] if isinstance(out, tuple) else out).detach()
            t, b = s.shape[:2]
            acc = s.sum(dim=(0, 1), dtype=torch.float64).cpu()
            self.sums[name] = acc if name not in self.sums else self.sums[name] + acc
            self.samples[name] = self.samples.get(name, 0) + b
            self.steps[name] = t

        return hook

    def rates(self) -> dict[str, Tensor]:
        """Per-neuron firing rate (spikes per neuron per step), ``(C, H, W)`` or ``(F,)``."""
        return {
            n: (s / (self.samples[n] * self.steps[n])).float()
            for n, s in self.sums.items()
            if self.samples[n]
        }


class _GateMeans(HookSet):
    """Forward hooks on every ``*.ta.gate``: the TA weight of each step, averaged over samples."""

    def __init__(self, model: nn.Module, kind: str = "ta") -> None:
        super().__init__()
        self.gates = [(n, m) for n, m in model.named_modules() if n.endswith(f".{kind}.gate")]
        self.sums: dict[str, Tensor] = {}
        self.samples: dict[str, int] = {}

    def _install(self) -> None:
        self.hook_each(self.gates, self._hook)

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: Tensor) -> None:
            g = out.detach().float()
            t, b = g.shape[:2]
            per = g.reshape(t, b, -1).mean(-1).sum(1, dtype=torch.float64).cpu()  # (T,)
            self.sums[name] = per if name not in self.sums else self.sums[name] + per
            self.samples[name] = self.samples.get(name, 0) + b

        return hook

    def means(self) -> dict[str, list[float]]:
        return {n: (s / self.samples[n]).tolist() for n, s in self.sums.items()}


@torch.no_grad()
def predict(
    model: nn.Module, batches: Any, device: torch.device, amp: str = "none"
) -> tuple[list[int], list[int]]:
    """Primary predictions and labels, by the trainer's rule
    (:func:`masnn.train.engine.primary_prediction`, as :func:`~masnn.train.engine.evaluate`)."""
    from masnn.train.engine import autocast_context, primary_prediction

    model.eval()
    preds: list[int] = []
    labels: list[int] = []
    for x, y in batches:
        x = x.to(device)
        if x.dim() == 6:
            k, t, b = x.shape[:3]
            xf = x.permute(1, 0, 2, 3, 4, 5).reshape(t, k * b, *x.shape[3:])
        else:
            k, b, xf = 1, x.shape[1], x
        with autocast_context(device, amp):
            out = model(xf).float()
        preds += primary_prediction(out.reshape(k, b, -1)).cpu().tolist()
        labels += y.tolist()
    return preds, labels


def _data_for(cfg: TrainConfig, cache: dict[Any, Any] | None) -> Any:
    """``build_data`` for the run, shared between runs of one report through ``cache``."""
    from masnn.train.data import build_data

    key = (json.dumps(cfg.to_dict()["data"], sort_keys=True), cfg.run.seed)
    if cache is None:
        return build_data(cfg.data, cfg.run.seed, progress=False)
    if key not in cache:
        cache[key] = build_data(cfg.data, cfg.run.seed, progress=False)
    return cache[key]


def analyze_run(
    run_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    data_cache: dict[Any, Any] | None = None,
) -> dict[str, Any]:
    """Analyse a finished run from its ``best.pt`` (cached in ``analysis.json`` + ``maps.pt``).

    Returns:
        ``{"accounting": Report.to_dict() (test set, first clip: masnn eval's numbers),
        "ta_weights": {gate: [T floats]}, "predictions": [...], "labels": [...],
        "metrics": metrics.json, "run": run.json, "config": the run's config}``; the rate maps
        are in ``maps.pt`` (``{layer: (C, H, W) or (F,) tensor}``).

    Args:
        run_dir: a finished run directory (``best.pt``, ``metrics.json``, ``run.json``).
        force: redo a cached analysis.
        data_cache: a dict shared by the calls of one report (datasets built once per
            data config and seed); ``None`` builds the data for this call only.

    Raises:
        MasnnError: the predictions do not reproduce the logged test accuracy.
    """
    from masnn.train import checkpoint as ckpt_io
    from masnn.train.runlog import write_json
    from masnn.train.runner import torch_globals_restored

    d = Path(run_dir)
    cached = d / "analysis.json"
    metrics = json.loads((d / "metrics.json").read_text())
    run = json.loads((d / "run.json").read_text())
    if cached.is_file() and (d / "maps.pt").is_file() and not force:
        res = json.loads(cached.read_text())
        if res.get("analysis_version") == ANALYSIS_VERSION:
            return {**res, "metrics": metrics, "run": run}
    state = ckpt_io.load_checkpoint(d / "best.pt")
    cfg = config_from_dict(migrate_saved_config(state["config"]))
    with torch_globals_restored():
        res = _analyze(cfg, state, metrics, d, data_cache)
    write_json(cached, res)
    return {**res, "metrics": metrics, "run": run}


def _analyze(
    cfg: TrainConfig,
    state: dict[str, Any],
    metrics: dict[str, Any],
    d: Path,
    data_cache: dict[Any, Any] | None,
) -> dict[str, Any]:
    from masnn.analysis import measure
    from masnn.train.build import build_model, eval_loader
    from masnn.train.checkpoint import atomic_torch_save
    from masnn.train.distributed import DistInfo

    if cfg.run.threads is not None:
        torch.set_num_threads(cfg.run.threads)
    if cfg.run.deterministic:
        torch.use_deterministic_algorithms(True)
    data = _data_for(cfg, data_cache)
    model = build_model(cfg, data)
    model.load_state_dict(state["model"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    # the accounting pass: what masnn eval / the trainer's account() measure (test, clip 0)
    loader = eval_loader(data.test, cfg, DistInfo())
    first_clip = ((x[0] if x.dim() == 6 else x, y) for x, y in loader)
    with _RateMaps(model) as maps, _GateMeans(model, "ta") as ta:
        rep = measure(model, first_clip, device=device)
    preds, labels = predict(model, eval_loader(data.test, cfg, DistInfo()), device, cfg.run.amp)
    correct = sum(int(p == y) for p, y in zip(preds, labels))
    if correct != metrics["test"]["correct"] or len(preds) != metrics["test"]["samples"]:
        raise MasnnError(
            f"{d}: the saved weights give {correct}/{len(preds)} correct test samples, the run "
            f"logged {metrics['test']['correct']}/{metrics['test']['samples']}; not reproducible "
            "(different data or thread count?)"
        )
    atomic_torch_save(maps.rates(), d / "maps.pt")
    return {
        "analysis_version": ANALYSIS_VERSION,
        "accounting": rep.to_dict(),
        "ta_weights": ta.means(),
        "predictions": preds,
        "labels": labels,
        "class_names": list(data.class_names),
        "dataset": cfg.data.dataset,
        "config": cfg.to_dict(),
    }


# -- the whole report -------------------------------------------------------------------------


@dataclass
class ReportResult:
    """What :func:`run_report` produced."""

    out: Path
    rows: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    files: list[Path]
    seconds: float


def run_report(
    preset: str = "quick",
    *,
    seeds: int | None = None,
    out: str | os.PathLike[str] = "report",
    config: str | None = None,
    overrides: Sequence[str] = (),
    variants: Sequence[str] | None = None,
    plots: bool = True,
    isometry: bool = True,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> ReportResult:
    """Train/reuse every run of ``preset`` and write the report into ``out``.

    Writes ``table.md``, ``table.csv``, ``tests.csv``, ``report.json`` and (``plots``) PNGs
    under ``plots/``; ``isometry`` adds the block-isometry sweep (``isometry.csv`` and plot).
    """
    from masnn.report import tables

    if preset not in PRESETS:
        raise ValueError(f"unknown report preset {preset!r}; allowed: {sorted(PRESETS)}")
    if plots:
        _need_matplotlib()
    p = PRESETS[preset]
    vs = None if variants is None else [parse_variant(v) for v in variants]
    out = Path(out)
    specs = plan_runs(p, seeds=seeds, out=out, config=config, overrides=overrides, variants=vs)
    t0 = time.perf_counter()
    runs = []
    data_cache: dict[Any, Any] = {}
    for i, spec in enumerate(specs):
        t_run = time.perf_counter()
        metrics, reused = ensure_run(spec)
        res = analyze_run(spec.run_dir, data_cache=data_cache)
        res["variant"] = spec.variant
        res["seed"] = spec.seed
        res["run_dir"] = spec.run_dir
        runs.append(res)
        how = "reused" if reused else f"trained in {time.perf_counter() - t_run:.0f} s"
        log(
            f"[{i + 1}/{len(specs)}] {spec.variant.label} seed {spec.seed}: test acc "
            f"{100 * metrics['test']['acc']:.2f} %, NASAR {res['accounting']['spikes']['nasar']:.4f}"
            f" ({how}; {spec.run_dir})"
        )
    rows = tables.aggregate(runs)
    tests = tables.compare(runs)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    iso = None
    if isometry:
        from masnn.analysis.isometry import isometry_sweep

        log("isometry sweep: " + ", ".join(f"{k}={v}" for k, v in p.isometry.items()))
        iso = isometry_sweep(**p.isometry)
        files.append(tables.write_isometry_csv(iso, out / "isometry.csv"))
    seconds = time.perf_counter() - t0
    meta = _meta(p, specs, runs, command, seconds)
    files += tables.write_all(out, rows, tests, runs, meta)
    if plots:
        from masnn.report import plots as plot_mod

        files += plot_mod.plot_all(out / "plots", rows, runs, iso)
    log(f"report written to {out} ({seconds:.0f} s)")
    return ReportResult(out, rows, tests, runs, files, seconds)


def _need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "masnn report draws its plots with matplotlib: pip install 'masnn[viz]' "
            "(or pass --no-plots)"
        ) from None


def _meta(
    p: Preset, specs: list[RunSpec], runs: list[dict[str, Any]], command: str | None, sec: float
) -> dict[str, Any]:
    gen = None
    if runs:
        root = Path(runs[0]["run"]["dataset"]["root"])
        man = root / "manifest.json"
        if man.is_file():
            gen = json.loads(man.read_text()).get("generator_version")
    train_s = sum(
        r["metrics"]["seconds"]["data"]
        + r["metrics"]["seconds"]["train"]
        + r["metrics"]["seconds"]["test"]
        for r in runs
    )
    first = runs[0]["run"] if runs else {}
    return {
        "preset": p.name,
        "about": p.about,
        "command": command,
        "seeds": sorted({s.seed for s in specs}),
        "settings": list(dict.fromkeys(s.variant.key for s in specs)),
        "masnn": __version__,
        "git_sha": git_sha(),  # the code that measured and wrote this report
        "run_git_shas": dict(Counter(str(r["run"].get("git_sha")) for r in runs)),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "threads": first.get("threads"),
        "device": first.get("device"),
        "dataset": first.get("dataset"),
        "generator_version": gen,
        "runs_train_seconds": train_s,
        "report_seconds": sec,
    }


__all__ = [
    "ANALYSIS_VERSION",
    "PRESETS",
    "Preset",
    "ReportResult",
    "RunSpec",
    "analyze_run",
    "config_key",
    "ensure_run",
    "is_finished",
    "plan_runs",
    "predict",
    "run_report",
]
