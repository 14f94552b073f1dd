"""Pretrained weights from local files: the authors' MS-ResNet checkpoints and masnn's own.

The official ImageNet code (``Att_Res_SNN/models/resnet_2.py``, ``ResNet_origin``) names its
tensors by position inside ``nn.Sequential`` containers. Its layout, for stage ``s`` (1..4,
``conv{s+1}_x``) and block ``j``::

    conv1.0.weight                                  stem Conv7x7/2
    conv1.1.bn.{weight,bias,running_mean,running_var,num_batches_tracked}   stem BN (BatchNorm3d)
    conv{s+1}_x.{j}.residual_function.1.weight      Conv3x3 (stride)
    conv{s+1}_x.{j}.residual_function.2.bn.*        BN1
    conv{s+1}_x.{j}.residual_function.4.weight      Conv3x3
    conv{s+1}_x.{j}.residual_function.5.bn.*        BN2
    conv{s+1}_x.{j}.residual_function.6.attention.ca.sharedMLP.{0,2}.weight   CA (Conv3d 1x1x1)
    conv{s+1}_x.{j}.residual_function.6.attention.sa.conv.weight              SA (Conv2d 2->1)
    conv{s+1}_x.{j}.shortcut.1.weight               shortcut Conv1x1 (after AvgPool)
    conv{s+1}_x.{j}.shortcut.2.bn.*                 shortcut BN
    fc.{weight,bias}

Checkpoints saved from DDP carry a ``module.`` prefix, which is stripped. The CA MLP is a
``Conv3d`` with ``1x1x1`` kernels there (``[h, C, 1, 1, 1]``) and a bias-free ``Linear`` here
(``[h, C]``); everything else has the same shape. BatchNorm3d over ``[B, C, T, H, W]`` and
masnn's BatchNorm2d over ``[T*B, C, H, W]`` hold the same tensors and compute the same thing.

Nothing is ever downloaded: every function takes a local path, and an optional SHA-256 of the
file is checked before it is unpickled (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from masnn.errors import MasnnError

#: masnn architecture -> the official code's constructor name (``models.resnet_2``).
OFFICIAL_ARCHS = {
    "ms_resnet18": "resnet18",
    "ms_resnet34": "resnet34",
    "ms_resnet104": "resnet104",
}
#: Containers some training scripts wrap a state dict in (``{"state_dict": {...}}``).
_WRAPPERS = ("state_dict", "model", "net")


class PretrainedError(MasnnError, ValueError):
    """Pretrained weights cannot be used; the message names the file and the offending key."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(
    path: str | os.PathLike[str], sha256: str | None = None
) -> tuple[dict[str, Tensor], str]:
    """Read a state dict from a local file, checking its SHA-256 first.

    Accepts a bare state dict, a masnn checkpoint (its ``model`` entry), or a dict wrapping the
    state dict under ``state_dict`` / ``model`` / ``net``; a ``module.`` prefix (DDP) is
    stripped.

    Args:
        path: a local file (URLs are refused: masnn never downloads).
        sha256: the expected hex digest; ``None`` = no check (the digest is still returned).

    Returns:
        ``(state_dict, sha256_of_the_file)``.

    Raises:
        FileNotFoundError: no such file.
        PretrainedError: a URL, a digest mismatch, an unreadable file or no state dict in it.
    """
    text = os.fspath(path)
    if "://" in text:
        raise PretrainedError(
            f"pretrained={text!r}: masnn never downloads; fetch the file yourself and pass its "
            "local path (with its SHA-256 as pretrained_sha256)"
        )
    p = Path(text).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {p}")
    digest = file_sha256(p)
    if sha256 is not None and digest != sha256.strip().lower():
        raise PretrainedError(
            f"{p}: SHA-256 mismatch: expected {sha256.strip().lower()}, the file has {digest}"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise PretrainedError(f"{p}: cannot read ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, Mapping) and "schema_version" in obj and "model" in obj:
        obj = obj["model"]  # a masnn checkpoint (best.pt / checkpoint.pt)
    elif isinstance(obj, Mapping):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), Mapping) and not isinstance(obj.get(key), Tensor):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise PretrainedError(f"{p}: no state dict in the file (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise PretrainedError(f"{p}: entry {bad[0]!r} is not a tensor; not a state dict")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, digest


def _inner(m: Any) -> Any:
    """The module a ``SeqToBatch`` wraps (or ``m`` itself); walked by attribute."""
    return getattr(m, "module", m)


def _gates(attn: nn.Module | None) -> dict[str, nn.Module]:
    """The CA / SA gates of a residual attention module (``{}`` without attention)."""
    from masnn.attention.channel import ChannelAttention
    from masnn.attention.spatial import SpatialAttention

    if attn is None:
        return {}
    found: dict[str, nn.Module] = {}
    inside: list[str] = []  # names of the gates found (their own layers are theirs)
    for name, mod in attn.named_modules():
        if any(name.startswith(g + ".") for g in inside):
            continue
        if isinstance(mod, ChannelAttention):
            found["ca"], inside = mod, [*inside, name]
        elif isinstance(mod, SpatialAttention):
            found["sa"], inside = mod, [*inside, name]
        elif next(mod.parameters(recurse=False), None) is not None:
            raise PretrainedError(
                f"{type(mod).__name__} has no counterpart in the official MS-ResNet code "
                "(it knows CA and SA only)"
            )
    return found


def _pairs(model: Any) -> Iterator[tuple[str, nn.Module, bool]]:
    """``(official prefix, masnn module, is_ca_mlp)`` for every module holding tensors.

    ``model`` is an MS-ResNet (``stem``, ``stages`` of blocks with ``conv1`` / ``bn1`` /
    ``conv2`` / ``bn2`` / ``attn`` / ``shortcut``, ``fc``), walked by attribute.
    """
    stem = _inner(model.stem)
    yield "conv1.0.", stem[0], False
    yield "conv1.1.bn.", stem[1], False
    for s, stage in enumerate(model.stages):
        for j, blk in enumerate(stage):
            pre = f"conv{s + 2}_x.{j}."
            yield pre + "residual_function.1.", _inner(blk.conv1), False
            yield pre + "residual_function.2.bn.", _inner(blk.bn1), False
            yield pre + "residual_function.4.", _inner(blk.conv2), False
            yield pre + "residual_function.5.bn.", _inner(blk.bn2), False
            gates: dict[str, Any] = _gates(blk.attn)
            if "ca" in gates:
                mlp = gates["ca"].mlp
                yield pre + "residual_function.6.attention.ca.sharedMLP.0.", mlp[0], True
                yield pre + "residual_function.6.attention.ca.sharedMLP.2.", mlp[2], True
            if "sa" in gates:
                yield pre + "residual_function.6.attention.sa.conv.", gates["sa"].conv, False
            if blk.shortcut is not None:
                sc = _inner(blk.shortcut)
                yield pre + "shortcut.1.", sc[1], False
                yield pre + "shortcut.2.bn.", sc[2], False
    yield "fc.", model.fc, False


def official_key_map(model: nn.Module) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Official key -> ``(masnn key, shape the official tensor must have)`` for an MS-ResNet.

    Every tensor of ``model``'s state dict appears exactly once (checked).
    """
    names = {id(m): n for n, m in model.named_modules()}
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for prefix, mod, is_mlp in _pairs(model):
        for local, t in mod.state_dict().items():
            shape = tuple(t.shape) + ((1, 1, 1) if is_mlp and local == "weight" else ())
            out[prefix + local] = (f"{names[id(mod)]}.{local}", shape)
    ours = set(model.state_dict())
    covered = {k for k, _ in out.values()}
    if covered != ours:  # a model change the map does not know about: fail, never skip
        left = sorted(ours - covered)
        raise PretrainedError(
            f"internal: the official key map misses masnn tensor {left[0]!r} ({len(left)} in all)"
        )
    return out


def convert_official(
    state: Mapping[str, Tensor], model: nn.Module, *, source: str = "state dict"
) -> dict[str, Tensor]:
    """Map an official MS-ResNet state dict onto ``model``'s keys (strict).

    Args:
        state: the official tensors (``module.`` already stripped).
        model: an ``ms_resnet*`` model whose architecture matches the checkpoint.
        source: what ``state`` came from, for the messages (e.g. the file name).

    Returns:
        A state dict for ``model.load_state_dict(..., strict=True)``.

    Raises:
        PretrainedError: a missing or unexpected key, or a shape mismatch; the message names
            the first offending key and counts the others.
    """
    kmap = official_key_map(model)
    missing = [k for k in kmap if k not in state]
    unexpected = [k for k in state if k not in kmap]
    if missing:
        raise PretrainedError(
            f"{source}: missing key {missing[0]!r} ({len(missing)} missing in all) for "
            f"{_describe(model)}; check arch and attn"
        )
    if unexpected:
        raise PretrainedError(
            f"{source}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected in all) "
            f"for {_describe(model)}; check arch and attn"
        )
    out: dict[str, Tensor] = {}
    ours = model.state_dict()
    for key, (target, shape) in kmap.items():
        t = state[key]
        if tuple(t.shape) != shape:
            raise PretrainedError(
                f"{source}: key {key!r} has shape {tuple(t.shape)}, {_describe(model)} needs "
                f"{shape} (reduction_c, kernel_size, widths or num_classes differ?)"
            )
        out[target] = t.reshape(ours[target].shape).to(ours[target].dtype)
    return out


def _describe(model: nn.Module) -> str:
    args = getattr(model, "model_args", {})
    name = getattr(getattr(model, "default_cfg", None), "name", type(model).__name__)
    return f"{name}(attn={args.get('attn')!r})"


def looks_official(state: Mapping[str, Tensor]) -> bool:
    """Whether a state dict uses the official MS-ResNet layout (``conv1.0.weight`` stem)."""
    return "conv1.0.weight" in state and any(k.startswith("conv2_x.") for k in state)


def load_pretrained(
    model: nn.Module, path: str | os.PathLike[str], sha256: str | None = None
) -> str:
    """Load local weights into ``model`` (strict): masnn layout, or the official MS-ResNet one.

    A masnn checkpoint of the same architecture trained at another ``T`` loads unchanged
    (MS-ResNet has no ``T``-dependent tensors): this is the T = 1 -> T = 4 fine-tune start.

    Returns:
        The file's SHA-256.

    Raises:
        PretrainedError: digest mismatch, missing/unexpected key (named) or shape mismatch.
    """
    state, digest = read_state_dict(path, sha256)
    if looks_official(state) and hasattr(model, "stages"):
        state = convert_official(state, model, source=os.fspath(path))
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    if missing or unexpected:
        what = (
            f"missing key {missing[0]!r} ({len(missing)} missing)"
            if missing
            else f"unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)"
        )
        raise PretrainedError(f"{os.fspath(path)}: {what} for {_describe(model)}")
    for k, t in state.items():
        if tuple(t.shape) != tuple(ours[k].shape):
            raise PretrainedError(
                f"{os.fspath(path)}: key {k!r} has shape {tuple(t.shape)}, "
                f"{_describe(model)} needs {tuple(ours[k].shape)}"
            )
    model.load_state_dict(state, strict=True)
    return digest


def load_official(
    path: str | os.PathLike[str],
    arch: str = "ms_resnet104",
    *,
    sha256: str | None = None,
    **create_kwargs: Any,
) -> nn.Module:
    """Build ``arch`` as the official code does and load the authors' released weights.

    Args:
        path: the official ``.pth`` (e.g. ``resnet104-146-best.pth``), a local file.
        arch: ``ms_resnet18`` | ``ms_resnet34`` | ``ms_resnet104``.
        sha256: expected SHA-256 of the file (``None`` = not checked).
        **create_kwargs: passed to :func:`masnn.create_model`. Defaults reproduce the code:
            ``attn="csa"``, ``placement="code"`` (CA/SA pooled over ``T``, SA kernel 3,
            ``r_c = 8``, ReLU), ``timesteps=1``; pass ``attn="ca"`` / ``"none"`` for
            checkpoints of those variants (``"none"`` gets no ReLU, as the code's ``"no"``
            cell), ``timesteps=4`` for the T = 4 model.

    Returns:
        The model in eval mode, with ``model.pretrained = {"path", "sha256", "layout"}``.

    Raises:
        ValueError: ``arch`` is not an MS-ResNet.
        PretrainedError: see :func:`convert_official` and :func:`read_state_dict`.

    Example:
        >>> m = load_official("resnet104-146-best.pth", "ms_resnet104")  # doctest: +SKIP
    """
    from masnn.models._factory import create_model

    if arch not in OFFICIAL_ARCHS:
        raise ValueError(
            f"load_official: arch must be one of {sorted(OFFICIAL_ARCHS)}, got {arch!r}"
        )
    kwargs = {"attn": "csa", "placement": "code", **create_kwargs}
    if kwargs["attn"] in (None, "none"):
        kwargs.setdefault("attn_relu", False)  # the code's "no" cell has no ReLU
    model: Any = create_model(arch, **kwargs)
    state, digest = read_state_dict(path, sha256)
    model.load_state_dict(convert_official(state, model, source=os.fspath(path)), strict=True)
    model.pretrained = {"path": os.fspath(path), "sha256": digest, "layout": "official"}
    return model.eval()


__all__ = [
    "OFFICIAL_ARCHS",
    "PretrainedError",
    "convert_official",
    "file_sha256",
    "load_official",
    "load_pretrained",
    "looks_official",
    "official_key_map",
    "read_state_dict",
]
