"""``masnn selftest`` family ``models``: a realistic forward + backward of ``ma_snn3``.

Registered when ``masnn.cli.selftest`` imports this module (listed in its
``_SELFTEST_MODULES``); it lives in the CLI layer because it registers with the CLI.
"""

from __future__ import annotations

import torch

from masnn.cli.selftest import check_backward, register_selftest
from masnn.models import StreamingModel, count_neurons, create_model, list_models, model_cfg


@register_selftest("models")
def _models() -> dict[str, object]:
    """ma_snn3 (paper TCSA) at T = 16, 2x32x32, B = 8: forward, backward, rates; streaming."""
    t, b = 16, 8
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((t, b, 2, 32, 32), 0.3), generator=g)  # event counts
    model = create_model("ma_snn3", timesteps=t)
    out = model(x)  # (B, K) output firing rates
    if out.shape != (b, 11) or not torch.isfinite(out).all():
        raise RuntimeError(f"bad output {tuple(out.shape)}")
    target = torch.nn.functional.one_hot(torch.arange(b) % 11, 11).float()
    n_params = check_backward(model, torch.nn.functional.mse_loss(out, target))
    causal = create_model("ma_snn3", timesteps=4, attn="csa").eval()
    x4 = x[:4, :2]
    with torch.no_grad():
        stream = StreamingModel(causal).run(x4)[-1]
        diff = (stream - causal(x4)).abs().max().item()
    if diff > 1e-6:
        raise RuntimeError(f"streaming differs from the sequence forward by {diff}")
    return {
        "params": n_params,
        "neurons": sum(count_neurons(model, x[:, :1]).values()),
        "output rate": round(out.mean().item(), 3),
        "stream diff": diff,
    }


#: Minimal shapes per family for the every-model check: (T, B, H, W).
_MINIMAL = {"ma_snn3": (2, 2, 16, 16), "ma_snn5": (2, 1, 128, 128), "ms_resnet": (1, 2, 32, 32)}


@register_selftest("zoo")
def _zoo() -> dict[str, object]:
    """Every registered model once at a minimal shape: forward, backward, finite output."""
    g = torch.Generator().manual_seed(0)
    facts: dict[str, object] = {}
    for name in list_models():
        cfg = model_cfg(name)
        t, b, h, w = _MINIMAL[cfg.family]
        c = cfg.input_size[0]
        model = create_model(name, timesteps=t, input_size=(c, h, w), num_classes=10)
        x = torch.poisson(torch.full((t, b, c, h, w), 0.5), generator=g)
        out = model(x)
        if out.shape != (b, 10) or not torch.isfinite(out).all():
            raise RuntimeError(f"{name}: bad output {tuple(out.shape)}")
        n = check_backward(model, out.float().pow(2).mean())
        facts[name] = f"{n / 1e6:.2f} M params"
    return facts
