"""Strict, typed training configuration: YAML <-> nested dataclasses, ``--set`` overrides.

Unknown keys raise with the nearest valid key, values are type-checked against the
annotations, and the resolved config is what gets saved in the run directory. One name per
concept end to end: the dataclass field, the YAML key and the ``--set`` path are the same
string (``data.timesteps``, ``optim.lr``, ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from masnn._registry import suggest
from masnn.attention import AttnCfg
from masnn.data import DATASETS
from masnn.data.registry import resolve_options

_SCI = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A configuration is invalid; the message names the key and the allowed values."""


@dataclass
class DataCfg:
    """Dataset and framing.

    Attributes:
        dataset: a name registered in :data:`masnn.data.DATASETS`: ``synth_gesture`` (the
            offline default, generated if absent), ``dvs128_gesture``, ``dvs128_gait``,
            ``imagenet`` (the ``imagenet`` extra), ...
        root: dataset directory; ``None`` = the default data dir (synthetic set only).
        synth_size: size of the generated set (``small`` | ``full``).
        synth_seed: seed of the generated set.
        gait_variant: ``day`` | ``night`` (DVS128 Gait only).
        timesteps: frames per clip ``T`` (also the model's ``T``).
        dt_ms: frame width in ms (MA-SNN fixed-window protocol).
        ds: spatial downsampling (``x // ds``, ``y // ds``).
        test_clips: evenly spaced clips per test sample (``k``).
        short: policy for samples shorter than ``T * dt``: ``pad`` | ``error``.
        shift: training augmentation: translate each training clip by a random offset of up
            to ``shift`` pixels per axis (after downsampling; zero fill;
            :class:`masnn.frames.RandomShift`); ``0`` = none (the paper's recipe: only the
            random temporal crop; the paper configs pin it).
        val_fraction: share of the training *trial files* (users x lighting) held out for
            model selection; 0 disables validation (selection then uses the last epoch).
        workers: DataLoader worker processes.
        cache_dir: decoded-event cache; ``None`` = ``$MASNN_CACHE`` or the XDG cache dir.
        options: the dataset's own settings (keys it registered; unknown keys raise), e.g.
            ImageNet's ``image_size`` (training ``RandomResizedCrop``), ``crop`` (evaluation
            ``CenterCrop``; 224 Table 3, 288 Table 2 ``*``) and ``resize`` (``None`` = 256 for
            crop 224, 320 for 288).
        empty_samples: label windows that select no event: ``error`` (default) stops before
            training; ``warn`` trains anyway and warns with the count.
    """

    dataset: str = "synth_gesture"
    root: str | None = None
    synth_size: Literal["small", "full"] = "small"
    synth_seed: int = 0
    gait_variant: Literal["day", "night"] = "day"
    timesteps: int = 16
    dt_ms: float = 50.0
    ds: int = 4
    test_clips: int = 1
    short: Literal["pad", "error"] = "pad"
    shift: int = 2  # the main job's (chosen on validation, docs/training.md)
    val_fraction: float = 0.2
    workers: int = 0
    cache_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    empty_samples: Literal["error", "warn"] = "error"


@dataclass
class ModelCfg:
    """Which registered model, its attention and its neuron (``masnn.create_model``).

    ``attn`` is the mapping of :class:`masnn.attention.AttnCfg` (``name``, ``placement``,
    ``locations``, ``reduction_t``, ``reduction_c``, ``kernel_size``, ``relu``; ``null`` = the
    placement's / the model's default). ``neuron`` is a preset name (``None`` = the model's
    default). ``kwargs`` passes further architecture arguments (e.g. ``channels``, ``hidden``);
    ``create_model`` validates them.
    """

    name: str = "ma_snn3_tiny"
    attn: AttnCfg = field(default_factory=lambda: AttnCfg("ca"))
    neuron: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


#: Keys of the old flat ``model`` section -> their place in the ``model.attn`` mapping.
_MOVED_TO_ATTN = {
    "placement": "placement",
    "reduction_t": "reduction_t",
    "reduction_c": "reduction_c",
    "kernel_size": "kernel_size",
    "attn_relu": "relu",
    "locations": "locations",
}
_ATTN_EXAMPLE = (
    "model.attn is a mapping, e.g. attn: {name: tcsa, placement: paper, locations: {t: conv_pre}, "
    "reduction_t: 5, reduction_c: 16, kernel_size: 7, relu: false} "
    "(--set model.attn.name=ca --set model.attn.placement=code)"
)


def _check_model_section(model: Any) -> None:
    """Old flat attention keys fail with the new form (``model.attn`` is a mapping)."""
    if not isinstance(model, dict):
        return
    attn = model.get("attn")
    if attn is not None and not isinstance(attn, dict):
        raise ConfigError(
            f"model.attn: got {attn!r}; {_ATTN_EXAMPLE}; write attn: {{name: {attn}}}"
        )
    for old, new in _MOVED_TO_ATTN.items():
        if old in model:
            raise ConfigError(f"model.{old} moved to model.attn.{new}; {_ATTN_EXAMPLE}")
    for old, new in _MOVED_TO_ATTN.items():
        if isinstance(model.get("kwargs"), dict) and old in model["kwargs"]:
            raise ConfigError(f"model.kwargs.{old} moved to model.attn.{new}; {_ATTN_EXAMPLE}")


#: Old flat ImageNet keys of the ``data`` section, now ``data.options`` of ``imagenet``.
_MOVED_TO_OPTIONS = ("image_size", "crop", "resize")
_OPTIONS_EXAMPLE = (
    "ImageNet's settings are options of the dataset, e.g. data: {dataset: imagenet, "
    "options: {image_size: 224, crop: 288, resize: null}} (--set data.options.crop=288)"
)


def _check_data_section(data: Any) -> None:
    """Old flat ImageNet keys fail with the new form (``data.options``)."""
    if not isinstance(data, dict):
        return
    for old in _MOVED_TO_OPTIONS:
        if old in data:
            raise ConfigError(f"data.{old} moved to data.options.{old}; {_OPTIONS_EXAMPLE}")


@dataclass
class OptimCfg:
    """Optimiser: ``adam`` (paper DVS recipe) or ``sgd`` (ImageNet recipe)."""

    name: Literal["adam", "sgd"] = "adam"
    lr: float = 2e-3  # the main job's (chosen on validation, docs/training.md)
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class SchedCfg:
    """Learning-rate schedule.

    ``plateau`` = ReduceLROnPlateau; ``monitor`` picks what it watches. The official DVS code
    steps it on the *training* loss (``train_loss``), which the paper configs reproduce;
    ``val_loss`` is the honest alternative. ``cosine`` anneals over ``t_max`` epochs
    (``None`` = all epochs).
    """

    name: Literal["plateau", "cosine", "none"] = "cosine"
    monitor: Literal["train_loss", "val_loss", "val_acc"] = "train_loss"
    factor: float = 0.1
    patience: int = 5
    t_max: int | None = None
    eta_min: float = 0.0


@dataclass
class LossCfg:
    """``mse`` between the output rate and the one-hot label (paper) or ``ce``."""

    name: Literal["mse", "ce"] = "mse"
    label_smoothing: float = 0.0


@dataclass
class RunCfg:
    """Run control: budget, seed, precision, logging and checkpoints."""

    epochs: int = 70  # the main job's (chosen on validation, docs/training.md)
    batch_size: int = 16
    eval_batch_size: int | None = None
    seed: int = 0
    out_dir: str = "runs"
    name: str | None = None
    amp: Literal["none", "bf16", "fp16"] = "none"
    deterministic: bool = False
    threads: int | None = None
    max_steps_per_epoch: int | None = None
    checkpoint_every_steps: int | None = None
    tensorboard: bool = False
    progress: bool = True


@dataclass
class TrainConfig:
    """The whole training configuration (``masnn train [CONFIG] [--set key=value ...]``)."""

    data: DataCfg = field(default_factory=DataCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    sched: SchedCfg = field(default_factory=SchedCfg)
    loss: LossCfg = field(default_factory=LossCfg)
    run: RunCfg = field(default_factory=RunCfg)
    #: Free-text provenance (the paper row this config reproduces); not used by training.
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), as written to ``config.yaml``."""
        return _plain(dataclasses.asdict(self))

    def hash(self) -> str:
        """Short stable hash of the resolved config, excluding what cannot change the result:
        ``notes``, ``run.name``, ``run.out_dir`` (a moved run resumes), ``run.progress`` and
        ``run.tensorboard``."""
        d = self.to_dict()
        d.pop("notes", None)
        for k in _NOT_HASHED:
            d["run"].pop(k, None)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


_NOT_HASHED = ("name", "out_dir", "progress", "tensorboard")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_value(path: str, value: Any, tp: Any) -> Any:
    """Validate/coerce ``value`` against annotation ``tp``; raise ConfigError naming ``path``."""
    origin = get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(path, value, a)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: invalid value {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{path}: {value!r} is not allowed{suggest(str(value), [str(a) for a in allowed])}; "
                f"allowed: {list(allowed)}"
            )
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} values, got {value!r}")
        return tuple(
            _check_value(f"{path}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _SCI.fullmatch(value.strip()):
            value = float(value)  # PyYAML (YAML 1.1) reads "1e-4" as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is Any:
        return value
    raise ConfigError(f"{path}: unsupported annotation {tp!r}")  # internal: a schema bug


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            full = [f"{prefix}.{n}" if prefix else n for n in names]
            raise ConfigError(
                f"unknown config key {path!r}{suggest(path, full)}; valid keys here: {names}"
            )
        kwargs[key] = _check_value(path, value, hints[key])
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # a section's own validation (e.g. AttnCfg)
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def migrate_saved_config(data: dict[str, Any]) -> dict[str, Any]:
    """Upgrade a config saved by an older masnn (checkpoints, ``config.yaml``) to this shape.

    Saved configs of masnn <= 0.x hold the flat ``model.attn`` string and ``model.placement`` /
    ``reduction_*`` / ``kernel_size`` / ``attn_relu`` keys; they map one to one onto the
    ``model.attn`` mapping (``null`` meant "the model's default" then as now). Only saved
    configs are migrated: a user's YAML or ``--set`` with the old keys fails (new form shown).
    """
    out = json.loads(json.dumps(data))  # deep copy of plain data
    _migrate_data_section(out.get("data"))
    model = out.get("model")
    if not isinstance(model, dict) or isinstance(model.get("attn"), dict):
        return out
    attn: dict[str, Any] = {"name": model.pop("attn", None) or "none"}
    for old, new in _MOVED_TO_ATTN.items():
        value = model.pop(old, None)
        if old == "locations" and isinstance(model.get("kwargs"), dict):
            value = model["kwargs"].pop("locations", value)
        if value is not None:
            attn[new] = value
    model["attn"] = attn
    return out


def _migrate_data_section(data: Any) -> None:
    """Saved configs before ImageNet became a registered dataset hold flat ``data.image_size``
    / ``crop`` / ``resize`` (in every run, ImageNet or not): an ImageNet run's move to
    ``data.options`` (a value already there wins); any other run's are dropped (they were the
    defaults: other datasets refused them)."""
    if not isinstance(data, dict):
        return
    moved = {k: data.pop(k) for k in _MOVED_TO_OPTIONS if k in data}
    if moved and data.get("dataset") == "imagenet":
        options = data.setdefault("options", {})
        if isinstance(options, dict):
            for key, value in moved.items():
                options.setdefault(key, value)


def config_from_dict(data: dict[str, Any] | None) -> TrainConfig:
    """Build a :class:`TrainConfig` from a nested mapping; strict (see the module docstring)."""
    _check_model_section((data or {}).get("model"))
    _check_data_section((data or {}).get("data"))
    cfg = _build(TrainConfig, data or {})
    validate(cfg)
    return cfg


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a nested mapping."""
    out = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = _safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            why = " ".join(str(exc).split())
            raise ConfigError(
                f"--set {item}: the value is not valid YAML ({why}); quote it for the shell "
                f"and YAML, e.g. --set '{key}=\"...\"' or --set '{key}={{a: [1, 2]}}'"
            ) from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = value
    return out


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys (YAML would keep the last)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                f"{seen[key] + 1}); YAML would silently keep the last one"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``--set`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            loaded = _safe_load(p.read_text())
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
        data = loaded or {}
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from None


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks that annotations cannot express."""
    checks = [
        (cfg.data.timesteps >= 1, "data.timesteps must be >= 1"),
        (cfg.data.dt_ms > 0, "data.dt_ms must be > 0"),
        (cfg.data.ds >= 1, "data.ds must be >= 1"),
        (cfg.data.test_clips >= 1, "data.test_clips must be >= 1"),
        (0.0 <= cfg.data.val_fraction < 1.0, "data.val_fraction must be in [0, 1)"),
        (cfg.data.shift >= 0, "data.shift must be >= 0 (pixels; 0 = no spatial augmentation)"),
        (cfg.data.workers >= 0, "data.workers must be >= 0"),
        (cfg.optim.lr > 0, "optim.lr must be > 0"),
        (cfg.optim.weight_decay >= 0, "optim.weight_decay must be >= 0"),
        (cfg.run.epochs >= 1, "run.epochs must be >= 1"),
        (cfg.run.batch_size >= 1, "run.batch_size must be >= 1"),
        (0.0 <= cfg.loss.label_smoothing < 1.0, "loss.label_smoothing must be in [0, 1)"),
        (cfg.sched.factor > 0 and cfg.sched.factor < 1, "sched.factor must be in (0, 1)"),
        (cfg.sched.patience >= 0, "sched.patience must be >= 0"),
        (cfg.run.eval_batch_size is None or cfg.run.eval_batch_size >= 1,
         "run.eval_batch_size must be >= 1"),
        (cfg.run.max_steps_per_epoch is None or cfg.run.max_steps_per_epoch >= 1,
         "run.max_steps_per_epoch must be >= 1"),
        (cfg.run.checkpoint_every_steps is None or cfg.run.checkpoint_every_steps >= 1,
         "run.checkpoint_every_steps must be >= 1"),
        (cfg.run.threads is None or cfg.run.threads >= 1, "run.threads must be >= 1"),
        (0 <= cfg.optim.momentum < 1, "optim.momentum must be in [0, 1)"),
        (all(0 <= b < 1 for b in cfg.optim.betas), "optim.betas must be in [0, 1)"),
        (cfg.sched.eta_min >= 0, "sched.eta_min must be >= 0"),
        (cfg.sched.t_max is None or cfg.sched.t_max >= 1, "sched.t_max must be >= 1"),
        (cfg.data.ds <= 64, f"data.ds={cfg.data.ds} leaves at most a 2x2 frame of a 128x128 "
         "sensor; allowed: 1..64"),
        (cfg.data.timesteps <= 100_000, "data.timesteps must be <= 100000"),
        (not (cfg.sched.name == "plateau" and cfg.sched.monitor != "train_loss"
              and cfg.data.val_fraction == 0),
         f"sched.monitor={cfg.sched.monitor!r} needs a validation split (data.val_fraction > 0)"),
    ]  # fmt: skip
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    if cfg.run.name is not None:
        check_run_name(cfg.run.name)
    if cfg.data.dataset not in DATASETS:
        allowed = DATASETS.names()
        raise ConfigError(
            f"data.dataset: unknown dataset {cfg.data.dataset!r}"
            f"{suggest(cfg.data.dataset, allowed)}; allowed: {allowed}"
        )
    entry = DATASETS.get(cfg.data.dataset)
    if entry.needs_root and cfg.data.root is None:
        raise ConfigError(
            f"data.root is required for data.dataset={cfg.data.dataset!r} (masnn never downloads; "
            "see docs/data.md, for ImageNet docs/imagenet.md, for where to get it)"
        )
    try:
        resolve_options(entry, given_options(cfg.data))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def given_options(data: DataCfg) -> dict[str, Any]:
    """The options ``data`` sets for its registered dataset.

    A registered option is read from ``data.options`` or, failing that, from the ``data`` key of
    the same name (``data.gait_variant``, ``data.synth_size``, ...); the others take the
    registered default (:func:`masnn.data.registry.resolve_options`).
    """
    entry = DATASETS.get(data.dataset)
    given = {k: getattr(data, k) for k in entry.options if hasattr(data, k)}
    given.update(data.options)
    return given


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@,-]*")


def check_run_name(name: str) -> None:
    """``run.name`` is one directory name inside ``run.out_dir``: letters, digits and
    ``_ . + = @ , -``, not starting with ``.`` or ``-`` (so it cannot escape or hide)."""
    if not _NAME.fullmatch(name) or len(name) > 200:
        raise ConfigError(
            f"run.name={name!r}: must be one directory name (letters, digits, _ . + = @ , -; "
            "not starting with '.' or '-'; no '/'), so the run stays inside run.out_dir"
        )


def dump_config(cfg: TrainConfig) -> str:
    """YAML text of the resolved config."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
