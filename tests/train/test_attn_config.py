"""``model.attn`` is a mapping (AttnCfg); the old flat keys fail showing the new form."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from masnn.attention import AttnCfg
from masnn.train.config import ConfigError, config_from_dict, dump_config, load_config

NEW_FORM = r"attn: \{name: tcsa, placement: paper, locations: \{t: conv_pre\}"


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ({"placement": "code"}, "model.placement moved to model.attn.placement"),
        ({"reduction_t": 5}, "model.reduction_t moved to model.attn.reduction_t"),
        ({"reduction_c": 8}, "model.reduction_c moved to model.attn.reduction_c"),
        ({"kernel_size": 3}, "model.kernel_size moved to model.attn.kernel_size"),
        ({"attn_relu": True}, "model.attn_relu moved to model.attn.relu"),
        ({"kwargs": {"locations": {"t": "conv_pre"}}}, "model.kwargs.locations moved"),
        ({"attn": "tcsa"}, r"model.attn: got 'tcsa'.*write attn: \{name: tcsa\}"),
    ],
)
def test_old_flat_keys_fail_with_the_new_form(model: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key) as exc:
        config_from_dict({"model": model})
    assert "\n" not in str(exc.value)
    assert re.search(NEW_FORM, str(exc.value))


def test_old_set_override_fails_with_the_new_form() -> None:
    with pytest.raises(ConfigError, match=r"--set model.attn.name=ca"):
        load_config(None, ["model.placement=code"])
    with pytest.raises(ConfigError, match=r"model.attn: got 'none'"):
        load_config(None, ["model.attn=none"])


def test_mapping_round_trips_and_overrides(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.attn.name=tcsa", "model.attn.placement=code"])
    assert cfg.model.attn == AttnCfg("tcsa", "code")
    cfg = load_config(None, ["model.attn={name: ta, locations: {t: conv_pre}, reduction_t: 3}"])
    assert cfg.model.attn == AttnCfg("ta", locations={"t": "conv_pre"}, reduction_t=3)
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg  # the saved config.yaml loads back to the same config


@pytest.mark.parametrize(
    ("attn", "match"),
    [
        ("{name: tcsaa}", r"model.attn: unknown attention 'tcsaa' \(did you mean 'tcsa'\?\)"),
        ("{name: ca, placement: papr}", r"model.attn: unknown placement 'papr'; allowed"),
        ("{name: ca, locations: {x: membrane}}", r"model.attn: unknown attention slot 'x'"),
        ("{name: ta, locations: {t: membrane}}", r"cannot gate an integrated membrane"),
        ("{name: ca, kernel_size: 4}", r"model.attn: kernel_size must be odd"),
        ("{name: ca, relu: 1}", r"model.attn.relu: expected true/false"),
        ("{name: ca, reduction: 4}", r"unknown config key 'model.attn.reduction'"),
    ],
)
def test_bad_attn_values_name_the_key(attn: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, [f"model.attn={attn}"])
