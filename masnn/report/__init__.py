"""``masnn report``: does attention cut spikes and raise accuracy? Seeds, spreads, paired tests.

* :mod:`masnn.report.variants`: the settings (vanilla, the ReLU-only control, the seven gate
  combinations in the paper and code placements) and :func:`variant_overrides`, the one place
  that writes the attention keys of a training config;
* :mod:`masnn.report.sweep`: :func:`run_report` (plan, train or reuse, analyse, write) and
  :func:`analyze_run`;
* :mod:`masnn.report.tables`: per-run numbers, aggregation, paired tests, Markdown/CSV;
* :mod:`masnn.report.stats`: t intervals, paired t, sign-flip and exact McNemar tests (no scipy);
* :mod:`masnn.report.plots`: the PNGs (needs the ``viz`` extra).

See ``docs/report/README.md``.
"""

from masnn.report.stats import mcnemar_exact, mean_ci, paired_t, sign_flip_test
from masnn.report.sweep import PRESETS, Preset, ReportResult, analyze_run, plan_runs, run_report
from masnn.report.variants import (
    SETTINGS,
    Variant,
    all_variants,
    attn_config_form,
    parse_variant,
    variant_overrides,
)

__all__ = [
    "PRESETS",
    "SETTINGS",
    "Preset",
    "ReportResult",
    "Variant",
    "all_variants",
    "analyze_run",
    "attn_config_form",
    "mcnemar_exact",
    "mean_ci",
    "paired_t",
    "parse_variant",
    "plan_runs",
    "run_report",
    "sign_flip_test",
    "variant_overrides",
]
