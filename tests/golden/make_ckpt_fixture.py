"""Make tests/data/ckpt_schema1.pt: a tiny checkpoint future versions must keep loading.

Run once per schema version (``python tests/golden/make_ckpt_fixture.py``); never regenerate
an existing fixture — a new schema gets a new file. The checkpoint carries a full training
config, model/optimizer/scheduler states, RNG state, and a stored input with the logits the
model gave at save time.
"""

from __future__ import annotations

from pathlib import Path

import torch

from masnn.models import create_model
from masnn.train.checkpoint import rng_state, save_checkpoint
from masnn.train.config import load_config

OUT = Path(__file__).resolve().parents[1] / "data" / "ckpt_schema1.pt"


def main() -> None:
    torch.manual_seed(0)
    cfg = load_config(
        None,
        [
            "model.name=ma_snn3_tiny",
            "model.kwargs={channels: [2, 2, 2], hidden: 4}",
            "data.timesteps=3",
            "data.ds=16",
            "run.epochs=1",
        ],
    )
    model = create_model(
        "ma_snn3_tiny",
        num_classes=11,
        timesteps=3,
        input_size=(2, 8, 8),
        attn=cfg.model.attn,
        **cfg.model.kwargs,
    )
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1)
    x = torch.poisson(torch.full((3, 2, 2, 8, 8), 1.5))
    model(x).sum().backward()
    opt.step()
    sched.step()
    model.eval()
    with torch.no_grad():
        logits = model(x)
    save_checkpoint(
        OUT,
        epoch=1,
        step_in_epoch=0,
        partial=None,
        config=cfg.to_dict(),
        model=model.state_dict(),
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        scaler=None,
        rng=rng_state(),
        history=[{"epoch": 1, "lr": 0.0, "train_loss": 0.1, "train_acc": 0.0}],
        best={"epoch": 1, "val_acc": 0.0},
        golden_input=x,
        golden_output=logits,
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
