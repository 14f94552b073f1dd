"""``masnn bench``: rows run and report, tables carry ratios, the CLI lists and filters rows."""

from __future__ import annotations

import pytest
import torch

from masnn.bench import Row, format_tables, measure, rows, run_row
from masnn.bench.runner import PEER_MODULES
from masnn.cli import main


def test_lif_and_net_rows_measure_in_process() -> None:
    lif = measure(Row("lif", "masnn:cpp", "g", mode="fwdbwd", T=3, size=(2, 5), repeat=2))
    assert lif["min_ms"] <= lif["median_ms"] <= lif["max_ms"] and lif["rss_peak_mb"] > 0
    for lib, mode in (("floor", "train"), ("masnn-fast", "infer"), ("masnn-bnunfused", "train")):
        res = measure(Row("net", lib, "g", mode=mode, T=2, B=1, repeat=1, warmup=0))
        assert res["median_ms"] > 0


def test_bnunfused_row_runs_bn_and_lif_as_two_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    from masnn.bench.nets import build_ma_snn3
    from masnn.bench.rows import unfuse_bn_lif
    from masnn.layers import blocks, bn_lif

    calls: list[bool] = []

    def spy(*args: object) -> object:
        out = bn_lif.fused_bn_lif(*args)  # type: ignore[arg-type]
        calls.append(out is not None)
        return out

    monkeypatch.setattr(blocks, "fused_bn_lif", spy)
    net = build_ma_snn3("masnn", "vanilla", 2)
    x = torch.zeros(2, 1, 2, 32, 32)
    net(x)
    assert calls == [True]  # ma_snn3's first block (no pool before its neuron) is fused
    assert unfuse_bn_lif(net) == 3
    net(x)
    assert calls == [True, False]


def test_paper_placement_rows_and_streaming_latency() -> None:
    for lib in ("masnn", "masnn:torch"):  # fused membrane attention, and the reference loop
        res = measure(Row("net", lib, "g", variant="csa-paper", T=2, B=1, repeat=1, warmup=0))
        assert res["median_ms"] > 0
    row = Row("stream", "masnn", "s", variant="csa-paper", T=4, B=1, repeat=2, warmup=0)
    res = measure(row)
    assert res["min_ms"] <= res["median_ms"] <= res["max_ms"]
    assert res["first_half_ms"] > 0 and res["second_half_ms"] > 0
    table = format_tables([(row, res)])
    assert "### s" in table and "| masnn |" in table and "second half" in table
    assert any(r.kind == "stream" for r in rows("quick"))


def test_breakdown_categories_add_up() -> None:
    res = measure(Row("breakdown", "masnn", "b", variant="tcsa-paper", T=2, B=1, repeat=1,
                      warmup=0))  # fmt: skip
    b = res["breakdown_ms"]
    assert b["conv"] > 0 and b["neuron"] > 0 and b["attention"] > 0 and b["bn"] > 0
    parts = b["conv"] + b["bn"] + b["neuron"] + b["attention"] + b["other"]
    assert parts == pytest.approx(b["total"])


def test_fresh_process_row_and_table(monkeypatch: pytest.MonkeyPatch) -> None:
    base = Row("lif", "elementwise", "LIF g", mode="fwd", T=2, size=(3,), repeat=2)
    fused = Row("lif", "masnn:cpp", "LIF g", mode="fwd", T=2, size=(3,), repeat=2)
    results = [(r, run_row(r, threads=1, timeout=120)) for r in (base, fused)]
    assert all("median_ms" in res for _, res in results), results
    monkeypatch.setitem(PEER_MODULES, "norse", "norse_not_installed_here")
    missing = Row("lif", "norse", "LIF g", mode="fwd", T=2, size=(3,))
    res = run_row(missing, 1, 120)
    assert res == {"skipped": "norse_not_installed_here not installed"}
    results.append((missing, res))
    table = format_tables(results)
    assert "### LIF g" in table and "| elementwise |" in table and "1.00 |" in table
    assert "skipped: norse_not_installed_here" in table


def test_profiles_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    quick, full = rows("quick"), rows("full")
    assert len(quick) < len(full)
    groups = {r.group for r in full}
    for T, B in ((16, 8), (60, 4)):
        for mode in ("train", "infer"):
            assert f"ma_snn3 {mode} T={T} B={B}" in groups
    assert {r.T for r in full if r.kind == "lif"} == {4, 16, 60}
    assert any(r.lib == "sj-compile" for r in quick)
    assert main(["bench", "--quick", "--list", "--only", "*ma_snn3*train*"]) == 0
    out = capsys.readouterr().out
    assert "floor ma_snn3 vanilla train T=16 B=8" in out and "LIF" not in out
    assert main(["bench", "--tiny", "--only", "nothing-matches"]) == 2
    assert "no tiny bench row matches" in capsys.readouterr().err


def test_timing_helper_counts_warmup_and_repeats() -> None:
    from masnn.bench.timing import best_of, times

    calls: list[int] = []
    out = times(lambda: calls.append(1), 3, warmup=2, collect=True)
    assert len(out) == 3 and len(calls) == 5 and all(t >= 0 for t in out)
    assert best_of(lambda: sum(range(1000)), 2) >= 0
    with pytest.raises(ValueError, match="repeat"):
        times(lambda: None, 0)
