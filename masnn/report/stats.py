r"""Small-sample statistics for the report, in plain Python (no scipy).

* :func:`t_cdf` / :func:`t_ppf`: Student's t distribution through the regularised incomplete
  beta function (a Lentz continued fraction, evaluated to ``1e-14``);
* :func:`mean_ci`: mean, sample standard deviation and the t-based 95 % interval of the mean;
* :func:`paired_t`: the paired t-test of two matched samples (same seeds): mean difference, its
  interval and the two-sided p-value;
* :func:`sign_flip_test`: the exact (all :math:`2^n` sign patterns, ``n <= 20``) or Monte Carlo
  paired permutation test of the mean difference;
* :func:`mcnemar_exact`: the exact two-sided McNemar (binomial) test on the discordant pairs of
  per-sample correctness.

With ``n`` seeds the smallest sign-flip p-value is :math:`2 / 2^n` (0.25 for 3 seeds): the
report prints it anyway, next to the t interval, so that nobody reads more into 3 seeds than
they hold.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function :math:`I_x(a, b)`."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got {x}")
    if x in (0.0, 1.0):
        return x
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
    ln += b * math.log1p(-x)
    front = math.exp(ln)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t_cdf needs df > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (bisection on :func:`t_cdf` to ``1e-12``)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"t_ppf needs 0 < q < 1, got {q}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class MeanCI:
    """Mean, sample std (``n - 1``) and the two-sided ``level`` t interval of the mean.

    ``std``/``lo``/``hi`` are ``nan`` for ``n < 2`` (no spread can be stated from one run).
    """

    n: int
    mean: float
    std: float
    lo: float
    hi: float
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0


def mean_ci(values: Sequence[float], level: float = 0.95) -> MeanCI:
    """Mean ± t-interval of ``values`` (independent repeats, e.g. seeds)."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    m = sum(xs) / n
    if n < 2:
        return MeanCI(n, m, math.nan, math.nan, math.nan, level)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    h = t_ppf(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return MeanCI(n, m, sd, m - h, m + h, level)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison ``a - b`` over matched units (seeds).

    Attributes:
        diff: the mean difference with its t interval (:class:`MeanCI` of the differences).
        t: the t statistic (``nan`` for ``n < 2``; ``inf`` when every difference is equal and
            non-zero).
        p_t: two-sided p-value of the paired t-test.
        p_sign_flip: two-sided p-value of the sign-flip permutation test.
    """

    diff: MeanCI
    t: float
    p_t: float
    p_sign_flip: float


def paired_t(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> PairedTest:
    """Paired t-test and sign-flip test of ``a`` against ``b`` (equal lengths, matched)."""
    if len(a) != len(b):
        raise ValueError(f"paired test needs matched samples, got {len(a)} and {len(b)} values")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    ci = mean_ci(d, level)
    n = len(d)
    if n < 2:
        return PairedTest(ci, math.nan, math.nan, math.nan)
    if ci.std == 0.0:
        t = 0.0 if ci.mean == 0.0 else math.copysign(math.inf, ci.mean)
        p = 1.0 if ci.mean == 0.0 else 0.0
    else:
        t = ci.mean / (ci.std / math.sqrt(n))
        p = 2.0 * (1.0 - t_cdf(abs(t), n - 1))
    return PairedTest(ci, t, min(1.0, p), sign_flip_test(d))


def sign_flip_test(diffs: Sequence[float], *, samples: int = 100_000, seed: int = 0) -> float:
    """Two-sided paired permutation p-value of ``mean(diffs) != 0``.

    Under the null each difference is as likely positive as negative. Exact over all ``2^n``
    sign patterns for ``n <= 20``, otherwise a seeded Monte Carlo estimate (``(k + 1) / (N + 1)``).
    """
    d = [float(x) for x in diffs]
    n = len(d)
    if n == 0:
        raise ValueError("sign_flip_test needs at least one difference")
    obs = abs(sum(d))
    eps = 1e-12 * max(1.0, obs)
    if n <= 20:
        hits = 0
        for mask in range(1 << n):
            s = sum(-x if (mask >> i) & 1 else x for i, x in enumerate(d))
            hits += abs(s) >= obs - eps
        return hits / (1 << n)
    rng = random.Random(seed)
    hits = 0
    for _ in range(samples):
        s = sum(x if rng.random() < 0.5 else -x for x in d)
        hits += abs(s) >= obs - eps
    return (hits + 1) / (samples + 1)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: ``b`` pairs only A right, ``c`` pairs only B right.

    ``p = min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``; 1 without
    discordant pairs.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


__all__ = [
    "MeanCI",
    "PairedTest",
    "betainc",
    "mcnemar_exact",
    "mean_ci",
    "paired_t",
    "sign_flip_test",
    "t_cdf",
    "t_ppf",
]
