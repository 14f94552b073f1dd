"""The report's statistics against closed forms and textbook values (no scipy)."""

from __future__ import annotations

import math

import pytest

from masnn.report.stats import (
    betainc,
    mcnemar_exact,
    mean_ci,
    paired_t,
    sign_flip_test,
    t_cdf,
    t_ppf,
)


@pytest.mark.parametrize(
    ("df", "q975"),
    [(1, 12.706204736), (2, 4.302652730), (4, 2.776445105), (9, 2.262157163), (30, 2.042272456)],
)
def test_t_quantiles_match_tables(df: int, q975: float) -> None:
    assert t_ppf(0.975, df) == pytest.approx(q975, abs=1e-7)
    assert t_cdf(q975, df) == pytest.approx(0.975, abs=1e-10)
    assert t_ppf(0.025, df) == pytest.approx(-q975, abs=1e-7)


def test_t_cdf_closed_forms() -> None:
    # df = 1 is Cauchy: F(t) = 1/2 + atan(t)/pi; df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    for t in (-3.0, -0.5, 0.0, 0.7, 5.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert t_cdf(1.96, 1e6) == pytest.approx(0.9750, abs=1e-4)


def test_betainc_closed_forms() -> None:
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert betainc(1.0, 1.0, x) == pytest.approx(x, abs=1e-14)
        assert betainc(3.0, 1.0, x) == pytest.approx(x**3, abs=1e-13)
        assert betainc(1.0, 2.5, x) == pytest.approx(1 - (1 - x) ** 2.5, abs=1e-13)
    with pytest.raises(ValueError, match="0 <= x <= 1"):
        betainc(1.0, 1.0, 1.5)


def test_mean_ci_and_one_value() -> None:
    c = mean_ci([1.0, 2.0, 3.0])
    assert (c.n, c.mean, c.std) == (3, 2.0, 1.0)
    h = 4.302652730 / math.sqrt(3)
    assert (c.lo, c.hi) == (pytest.approx(2 - h), pytest.approx(2 + h))
    one = mean_ci([5.0])
    assert one.mean == 5.0 and math.isnan(one.std) and math.isnan(one.lo)
    with pytest.raises(ValueError):
        mean_ci([])


def test_paired_t_by_hand() -> None:
    a, b = [1.0, 2.0, 3.5], [0.0, 0.5, 1.0]  # differences 1, 1.5, 2.5
    r = paired_t(a, b)
    sd = math.sqrt(((1 - 5 / 3) ** 2 + (1.5 - 5 / 3) ** 2 + (2.5 - 5 / 3) ** 2) / 2)
    t = (5 / 3) / (sd / math.sqrt(3))
    assert r.t == pytest.approx(t)
    assert r.p_t == pytest.approx(2 * (1 - t_cdf(t, 2)))
    assert r.p_sign_flip == pytest.approx(2 / 8)  # only all-positive and all-negative reach it
    assert r.diff.lo < 0 < r.diff.hi  # 3 seeds cannot exclude 0 here
    same = paired_t([1.0, 2.0], [0.0, 1.0])  # constant difference: no spread
    assert same.t == math.inf and same.p_t == 0.0
    with pytest.raises(ValueError, match="matched"):
        paired_t([1.0], [1.0, 2.0])


def test_sign_flip_exact_and_monte_carlo_agree() -> None:
    d = [0.3, -0.1, 0.4, 0.2, 0.5, -0.2, 0.1, 0.6]
    exact = sign_flip_test(d)
    hits = sum(
        abs(sum(x if (m >> i) & 1 == 0 else -x for i, x in enumerate(d))) >= abs(sum(d)) - 1e-12
        for m in range(256)
    )
    assert exact == hits / 256
    many = d * 3  # 24 > 20 values: Monte Carlo
    p = sign_flip_test(many, samples=20_000)
    assert 0.0 < p < 0.05


def test_mcnemar_exact() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(5, 5) == 1.0
