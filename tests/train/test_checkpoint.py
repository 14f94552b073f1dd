"""Checkpoint format: the committed schema-1 fixture keeps loading; corrupt files fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from masnn.attention import AttnCfg
from masnn.models import create_model
from masnn.train import checkpoint as ckpt_io
from masnn.train.config import ConfigError, config_from_dict, migrate_saved_config

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "ckpt_schema1.pt"


def test_schema1_fixture_loads_and_reproduces_its_logits() -> None:
    ckpt = ckpt_io.load_checkpoint(FIXTURE)  # weights_only=True inside
    assert ckpt["schema_version"] == 1
    with pytest.raises(ConfigError, match="model.attn: got 'tcsa'"):
        config_from_dict(ckpt["config"])  # the flat attention keys of schema 1 ...
    cfg = config_from_dict(migrate_saved_config(ckpt["config"]))  # ... migrate one to one
    assert cfg.model.attn == AttnCfg("tcsa")
    model = create_model(
        cfg.model.name,
        num_classes=11,
        timesteps=cfg.data.timesteps,
        input_size=(2, 128 // cfg.data.ds, 128 // cfg.data.ds),
        attn=cfg.model.attn,
        **cfg.model.kwargs,
    )
    model.load_state_dict(ckpt["model"])  # strict: no missing or unexpected keys
    model.eval()
    with torch.no_grad():
        out = model(ckpt["golden_input"])
    torch.testing.assert_close(out, ckpt["golden_output"], rtol=0, atol=1e-6)
    opt = torch.optim.Adam(model.parameters())
    opt.load_state_dict(ckpt["optimizer"])
    ckpt_io.set_rng_state(ckpt["rng"])


def test_atomic_write_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "c.pt"
    ckpt_io.save_checkpoint(p, epoch=3, model={"w": torch.ones(2)})
    assert ckpt_io.load_checkpoint(p)["epoch"] == 3
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]  # no temp file left
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(ckpt_io.CheckpointError, match="c.pt: cannot read checkpoint"):
        ckpt_io.load_checkpoint(p)
    torch.save({"model": {}}, p)
    with pytest.raises(ckpt_io.CheckpointError, match="not a masnn checkpoint"):
        ckpt_io.load_checkpoint(p)
    torch.save({"schema_version": 99}, p)
    with pytest.raises(ckpt_io.CheckpointError, match="schema 99 is not readable"):
        ckpt_io.load_checkpoint(p)
