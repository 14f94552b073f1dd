"""Strict configs: unknown keys, wrong types, overrides, hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from masnn.train.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
)


def test_defaults_are_the_main_job() -> None:
    cfg = load_config()
    assert cfg.data.dataset == "synth_gesture"
    assert cfg.model.attn.name == "ca"  # chosen by validation accuracy (docs/training.md)
    assert isinstance(cfg, TrainConfig)


def test_unknown_key_names_nearest_valid_key() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown config key 'optim\.lrate'.*did you mean 'optim\.lr'"
    ):
        config_from_dict({"optim": {"lrate": 0.1}})
    with pytest.raises(ConfigError, match=r"unknown config key 'dta'.*did you mean 'data'"):
        config_from_dict({"dta": {}})


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"optim": {"lr": "fast"}}, r"optim\.lr: expected a number"),
        ({"run": {"epochs": 2.5}}, r"run\.epochs: expected an integer"),
        ({"run": {"epochs": True}}, r"run\.epochs: expected an integer"),
        ({"run": {"deterministic": "yes"}}, r"run\.deterministic: expected true/false"),
        ({"loss": {"name": "hinge"}}, r"loss\.name: 'hinge' is not allowed.*\['mse', 'ce'\]"),
        ({"optim": {"betas": [0.9]}}, r"optim\.betas: expected a list of 2 values"),
        ({"data": {"val_fraction": 1.0}}, r"data\.val_fraction must be in \[0, 1\)"),
        ({"data": {"dataset": "dvs128_gesture"}}, r"data\.root is required.*docs/data\.md"),
        ({"model": {"kwargs": [1]}}, r"model\.kwargs: expected a mapping"),
    ],
)
def test_bad_values(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_overrides_parse_yaml_values() -> None:
    d = apply_overrides({}, ["optim.lr=3e-4", "model.kwargs={channels: [4, 8, 8]}", "run.name=x"])
    cfg = config_from_dict(d)
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.model.kwargs == {"channels": [4, 8, 8]}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["optim.lr"])


def test_roundtrip_and_hash(tmp_path: Path) -> None:
    cfg = load_config(None, ["optim.lr=0.01", "run.name=a"])
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    again = load_config(p)
    assert again == cfg and again.hash() == cfg.hash()
    renamed = load_config(p, ["run.name=b"])
    assert renamed.hash() == cfg.hash()  # the run name is not part of the experiment
    assert load_config(p, ["optim.lr=0.02"]).hash() != cfg.hash()


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("optim:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown config key 'optim\.lrr'"):
        load_config(typo)
