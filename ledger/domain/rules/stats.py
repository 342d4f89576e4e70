"""Exact binomial confidence intervals and report rounding (SPEC section 3 and 6).

The primary endpoint reports a proportion with its exact Clopper-Pearson 95%
confidence interval, in percent, rounded half up to two decimals (SPEC section
6, ``endpoints``).  scipy is not a dependency, so the beta quantiles come from
the regularised incomplete beta function evaluated by its continued fraction
(Numerical Recipes ``betacf``, modified Lentz) and inverted by bisection, which
is monotone and converges to the floating-point resolution of [0, 1].
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

_EPS = 1e-16
_TINY = 1e-300
_MAX_ITERATIONS = 100_000


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (NR ``betacf``, Lentz)."""
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < _TINY:
        d = _TINY
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_ITERATIONS + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b})")


def regularized_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError("regularized_beta needs a > 0 and b > 0")
    if not 0.0 <= x <= 1.0:
        raise ValueError("regularized_beta needs 0 <= x <= 1")
    if x == 0.0:
        return 0.0
    if x == 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the
    # symmetry I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def beta_quantile(p: float, a: float, b: float) -> float:
    """The x in [0, 1] with I_x(a, b) = p, by bisection to floating-point resolution."""
    if not 0.0 <= p <= 1.0:
        raise ValueError("beta_quantile needs 0 <= p <= 1")
    if p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if mid in (low, high):
            break
        if regularized_beta(a, b, mid) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def clopper_pearson(n: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a binomial proportion, as fractions.

    ``n`` successes out of ``total`` trials; the interval is the pair of beta
    quantiles ``B(alpha/2; n, total-n+1)`` and ``B(1-alpha/2; n+1, total-n)``,
    with lower bound 0 when ``n == 0`` and upper bound 1 when ``n == total``.
    Accurate to about 1e-12.  Raises ``ValueError`` when ``total`` is 0 (no
    interval exists; SPEC section 3 reports null bounds).
    """
    if total <= 0:
        raise ValueError("clopper_pearson needs at least one trial")
    if not 0 <= n <= total:
        raise ValueError("clopper_pearson needs 0 <= n <= total")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie strictly between 0 and 1")
    alpha = 1.0 - confidence
    lower = 0.0 if n == 0 else beta_quantile(alpha / 2.0, n, total - n + 1)
    upper = 1.0 if n == total else beta_quantile(1.0 - alpha / 2.0, n + 1, total - n)
    return lower, upper


def round_half_up(x: float | int | Decimal | Fraction, places: int = 2) -> float:
    """``x`` rounded half up (away from zero on ties) to ``places`` decimals (SPEC section 6).

    A float is taken at its shortest decimal representation (``repr``), so
    ``round_half_up(2.675)`` is 2.68 as a reader of the number expects, not 2.67
    as its binary value would give.  Fractions are rounded exactly.
    """
    quantum = Decimal(1).scaleb(-places)
    with localcontext() as ctx:
        ctx.prec = 60
        if isinstance(x, Fraction):
            value = Decimal(x.numerator) / Decimal(x.denominator)
        elif isinstance(x, float):
            value = Decimal(repr(x))
        else:
            value = Decimal(x)
        return float(value.quantize(quantum, rounding=ROUND_HALF_UP))


def proportion_percent(
    n: int, total: int, confidence: float = 0.95, places: int = 2
) -> tuple[float | None, float | None, float | None]:
    """``(percent, ci_low, ci_high)`` of ``n`` out of ``total``, in percent, rounded half up.

    SPEC section 3 and 6: with ``total == 0`` all three are None; ``n == 0``
    gives a lower bound of exactly 0 and ``n == total`` an upper bound of 100.
    The percent is computed exactly (``100 * n / total`` as a fraction).
    """
    if total == 0:
        return None, None, None
    low, high = clopper_pearson(n, total, confidence)
    percent = round_half_up(Fraction(100 * n, total), places)
    return percent, _percent_bound(low, places), _percent_bound(high, places)


def _percent_bound(fraction: float, places: int) -> float:
    """A CI bound in percent, rounded half up.

    The bound is accurate to about 1e-12, so it is first settled to 10 decimals:
    a bound that is exactly on a tie (``n = 0, total = 1`` gives 97.5) must not
    fall below it through floating-point noise such as 97.49999999999999.
    """
    settled = Decimal(repr(100.0 * fraction)).quantize(Decimal("1e-10"))
    return round_half_up(settled, places)
