"""One training epoch and one evaluation pass: plain functions, no hidden globals.

Batches are time-major: ``x`` is ``(T, B, C, H, W)`` for training and, for evaluation with
``k`` clips per sample, ``(k, T, B, C, H, W)`` (clips are folded into the batch for the forward
pass and voted per sample afterwards).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masnn.errors import MasnnError
from masnn.train.config import LossCfg
from masnn.train.distributed import DistInfo, all_reduce_sum

LossFn = Callable[[Tensor, Tensor], Tensor]


class TrainingDiverged(MasnnError):
    """The loss, a gradient or a parameter became NaN/inf; the message names the epoch, the
    step and the first offending tensor."""


def first_nonfinite(model: nn.Module, grads: bool) -> str | None:
    """Name of the first parameter (or its gradient) holding NaN/inf, else ``None``.

    One fused check over all tensors (a single host sync); the name is searched only on
    failure.
    """
    named: list[tuple[str, torch.Tensor]] = [
        (n, p.grad if grads and p.grad is not None else p)
        for n, p in model.named_parameters()
        if (p.grad is not None if grads else True)
    ]
    if not named:
        return None
    flags = torch.stack([torch.isfinite(t.detach()).all() for _, t in named])
    if bool(flags.all()):
        return None
    i = int((~flags).nonzero()[0])
    name = named[i][0].removeprefix("module.")
    return f"gradient of {name}" if grads else f"parameter {name}"


def make_loss(cfg: LossCfg, num_classes: int) -> LossFn:
    """``mse``: mean squared error between the output (rate) and the one-hot label (paper);
    ``ce``: cross-entropy with optional label smoothing on the output as logits."""
    if cfg.name == "mse":

        def mse(out: Tensor, y: Tensor) -> Tensor:
            return F.mse_loss(out.float(), F.one_hot(y, num_classes).float())

        return mse

    def ce(out: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)

    return ce


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager[None]:
    """Autocast for ``amp`` in {none, bf16, fp16}.

    Convolutions and linear layers run in half precision; attention gates (sequence-level and
    membrane) and neuron state run in fp32 (they disable autocast internally).
    """
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("run.amp='fp16' needs CUDA; use 'bf16' on CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class EpochStats:
    """Globally reduced training statistics of one epoch.

    ``output_activity`` is the summed absolute output of the network over the epoch: 0 means
    the output layer never spiked (a silent, dead network).
    """

    loss: float
    acc: float
    samples: int
    steps: int
    output_activity: float = 0.0


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    *,
    device: torch.device,
    info: DistInfo,
    epoch: int,
    amp: str = "none",
    scaler: torch.amp.GradScaler | None = None,
    start: list[float] | None = None,
    step_offset: int = 0,
    on_step: Callable[[int, list[float]], None] | None = None,
) -> EpochStats:
    """Train for one pass over ``batches``; return globally reduced mean loss and accuracy.

    Args:
        start: running ``[loss_sum, correct, samples]`` of the already-done part of the epoch
            (when resuming mid-epoch).
        step_offset: steps of this epoch done before ``batches`` (for messages).
        on_step: called after every optimiser step with the step index and the running sums
            (the trainer checkpoints from it).

    Raises:
        TrainingDiverged: a non-finite loss or gradient (nothing is stepped with it), or a
            parameter that became non-finite in the step; names the epoch, step and tensor.
    """
    model.train()
    loss_sum, correct, n = start if start is not None else (0.0, 0.0, 0.0)
    steps = 0
    activity = 0.0
    for step, (x, y) in enumerate(batches):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast_context(device, amp):
            out = model(x)  # (B, K)
        loss = loss_fn(out, y)
        bad = float(not torch.isfinite(loss))
        if info.enabled:  # every rank stops together (a lone raise would hang the others)
            bad = all_reduce_sum([bad], info, device)[0]
        where = f"at epoch {epoch + 1}, step {step_offset + step + 1}"
        keep = "; the last good checkpoint is kept (lower optim.lr?)"
        if bad:
            raise TrainingDiverged(f"non-finite loss ({loss.item()}) {where}{keep}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:  # fp16: the scaler skips steps with inf gradients itself
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            name = first_nonfinite(model, grads=True)
            if name:
                raise TrainingDiverged(f"non-finite {name} {where}{keep}")
            optimizer.step()
        name = first_nonfinite(model, grads=False)
        if name:
            raise TrainingDiverged(f"{name} became NaN/inf in the optimiser step {where}{keep}")
        b = y.shape[0]
        loss_sum += loss.item() * b
        correct += (out.argmax(1) == y).sum().item()
        activity += out.detach().float().abs().sum().item()
        n += b
        steps += 1
        if on_step is not None:
            on_step(step, [loss_sum, correct, n])
    loss_sum, correct, n, activity = all_reduce_sum([loss_sum, correct, n, activity], info, device)
    return EpochStats(loss_sum / max(n, 1), correct / max(n, 1), int(n), steps, activity)


@dataclass
class EvalStats:
    """Evaluation counts, reduced over ranks.

    ``acc`` is the primary metric: single-clip accuracy for ``k = 1``, else the majority vote
    over clips. ``acc_official`` is the official code's rule (> 50 % of clips correct).
    ``confusion[i][j]`` counts samples of class ``i`` whose primary prediction is ``j``.
    ``acc_top5`` counts a sample when its label is among the 5 highest scores of the
    clip-summed output (ImageNet's top-5; 1.0 when there are at most 5 classes).
    """

    loss: float
    acc: float
    acc_single: float
    acc_majority: float
    acc_official: float
    correct: int
    samples: int
    confusion: list[list[int]]
    acc_top5: float = 0.0
    correct_top5: int = 0

    def per_class(self) -> list[float | None]:
        """Recall of each class (``None`` for a class absent from the split)."""
        return [row[i] / sum(row) if sum(row) else None for i, row in enumerate(self.confusion)]


def primary_prediction(out: Tensor) -> Tensor:
    """The primary prediction per sample from ``k`` clips' outputs ``(k, B, K)``: the majority
    vote over clips, ties broken towards the summed output, then the lowest class index."""
    pred = out.argmax(-1)  # (k, B)
    votes = torch.zeros(out.shape[1], out.shape[-1], device=out.device)
    votes.scatter_add_(1, pred.t(), torch.ones_like(pred.t(), dtype=votes.dtype))
    score = votes + 1e-6 * torch.softmax(out.sum(0), -1)
    return score.argmax(1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    loss_fn: LossFn,
    *,
    device: torch.device,
    info: DistInfo,
    amp: str = "none",
    num_classes: int | None = None,
) -> EvalStats:
    """Evaluate; batches may carry ``k`` clips per sample as ``(k, T, B, ...)``.

    ``num_classes`` sizes the confusion matrix (default: the model's output width; required
    with DDP, where a rank may see no batch). A label or an output width beyond it raises on
    every rank (the ranks agree before raising, so none is left waiting).
    """
    if info.enabled and num_classes is None:
        raise ValueError("evaluate() needs num_classes under DDP (a rank may get no batch)")
    model.eval()
    loss_sum = single = major = official = top5 = n = 0.0
    conf: Tensor | None = None
    if num_classes is not None:
        conf = torch.zeros(num_classes * num_classes, dtype=torch.float64)
    bad: str | None = None
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        if x.dim() == 6:  # (k, T, B, C, H, W): fold clips into the batch
            k, t, b = x.shape[:3]
            xf = x.permute(1, 0, 2, 3, 4, 5).reshape(t, k * b, *x.shape[3:])  # (T, k*B, C, H, W)
        else:
            k, b, xf = 1, x.shape[1], x
        with autocast_context(device, amp):
            out = model(xf).float()  # (k*B, K)
        out = out.reshape(k, b, -1)  # (k, B, K)
        classes = num_classes or out.shape[-1]
        top = int(y.max()) if y.numel() else -1
        if out.shape[-1] > classes or top >= classes:
            bad = (
                f"labels must be < num_classes={classes} and the model must output at most "
                f"that many classes; got label {top}, {out.shape[-1]} outputs"
            )
            break
        yk = y.unsqueeze(0).expand(k, b)
        loss_sum += loss_fn(out.reshape(k * b, -1), yk.reshape(-1)).item() * b
        pred = out.argmax(-1)  # (k, B)
        hit = (pred == yk).float()  # (k, B)
        single += hit[0].sum().item()
        official += (hit.mean(0) > 0.5).sum().item()
        primary = primary_prediction(out)
        major += (primary == y).sum().item()
        best5 = out.sum(0).topk(min(5, out.shape[-1]), dim=-1).indices  # (B, <=5)
        top5 += (best5 == y[:, None]).any(1).sum().item()
        n += b
        if conf is None:
            conf = torch.zeros(classes * classes, dtype=torch.float64)
        conf += torch.bincount((y * classes + primary).cpu(), minlength=classes * classes).double()
    flat = conf.tolist() if conf is not None else []
    n_bad, loss_sum, single, major, official, top5, n, *flat = all_reduce_sum(
        [float(bad is not None), loss_sum, single, major, official, top5, n, *flat], info, device
    )
    if n_bad:
        raise ValueError(bad or f"evaluation failed on {int(n_bad)} other rank(s)")
    k_cls = int(round(len(flat) ** 0.5))
    confusion = [[int(round(v)) for v in flat[i * k_cls : (i + 1) * k_cls]] for i in range(k_cls)]
    n_ = max(n, 1.0)
    acc_major = major / n_
    return EvalStats(
        loss=loss_sum / n_,
        acc=acc_major,
        acc_single=single / n_,
        acc_majority=acc_major,
        acc_official=official / n_,
        correct=int(round(major)),
        samples=int(n),
        confusion=confusion,
        acc_top5=top5 / n_,
        correct_top5=int(round(top5)),
    )
