"""Report settings -> training-config overrides -> the model that gets built."""

from __future__ import annotations

import pytest

from masnn.report.variants import (
    SETTINGS,
    Variant,
    all_variants,
    attn_config_form,
    parse_variant,
    variant_overrides,
)
from masnn.train.config import load_config


def test_settings_and_parsing() -> None:
    vs = all_variants()
    assert len(vs) == 16 and len(set(vs)) == 16
    assert [v.key for v in vs[:4]] == ["none", "relu", "ta-paper", "ta-code"]
    assert parse_variant("tcsa") == Variant("tcsa", "paper")
    assert parse_variant("TCSA-code") == parse_variant("tcsa/code") == Variant("tcsa", "code")
    with pytest.raises(ValueError, match="allowed"):
        parse_variant("tcsx")
    with pytest.raises(ValueError, match="only as relu/paper"):
        Variant("relu", "code")
    with pytest.raises(ValueError, match="placement"):
        Variant("ca", "conv_post")
    assert set(SETTINGS) == {"none", "relu", "ta", "ca", "sa", "tca", "tsa", "csa", "tcsa"}


def test_both_forms_spelled_out() -> None:
    assert variant_overrides("tcsa", "code", form="mapping") == [
        "model.attn.name=tcsa",
        "model.attn.placement=code",
        "model.attn.relu=null",
    ]
    assert variant_overrides("relu", form="flat") == [
        "model.attn=none",
        "model.placement=paper",
        "model.attn_relu=true",
    ]
    with pytest.raises(ValueError, match="form"):
        variant_overrides("ca", form="nested")


def _modules(over: list[str]) -> list[str]:
    """Module names of the model the trainer builds for these overrides (either config form)."""
    from masnn.train.runner import build_model

    class _Data:
        num_classes, in_shape = 11, (2, 32, 32)

    model = build_model(load_config(None, over), _Data())  # type: ignore[arg-type]
    return [n for n, _ in model.named_modules()]


def test_detected_form_loads_and_builds_what_it_says() -> None:
    form = attn_config_form()
    assert form in ("mapping", "flat")
    names = _modules(variant_overrides("none"))
    assert not any(n.endswith(".relu") or ".ta" in n or ".ca" in n for n in names)
    names = _modules(variant_overrides("relu"))
    assert any(n.endswith("post_attn.relu") for n in names)
    assert not any(n.endswith(".ta.gate") for n in names)
    names = _modules(variant_overrides("tcsa", "paper"))
    assert any(n.endswith(".ta.gate") for n in names)
    assert not any(n.endswith("post_attn.relu") for n in names)  # paper: no ReLU
    names = _modules(variant_overrides("tcsa", "code"))
    assert any(n.endswith("post_attn.relu") for n in names)  # code: the ReLU comes with the gates
