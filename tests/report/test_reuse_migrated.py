"""A run saved before a config-shape change (older masnn) is still found and reused."""

from __future__ import annotations

from pathlib import Path

import yaml

from masnn.report.sweep import _existing_run, config_key
from masnn.train.config import load_config


def test_run_saved_with_the_old_flat_data_keys_is_reused(tmp_path: Path) -> None:
    cfg = load_config(None, ["run.seed=3"])
    key = config_key(cfg)
    old = cfg.to_dict()
    old["data"].update({"image_size": 224, "crop": 224, "resize": None})  # pre-registry shape
    runs = tmp_path / "runs"
    (runs / "none-s3-0123456789").mkdir(parents=True)
    (runs / "none-s3-0123456789" / "config.yaml").write_text(yaml.safe_dump(old))
    assert _existing_run(runs, "none-s3-", key) == "none-s3-0123456789"
    other = load_config(None, ["run.seed=3", "optim.lr=0.5"])
    assert _existing_run(runs, "none-s3-", config_key(other)) is None  # another config: not reused
    assert _existing_run(tmp_path / "absent", "none-s3-", key) is None
