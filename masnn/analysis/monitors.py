r"""Spike monitors: forward hooks on every :class:`~masnn.neurons.LIF` layer, reduced on the fly.

Paper: `Attention Spiking Neural Networks` (§4, SM; NASAR/LASAR) - https://arxiv.org/abs/2209.13929

For spikes ``S_n[t, b, i]`` of layer ``n`` (``N_n`` neurons per sample per step, ``T`` steps,
``M`` samples) and the counted layers ``L`` (the model's neuron-count convention):

.. math::

    \mathrm{NSAR}(t) = \frac{\sum_{n \in L} \sum_{b,i} S_n[t,b,i]}{M \sum_{n \in L} N_n},\qquad
    \mathrm{NASAR} = \frac{1}{T}\sum_t \mathrm{NSAR}(t),\qquad
    \mathrm{LASAR}_n = \frac{\sum_{t,b,i} S_n[t,b,i]}{M\,T\,N_n}

and spikes per sample ``= NASAR * N * T`` (paper Table 1). Each hook keeps only per-step
counts (``T`` numbers), per-sample counts (``T x B`` numbers per batch) and per-channel counts
(``C`` numbers); no spike tensor is stored. Hooks live only inside the ``with`` block and are
removed on exit, also on an exception; the model gains no attribute, buffer or parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from masnn.analysis.hooks import HookSet
from masnn.neurons import LIF

#: Neuron-count conventions (``ModelCfg.neuron_count``): every LIF layer, or conv LIF layers.
CONVENTIONS = ("all_lif", "conv_only")

NeuronFilter = str | Iterable[str] | Callable[[str, int], bool] | None


def model_convention(model: nn.Module) -> str:
    """The NASAR neuron-count convention recorded on ``model`` (``"all_lif"`` if none).

    Reads ``model.default_cfg.neuron_count`` (set by ``masnn.create_model``) or
    ``model.cfg.neuron_count``.
    """
    for attr in ("default_cfg", "cfg"):
        conv = getattr(getattr(model, attr, None), "neuron_count", None)
        if conv is not None:
            if conv not in CONVENTIONS:
                raise ValueError(f"unknown neuron_count {conv!r}; allowed: {list(CONVENTIONS)}")
            return str(conv)
    return "all_lif"


def _spikes_of(out: Any) -> Tensor:
    """The spike tensor of a LIF output: ``spikes`` or ``(spikes, v)`` (``return_state``)."""
    return out[0] if isinstance(out, tuple) else out


@dataclass
class LayerSpikes:
    """Running spike statistics of one LIF layer (all tensors float64, on the CPU).

    Attributes:
        name: qualified module name.
        rank: rank of the layer's output ``(T, B, ...)`` (5 for conv layers, 3 for FC).
        neurons: neurons per sample per step (elements of one ``(t, b)`` slice, summed over
            the calls of one forward).
        steps: spikes per time step, summed over samples and neurons, ``(T,)``.
        samples: samples seen.
        channel_spikes: spikes per channel (axis 2 of the output), summed over everything else.
        silent_in_sample: the sum over samples of the number of channels silent in that sample.
        sample_totals: spikes per sample (over ``T`` and neurons), one ``(B,)`` tensor per batch.
    """

    name: str
    rank: int = 0
    neurons: int | None = None
    steps: Tensor | None = None
    samples: int = 0
    channel_spikes: Tensor | None = None
    silent_in_sample: float = 0.0
    sample_totals: list[Tensor] = field(default_factory=list)

    @property
    def timesteps(self) -> int:
        """``T`` (0 before the first forward)."""
        return 0 if self.steps is None else int(self.steps.numel())

    @property
    def total(self) -> float:
        """All spikes of the layer."""
        return 0.0 if self.steps is None else float(self.steps.sum())

    @property
    def lasar(self) -> float:
        """Layer average spiking activity rate (paper SM "LASAR", ``Phi^n``)."""
        denom = self.samples * self.timesteps * (self.neurons or 0)
        return self.total / denom if denom else 0.0

    @property
    def spikes_per_sample(self) -> float:
        """Mean spikes of this layer per sample."""
        return self.total / self.samples if self.samples else 0.0

    @property
    def silent_channels(self) -> int:
        """Channels that never spiked over everything the monitor saw (paper §7.2 evidence)."""
        return 0 if self.channel_spikes is None else int((self.channel_spikes == 0).sum())

    @property
    def mean_silent_channels_per_sample(self) -> float:
        """Average number of channels silent within one sample."""
        return self.silent_in_sample / self.samples if self.samples else 0.0


@dataclass
class _Pending:
    """One forward's per-layer accumulators, merged into :class:`LayerSpikes` at its end."""

    per_sample_step: Tensor  # (T, B)
    neurons: int
    channel: Tensor | None  # (B, C)
    rank: int


class SpikeMonitor(HookSet):
    """Count spikes of every LIF layer of ``model`` while inside a ``with`` block.

    Args:
        model: any module containing :class:`~masnn.neurons.LIF` layers (or a LIF itself).
        neuron_layers: which layers NASAR counts. ``None`` = the model's convention
            (:func:`model_convention`); ``"all_lif"`` or ``"conv_only"`` (layers whose output
            has spatial axes, rank >= 4); an iterable of qualified names; or a predicate
            ``f(name, rank) -> bool``. Per-layer statistics are kept for every layer.
        per_sample: keep per-sample counts (``T`` numbers per sample) for the variance across
            inputs; turn off for very large evaluations.

    Each model forward is one batch of ``B`` independent samples (``B`` read from the spikes,
    ``(T, B, ...)``); streaming chunks are not stitched together.

    Example:
        >>> import torch
        >>> from masnn.neurons import LIF
        >>> net = nn.Sequential(LIF("paper"))
        >>> with SpikeMonitor(net) as mon:
        ...     _ = net(torch.full((4, 2, 3), 0.25))
        >>> mon.stats().nsar
        [0.0, 1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        neuron_layers: NeuronFilter = None,
        per_sample: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"SpikeMonitor needs an nn.Module, got {type(model).__name__}")
        self.model = model
        self.per_sample = bool(per_sample)
        self._filter = _make_filter(model, neuron_layers)
        self._lifs = [
            (n or type(model).__name__, m) for n, m in model.named_modules() if isinstance(m, LIF)
        ]
        if not self._lifs:
            raise ValueError(f"{type(model).__name__} contains no masnn.neurons.LIF layer")
        self.layers: dict[str, LayerSpikes] = {n: LayerSpikes(n) for n, _ in self._lifs}
        self._pending: dict[str, _Pending] = {}
        self._net_steps: list[Tensor] = []  # (T, B) per forward, counted layers only

    # -- lifetime (enter/exit/close from HookSet) ------------------------------------------
    def _install(self) -> None:
        for name, mod in self._lifs:
            self._handles.append(mod.register_forward_hook(self._make_hook(name)))
        self._handles.append(self.model.register_forward_pre_hook(self._begin))
        self._handles.append(self.model.register_forward_hook(self._end, always_call=True))

    def _on_close(self) -> None:
        self._flush()  # merge a pending forward

    # -- hooks ----------------------------------------------------------------------------
    def _begin(self, module: nn.Module, args: Any) -> None:
        self._depth += 1

    def _end(self, module: nn.Module, args: Any, out: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            if out is None:  # the forward raised (an always_call hook): drop its partial counts
                self._pending.clear()
            else:
                self._flush()

    def _make_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            self._record(name, _spikes_of(out))
            if self._depth == 0:  # a LIF called outside the monitored model's forward
                self._flush()

        return hook

    @torch.no_grad()
    def _record(self, name: str, spikes: Tensor) -> None:
        if spikes.dim() < 2:
            raise ValueError(
                f"layer {name!r}: expected (T, B, ...) spikes, got {tuple(spikes.shape)}"
            )
        t, b = spikes.shape[:2]
        s = spikes.detach()
        per_tb = s.reshape(t, b, -1).sum(-1, dtype=torch.float64).cpu()  # (T, B)
        channel = None
        if s.dim() >= 3:
            channel = s.sum(dim=0, dtype=torch.float64)  # (B, C, ...)
            channel = channel.reshape(b, s.shape[2], -1).sum(-1).cpu()  # (B, C)
        neurons = s[0, 0].numel() if t * b else 0
        p = self._pending.get(name)
        if p is None:
            self._pending[name] = _Pending(per_tb, neurons, channel, s.dim())
            return
        if p.per_sample_step.shape != per_tb.shape:
            raise ValueError(
                f"layer {name!r} was called twice in one forward with different (T, B): "
                f"{tuple(p.per_sample_step.shape)} and {(t, b)}"
            )
        p.per_sample_step += per_tb
        p.neurons += neurons
        if channel is not None and p.channel is not None and p.channel.shape == channel.shape:
            p.channel += channel
        else:
            p.channel = None

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        shapes = {p.per_sample_step.shape for p in pending.values()}
        if len(shapes) != 1:
            raise ValueError(f"LIF layers disagree on (T, B) within one forward: {sorted(shapes)}")
        t, b = next(iter(shapes))
        net = torch.zeros(t, b, dtype=torch.float64)
        for name, p in pending.items():
            st = self.layers[name]
            if st.steps is not None and st.timesteps != t:
                raise ValueError(
                    f"layer {name!r}: T changed from {st.timesteps} to {t} between forwards; "
                    "use one SpikeMonitor per T"
                )
            if st.neurons is not None and st.neurons != p.neurons:
                raise ValueError(
                    f"layer {name!r}: neurons per step changed from {st.neurons} to "
                    f"{p.neurons} between forwards (input size changed?); use one monitor per size"
                )
            st.neurons, st.rank = p.neurons, p.rank
            steps = p.per_sample_step.sum(1)
            st.steps = steps if st.steps is None else st.steps + steps
            st.samples += b
            if p.channel is not None:
                ch = p.channel.sum(0)
                st.channel_spikes = ch if st.channel_spikes is None else st.channel_spikes + ch
                st.silent_in_sample += float((p.channel == 0).sum())
            if self.per_sample:
                st.sample_totals.append(p.per_sample_step.sum(0))
            if self._filter(name, p.rank):
                net += p.per_sample_step
        if self.per_sample:
            self._net_steps.append(net)

    # -- results --------------------------------------------------------------------------
    def counted(self) -> list[str]:
        """Names of the layers NASAR counts (known after the first forward)."""
        return [
            n for n, st in self.layers.items() if st.steps is not None and self._filter(n, st.rank)
        ]

    def stats(self) -> SpikeStats:
        """A snapshot of the statistics so far (see :class:`SpikeStats`)."""
        self._flush()
        return SpikeStats.from_layers(
            self.layers, self.counted(), torch.cat(self._net_steps, 1) if self._net_steps else None
        )


def _make_filter(model: nn.Module, neuron_layers: NeuronFilter) -> Callable[[str, int], bool]:
    spec = model_convention(model) if neuron_layers is None else neuron_layers
    if isinstance(spec, str):
        if spec == "all_lif":
            return lambda name, rank: True
        if spec == "conv_only":
            return lambda name, rank: rank >= 4
        raise ValueError(
            f"unknown neuron_layers {spec!r}; allowed: {list(CONVENTIONS)}, an iterable of "
            "layer names, or a predicate f(name, rank)"
        )
    if callable(spec):
        return lambda name, rank: bool(spec(name, rank))
    names = set(spec)
    lifs = {n or type(model).__name__ for n, m in model.named_modules() if isinstance(m, LIF)}
    unknown = sorted(names - lifs)
    if unknown:
        raise ValueError(f"neuron_layers {unknown} are not LIF layers; LIF layers: {sorted(lifs)}")
    return lambda name, rank: name in names


@dataclass(frozen=True)
class SpikeStats:
    """Spike statistics of a monitored run (per sample means; rates in spikes/neuron/step).

    Attributes:
        layers: per-layer running statistics, by qualified name.
        counted: the layers NASAR counts (the neuron-count convention).
        neurons: ``N``, neurons of the counted layers (per sample per step).
        timesteps: ``T``.
        samples: samples seen.
        nsar: ``NSAR(t)`` for ``t = 0..T-1`` over the counted layers.
        nasar: the mean of ``nsar``.
        spikes_per_sample: spikes of the counted layers per sample (``NASAR * N * T``).
        spikes_per_sample_all: spikes of every LIF layer per sample.
        nsar_var_time: population variance of ``NSAR(t)`` over ``t``.
        nasar_per_sample: per-sample NASAR (``None`` without ``per_sample``).
        nsar_var_inputs: population variance of the per-sample NASAR across inputs.
        nsar_var_inputs_per_step: per step ``t``, the variance across inputs of ``NSAR(t)``.
    """

    layers: dict[str, LayerSpikes]
    counted: list[str]
    neurons: int
    timesteps: int
    samples: int
    nsar: list[float]
    nasar: float
    spikes_per_sample: float
    spikes_per_sample_all: float
    nsar_var_time: float
    nasar_per_sample: list[float] | None
    nsar_var_inputs: float | None
    nsar_var_inputs_per_step: list[float] | None

    @classmethod
    def from_layers(
        cls, layers: dict[str, LayerSpikes], counted: list[str], net_steps: Tensor | None
    ) -> SpikeStats:
        """Reduce per-layer statistics (and per-sample ``(T, M)`` counts) to network numbers."""
        seen = [st for st in layers.values() if st.steps is not None]
        t = seen[0].timesteps if seen else 0
        samples = seen[0].samples if seen else 0
        n = sum(layers[c].neurons or 0 for c in counted)
        steps = torch.zeros(t, dtype=torch.float64)
        for c in counted:
            steps += layers[c].steps  # type: ignore[arg-type]  # counted layers have steps
        nsar = steps / (n * samples) if n and samples else steps * 0
        total = float(steps.sum())
        per_sample = var_inputs = var_steps = None
        if net_steps is not None and n and net_steps.numel():
            rate = net_steps / n  # (T, M): NSAR(t) of each sample
            ps = rate.mean(0)
            per_sample = ps.tolist()
            var_inputs = float(ps.var(unbiased=False))
            var_steps = rate.var(1, unbiased=False).tolist()
        return cls(
            layers=layers,
            counted=list(counted),
            neurons=n,
            timesteps=t,
            samples=samples,
            nsar=nsar.tolist(),
            nasar=float(nsar.mean()) if t else 0.0,
            spikes_per_sample=total / samples if samples else 0.0,
            spikes_per_sample_all=sum(st.total for st in seen) / samples if samples else 0.0,
            nsar_var_time=float(nsar.var(unbiased=False)) if t else 0.0,
            nasar_per_sample=per_sample,
            nsar_var_inputs=var_inputs,
            nsar_var_inputs_per_step=var_steps,
        )


__all__ = ["CONVENTIONS", "LayerSpikes", "SpikeMonitor", "SpikeStats", "model_convention"]
