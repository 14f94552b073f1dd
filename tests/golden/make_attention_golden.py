"""Record SpikingJelly 2.0.0's ``MultiDimensionalAttention`` on fixed weights and input.

Every subset of (temporal, channel, spatial) and both kernel sizes it allows (3, 7). The
weights are drawn once, stored in the JSON in masnn's layout, and copied into the SpikingJelly
module, so the golden test never depends on a random generator.

Run: ``python tests/golden/make_attention_golden.py`` (needs ``pip install --no-deps
spikingjelly==2.0.0``; its unrelated extras are replaced by placeholders, see
``_thirdparty.py``). Writes ``tests/golden/attention_spikingjelly.json``.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

#: Shapes of the recorded case: H != W on purpose.
T, B, C, H, W = 4, 2, 4, 3, 5
R_T, R_C = 2, 2
#: (name, use_temporal, use_channel, use_spatial): every non-empty subset.
SUBSETS = [
    ("ta", True, False, False),
    ("ca", False, True, False),
    ("sa", False, False, True),
    ("tca", True, True, False),
    ("tsa", True, False, True),
    ("csa", False, True, True),
    ("tcsa", True, True, True),
]
KERNELS = (3, 7)


def spikingjelly_attention() -> Any:
    """The real ``spikingjelly.activation_based.layer.attention`` module, or ``None``."""
    if importlib.util.find_spec("spikingjelly") is None:
        return None
    import _thirdparty

    _thirdparty._install_placeholders()
    try:
        return importlib.import_module("spikingjelly.activation_based.layer.attention")
    except Exception:  # a broken install: treat as absent
        return None


def masnn_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights in masnn's layout (``Linear`` MLPs, ``Conv2d`` spatial kernels)."""
    g = torch.Generator().manual_seed(seed)
    ht, hc = T // R_T, C // R_C
    w = {
        "ta.mlp.0.weight": torch.randn(ht, T, generator=g) * 0.7,
        "ta.mlp.2.weight": torch.randn(T, ht, generator=g) * 0.7,
        "ca.mlp.0.weight": torch.randn(hc, C, generator=g) * 0.5,
        "ca.mlp.2.weight": torch.randn(C, hc, generator=g) * 0.5,
    }
    for k in KERNELS:
        w[f"sa{k}.conv.weight"] = torch.randn(1, 2, k, k, generator=g) * 0.4
    return w


def load_into_spikingjelly(sj_module: torch.nn.Module, w: dict[str, torch.Tensor], k: int) -> None:
    """Copy masnn-layout weights into a SpikingJelly ``MultiDimensionalAttention``."""
    with torch.no_grad():
        if sj_module.ta is not None:
            sj_module.ta.sharedMLP[0].weight.copy_(w["ta.mlp.0.weight"][..., None, None, None])
            sj_module.ta.sharedMLP[2].weight.copy_(w["ta.mlp.2.weight"][..., None, None, None])
        if sj_module.ca is not None:
            sj_module.ca.sharedMLP[0].weight.copy_(w["ca.mlp.0.weight"][..., None, None, None])
            sj_module.ca.sharedMLP[2].weight.copy_(w["ca.mlp.2.weight"][..., None, None, None])
        if sj_module.sa is not None:
            sj_module.sa.conv.weight.copy_(w[f"sa{k}.conv.weight"])


def load_into_masnn(module: torch.nn.Module, w: dict[str, torch.Tensor], k: int) -> None:
    """Copy the same weights into a masnn ``MultiDimAttention``."""
    with torch.no_grad():
        if module.ta is not None:
            module.ta.mlp[0].weight.copy_(w["ta.mlp.0.weight"])
            module.ta.mlp[2].weight.copy_(w["ta.mlp.2.weight"])
        if module.ca is not None:
            module.ca.mlp[0].weight.copy_(w["ca.mlp.0.weight"])
            module.ca.mlp[2].weight.copy_(w["ca.mlp.2.weight"])
        if module.sa is not None:
            module.sa.conv.weight.copy_(w[f"sa{k}.conv.weight"])


def _round(t: torch.Tensor) -> list[float]:
    """float32 values to 9 significant digits (round-trips exactly through float32)."""
    return [float(f"{v:.9g}") for v in t.flatten().tolist()]


def main() -> None:
    att = spikingjelly_attention()
    if att is None:
        raise SystemExit("spikingjelly is not installed: pip install --no-deps spikingjelly==2.0.0")
    import spikingjelly

    w = masnn_weights()
    x = torch.randn(T, B, C, H, W, generator=torch.Generator().manual_seed(1))
    outputs = {}
    for name, ut, uc, us in SUBSETS:
        for k in KERNELS:
            if not us and k != KERNELS[0]:
                continue  # the kernel only matters when SA is on
            m = att.MultiDimensionalAttention(
                T, C, R_T, R_C, kernel_size=k, use_temporal=ut, use_channel=uc, use_spatial=us
            )
            load_into_spikingjelly(m, w, k)
            with torch.no_grad():
                outputs[f"{name}_k{k}"] = _round(m(x))
    golden = {
        "producer": f"spikingjelly {getattr(spikingjelly, '__version__', '2.0.0')} "
        "activation_based.layer.attention.MultiDimensionalAttention",
        "shape": [T, B, C, H, W],
        "reduction_t": R_T,
        "reduction_c": R_C,
        "weights": {n: {"shape": list(v.shape), "data": _round(v)} for n, v in w.items()},
        "input": _round(x),
        "outputs": outputs,
    }
    (HERE / "attention_spikingjelly.json").write_text(json.dumps(golden) + "\n")
    print(f"wrote {len(outputs)} outputs")


if __name__ == "__main__":
    main()
