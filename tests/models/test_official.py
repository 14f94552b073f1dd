"""Official MS-ResNet weights: key layout, strict checks, outputs vs a direct computation.

The synthetic checkpoint below is written from the official code's layout as documented in
``masnn/models/official.py`` (``ResNet_origin`` in ``Att_Res_SNN/models/resnet_2.py``), not
from masnn's key map, and the reference forward pass is a plain functional re-statement of the
official network (SPEC §1.3, §2.3, §3.4): BN in eval mode, the MS-ResNet LIF
(``mem = 0.25 mem (1 - s) + x``, ``s = mem > 0.5``), code-style CSA pooled over ``T`` with the
ReLU, the AvgPool -> Conv1x1 -> BN shortcut, ``LIF -> GAP -> mean over T -> FC``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from masnn.models import create_model, load_official, load_pretrained
from masnn.models.official import PretrainedError, file_sha256, official_key_map

LAYERS18 = (2, 2, 2, 2)
WIDTHS = (16, 16, 32, 32)
K = 10
SIZE = 64


def _bn(g: torch.Generator, c: int, prefix: str, sd: dict[str, Tensor]) -> None:
    sd[prefix + "weight"] = 0.4 + 0.6 * torch.rand(c, generator=g)
    sd[prefix + "bias"] = 0.3 * torch.randn(c, generator=g)
    sd[prefix + "running_mean"] = 0.1 * torch.randn(c, generator=g)
    sd[prefix + "running_var"] = 0.5 + torch.rand(c, generator=g)
    sd[prefix + "num_batches_tracked"] = torch.tensor(7)


def official_state(attn: str = "csa", seed: int = 0, prefix: str = "") -> dict[str, Tensor]:
    """A random state dict in the official ResNet_origin layout (stem 7x7, c_ratio 8, SA k 3)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, Tensor] = {}

    def conv(key: str, cout: int, cin: int, k: int) -> None:
        sd[key] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

    conv("conv1.0.weight", WIDTHS[0], 3, 7)
    _bn(g, WIDTHS[0], "conv1.1.bn.", sd)
    cin = WIDTHS[0]
    for s, (n, c) in enumerate(zip(LAYERS18, WIDTHS)):
        for j in range(n):
            pre = f"conv{s + 2}_x.{j}."
            stride = 2 if j == 0 else 1
            conv(pre + "residual_function.1.weight", c, cin, 3)
            _bn(g, c, pre + "residual_function.2.bn.", sd)
            conv(pre + "residual_function.4.weight", c, c, 3)
            _bn(g, c, pre + "residual_function.5.bn.", sd)
            if "c" in attn:
                h = c // 8
                sd[pre + "residual_function.6.attention.ca.sharedMLP.0.weight"] = (
                    torch.randn(h, c, 1, 1, 1, generator=g) / c**0.5
                )
                sd[pre + "residual_function.6.attention.ca.sharedMLP.2.weight"] = (
                    torch.randn(c, h, 1, 1, 1, generator=g) / h**0.5
                )
            if "s" in attn:
                sd[pre + "residual_function.6.attention.sa.conv.weight"] = 0.3 * torch.randn(
                    1, 2, 3, 3, generator=g
                )
            if stride != 1 or cin != c:
                conv(pre + "shortcut.1.weight", c, cin, 1)
                _bn(g, c, pre + "shortcut.2.bn.", sd)
            cin = c
    sd["fc.weight"] = torch.randn(K, WIDTHS[-1], generator=g) * 0.2
    sd["fc.bias"] = torch.randn(K, generator=g) * 0.1
    return {prefix + k: v for k, v in sd.items()}


def reference_forward(sd: dict[str, Tensor], x: Tensor, attn: str) -> tuple[Tensor, float]:
    """The official network, restated functionally. Returns (logits, last-LIF firing rate)."""
    t_steps = x.shape[0]

    def per_step(fn, seq: Tensor) -> Tensor:
        return torch.stack([fn(seq[t]) for t in range(t_steps)])

    def bn(seq: Tensor, p: str) -> Tensor:
        return per_step(
            lambda v: F.batch_norm(
                v, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"],
                sd[p + "bias"], training=False, eps=1e-5,
            ),
            seq,
        )  # fmt: skip

    def lif(seq: Tensor) -> Tensor:
        out, mem, spike = [], None, None
        for t in range(t_steps):
            mem = seq[t] if t == 0 else 0.25 * mem * (1 - spike) + seq[t]
            spike = (mem > 0.5).float()
            out.append(spike)
        return torch.stack(out)

    def conv(seq: Tensor, key: str, stride: int) -> Tensor:
        w = sd[key]
        return per_step(lambda v: F.conv2d(v, w, stride=stride, padding=w.shape[-1] // 2), seq)

    def csa(u: Tensor, pre: str) -> Tensor:  # u: (T, B, C, H, W); gates pooled over T
        if "c" in attn:
            w0 = sd[pre + "ca.sharedMLP.0.weight"].flatten(1)  # (h, C)
            w1 = sd[pre + "ca.sharedMLP.2.weight"].flatten(1)  # (C, h)

            def mlp(v: Tensor) -> Tensor:
                return F.relu(v @ w0.t()) @ w1.t()

            avg = u.mean(dim=(0, 3, 4))  # (B, C)
            mx = u.amax(dim=(0, 3, 4))
            u = torch.sigmoid(mlp(avg) + mlp(mx))[None, :, :, None, None] * u
        if "s" in attn:
            avg = u.mean(dim=(0, 2))[:, None]  # (B, 1, H, W) over all T*C maps
            mx = u.amax(dim=(0, 2))[:, None]
            g = torch.sigmoid(
                F.conv2d(torch.cat([avg, mx], 1), sd[pre + "sa.conv.weight"], padding=1)
            )
            u = g[None] * u
        return F.relu(u)

    out = bn(conv(x, "conv1.0.weight", 2), "conv1.1.bn.")
    for s, n in enumerate(LAYERS18):
        for j in range(n):
            pre = f"conv{s + 2}_x.{j}."
            stride = 2 if j == 0 else 1
            r = bn(
                conv(lif(out), pre + "residual_function.1.weight", stride),
                pre + "residual_function.2.bn.",
            )
            r = bn(
                conv(lif(r), pre + "residual_function.4.weight", 1), pre + "residual_function.5.bn."
            )
            if attn != "none":
                r = csa(r, pre + "residual_function.6.attention.")
            if pre + "shortcut.1.weight" in sd:
                sc = per_step(lambda v: F.avg_pool2d(v, 2, 2), out)
                sc = bn(conv(sc, pre + "shortcut.1.weight", 1), pre + "shortcut.2.bn.")
            else:
                sc = out
            out = r + sc
    spikes = lif(out)
    pooled = spikes.mean(dim=(3, 4)).mean(0)  # (B, C)
    return F.linear(pooled, sd["fc.weight"], sd["fc.bias"]), float(spikes.mean())


def _save(sd: dict[str, Tensor], path: Path) -> Path:
    torch.save(sd, path)
    return path


KW = dict(num_classes=K, input_size=(3, SIZE, SIZE), widths=WIDTHS)


@pytest.mark.parametrize(("attn", "timesteps"), [("csa", 1), ("csa", 2), ("ca", 1), ("none", 2)])
def test_official_weights_reproduce_the_direct_computation(
    attn: str, timesteps: int, tmp_path: Path
) -> None:
    sd = official_state(attn, prefix="module.")  # saved from DDP, as the authors' files
    path = _save(sd, tmp_path / "resnet18-best.pth")
    model = load_official(path, "ms_resnet18", attn=attn, timesteps=timesteps, **KW)
    assert not model.training
    assert model.pretrained["sha256"] == file_sha256(path)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    x_seq = x.unsqueeze(0).expand(timesteps, -1, -1, -1, -1)  # static image over T
    plain = {k[len("module.") :]: v for k, v in sd.items()}
    want, rate = reference_forward(plain, x_seq, attn)
    assert 0.02 < rate < 0.98, rate  # the comparison exercises real spiking
    with torch.no_grad():
        got = model(x_seq)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got[0], got[1])


def test_every_official_key_maps_to_one_masnn_tensor() -> None:
    model = create_model("ms_resnet18", attn="csa", placement="code", **KW)
    kmap = official_key_map(model)
    ref = official_state("csa")
    assert sorted(kmap) == sorted(ref)
    assert sorted(k for k, _ in kmap.values()) == sorted(model.state_dict())
    assert all(tuple(ref[k].shape) == shape for k, (_, shape) in kmap.items())
    # full-size ResNet-104 + CSA: the code's parameter count (SPEC §2.5: 78.37 M)
    big = create_model("ms_resnet104", attn="csa", placement="code")
    n = sum(p.numel() for p in big.parameters())
    assert n == 77_284_264 + 1_085_334
    assert len(official_key_map(big)) == len(big.state_dict())


@pytest.mark.parametrize(
    "key",
    [
        "conv3_x.1.residual_function.5.bn.running_var",
        "conv2_x.0.residual_function.6.attention.sa.conv.weight",
        "fc.bias",
    ],
)
def test_a_missing_key_fails_naming_it(key: str, tmp_path: Path) -> None:
    sd = official_state("csa")
    del sd[key]
    path = _save(sd, tmp_path / "w.pth")
    with pytest.raises(PretrainedError, match=f"missing key '{key}'"):
        load_official(path, "ms_resnet18", **KW)


def test_an_unexpected_key_fails_naming_it(tmp_path: Path) -> None:
    sd = official_state("csa")
    extra = "conv2_x.0.residual_function.6.attention.ta.sharedMLP.0.weight"
    sd[extra] = torch.zeros(1, 1, 1, 1, 1)
    path = _save(sd, tmp_path / "w.pth")
    with pytest.raises(PretrainedError, match=f"unexpected key '{extra}'"):
        load_official(path, "ms_resnet18", **KW)
    # a CA-only checkpoint loaded as CSA: the SA keys are missing
    path = _save(official_state("ca"), tmp_path / "ca.pth")
    with pytest.raises(PretrainedError, match=r"missing key '.*attention\.sa\.conv\.weight'"):
        load_official(path, "ms_resnet18", attn="csa", **KW)


def test_a_shape_mismatch_names_the_key(tmp_path: Path) -> None:
    path = _save(official_state("csa"), tmp_path / "w.pth")
    with pytest.raises(PretrainedError, match=r"'fc.weight' has shape \(10, 32\)"):
        load_official(path, "ms_resnet18", **{**KW, "num_classes": 5})
    with pytest.raises(PretrainedError, match="sa.conv.weight' has shape"):  # paper SA is 7x7
        load_official(path, "ms_resnet18", placement="paper", **KW)


def test_sha256_is_checked_and_urls_are_refused(tmp_path: Path) -> None:
    path = _save(official_state("csa"), tmp_path / "w.pth")
    digest = file_sha256(path)
    load_official(path, "ms_resnet18", sha256=digest.upper(), **KW)
    with pytest.raises(PretrainedError, match="SHA-256 mismatch: expected 0000"):
        load_official(path, "ms_resnet18", sha256="0" * 64, **KW)
    with pytest.raises(PretrainedError, match="never downloads"):
        create_model("ms_resnet18", pretrained="https://example.org/w.pth", **KW)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_model("ms_resnet18", pretrained=str(tmp_path / "nope.pth"), **KW)
    with pytest.raises(ValueError, match="arch must be one of"):
        load_official(path, "ma_snn3")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="junk.pth: cannot read"):
        load_official(tmp_path / "junk.pth", "ms_resnet18", **KW)


def test_create_model_pretrained_reads_official_and_masnn_files(tmp_path: Path) -> None:
    off = _save(official_state("csa"), tmp_path / "off.pth")
    a = create_model("ms_resnet18", attn="csa", placement="code", pretrained=str(off), **KW)
    b = load_official(off, "ms_resnet18", **KW)
    for k, v in b.state_dict().items():
        assert torch.equal(a.state_dict()[k], v), k
    assert a.pretrained == {"path": str(off), "sha256": file_sha256(off)}
    # a masnn checkpoint (the trainer's best.pt layout) and a bare masnn state dict
    from masnn.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "best.pt", epoch=3, config={}, model=b.state_dict())
    c = create_model(
        "ms_resnet18", attn="csa", placement="code", pretrained=str(tmp_path / "best.pt"), **KW
    )
    assert all(torch.equal(c.state_dict()[k], v) for k, v in b.state_dict().items())
    torch.save({"state_dict": b.state_dict()}, tmp_path / "wrapped.pt")
    load_pretrained(c, tmp_path / "wrapped.pt")
    partial = {k: v for k, v in b.state_dict().items() if "ca.mlp.0" not in k}
    with pytest.raises(PretrainedError, match=r"missing key '.*attn\.ca\.mlp\.0\.weight'"):
        load_pretrained(c, _save(partial, tmp_path / "partial.pt"))


def test_t1_checkpoint_starts_a_t4_model(tmp_path: Path) -> None:
    """The 77.08 % row: a T = 1 model's weights initialise the T = 4 model unchanged."""
    t1 = create_model("ms_resnet18", attn="csa", placement="code", timesteps=1, **KW)
    with torch.no_grad():  # non-default values everywhere, so a silent re-init would show
        for p in t1.parameters():
            p.add_(0.01 * torch.randn_like(p))
    from masnn.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "best.pt", epoch=1, config={}, model=t1.state_dict())
    t4 = create_model(
        "ms_resnet18", attn="csa", placement="code", timesteps=4,
        pretrained=str(tmp_path / "best.pt"), **KW,
    )  # fmt: skip
    assert t4.timesteps == 4
    for k, v in t1.state_dict().items():
        assert torch.equal(t4.state_dict()[k], v), k
    t1.eval(), t4.eval()
    x = torch.randn(1, 2, 3, SIZE, SIZE)
    with torch.no_grad():  # T = 1 input gives the same result through both models
        torch.testing.assert_close(t4(x), t1(x))
        assert t4(x.expand(4, -1, -1, -1, -1)).shape == (2, K)
