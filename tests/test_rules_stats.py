"""Clopper-Pearson interval and half-up rounding (SPEC sections 3 and 6)."""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction
from math import comb

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.rules import stats
from ledger.domain.rules.stats import (
    beta_quantile,
    clopper_pearson,
    proportion_percent,
    regularized_beta,
    round_half_up,
)


def _binomial_tail(n: int, total: int, p: Decimal) -> Decimal:
    """P(X >= n) for X ~ Binomial(total, p), in 60-digit decimal."""
    return sum(
        (comb(total, k) * p**k * (1 - p) ** (total - k) for k in range(n, total + 1)),
        Decimal(0),
    )


def _reference(n: int, total: int) -> tuple[float, float]:
    """Clopper-Pearson by its definition (binomial tails = 2.5%), bisected in decimal."""
    with localcontext() as ctx:
        ctx.prec = 60
        target = Decimal("0.025")

        def solve(f, increasing: bool) -> Decimal:
            low, high = Decimal(0), Decimal(1)
            for _ in range(70):
                mid = (low + high) / 2
                if (f(mid) < target) == increasing:
                    low = mid
                else:
                    high = mid
            return (low + high) / 2

        lower = Decimal(0) if n == 0 else solve(lambda p: _binomial_tail(n, total, p), True)
        upper = Decimal(1) if n == total else solve(lambda p: 1 - _binomial_tail(n + 1, total, p), False)
        return float(lower), float(upper)


@pytest.mark.parametrize(
    ("n", "total", "expected"),
    [
        (7, 10, (70.0, 34.75, 93.33)),
        (0, 10, (0.0, 0.0, 30.85)),
        (10, 10, (100.0, 69.15, 100.0)),
        # The brief suggested [40.75, 59.25]; the exact tails give 0.407369 and 0.592631.
        (60, 120, (50.0, 40.74, 59.26)),
        (1, 1, (100.0, 2.5, 100.0)),
        (0, 1, (0.0, 0.0, 97.5)),
        (1, 3, (33.33, 0.84, 90.57)),
    ],
)
def test_known_intervals(n: int, total: int, expected: tuple[float, float, float]) -> None:
    assert proportion_percent(n, total) == expected


@pytest.mark.parametrize(
    ("n", "total"),
    [(7, 10), (0, 10), (10, 10), (60, 120), (1, 2), (5, 37), (199, 200), (3, 500), (28, 57)],
)
def test_against_binomial_definition(n: int, total: int) -> None:
    low, high = clopper_pearson(n, total)
    ref_low, ref_high = _reference(n, total)
    assert low == pytest.approx(ref_low, abs=1e-12)
    assert high == pytest.approx(ref_high, abs=1e-12)


def test_empty_population_gives_nulls() -> None:
    assert proportion_percent(0, 0) == (None, None, None)
    with pytest.raises(ValueError):
        clopper_pearson(0, 0)


def test_closed_forms() -> None:
    # n = 0: upper = 1 - (alpha/2)^(1/N); n = N: lower = (alpha/2)^(1/N).
    for total in (1, 2, 5, 10, 50, 120):
        assert clopper_pearson(0, total)[1] == pytest.approx(1 - 0.025 ** (1 / total), abs=1e-13)
        assert clopper_pearson(total, total)[0] == pytest.approx(0.025 ** (1 / total), abs=1e-13)


def test_regularized_beta_symmetry_and_bounds() -> None:
    assert regularized_beta(2.0, 3.0, 0.0) == 0.0
    assert regularized_beta(2.0, 3.0, 1.0) == 1.0
    # I_x(1, 1) = x, I_x(a, 1) = x^a.
    assert regularized_beta(1.0, 1.0, 0.3) == pytest.approx(0.3, abs=1e-15)
    assert regularized_beta(4.0, 1.0, 0.5) == pytest.approx(0.0625, abs=1e-15)
    assert regularized_beta(3.0, 7.0, 0.2) + regularized_beta(7.0, 3.0, 0.8) == pytest.approx(1.0)


def test_round_half_up() -> None:
    assert round_half_up(2.675, 2) == 2.68
    assert round_half_up(2.665, 2) == 2.67
    assert round_half_up(0.125, 2) == 0.13
    assert round_half_up(Fraction(1, 8) * 100, 2) == 12.5
    assert round_half_up(Fraction(2, 3) * 100, 2) == 66.67
    assert round_half_up(Fraction(1, 3) * 100, 2) == 33.33
    assert round_half_up(Decimal("12.345"), 2) == 12.35
    assert round_half_up(Fraction(12345, 1000), 2) == 12.35
    assert round_half_up(100, 2) == 100.0


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=1, max_value=300).flatmap(
        lambda total: st.tuples(st.integers(min_value=0, max_value=total), st.just(total))
    )
)
def test_interval_contains_estimate(case: tuple[int, int]) -> None:
    n, total = case
    low, high = clopper_pearson(n, total)
    assert 0.0 <= low <= n / total <= high <= 1.0
    assert (low == 0.0) == (n == 0)
    assert (high == 1.0) == (n == total)
    percent, p_low, p_high = proportion_percent(n, total)
    assert p_low <= percent <= p_high


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=2, max_value=300).flatmap(
        lambda total: st.tuples(st.integers(min_value=0, max_value=total - 1), st.just(total))
    )
)
def test_interval_monotone(case: tuple[int, int]) -> None:
    n, total = case
    low, high = clopper_pearson(n, total)
    next_low, next_high = clopper_pearson(n + 1, total)
    # One more responder moves both bounds up; one more trial without it moves both down.
    assert next_low > low and next_high > high
    more_low, more_high = clopper_pearson(n, total + 1)
    assert more_low < low or n == 0
    assert more_high < high
    # Equal-tailed: the interval of n is the mirror of the interval of total - n.
    mirror_low, mirror_high = clopper_pearson(total - n, total)
    assert mirror_low == pytest.approx(1 - high, abs=1e-12)
    assert mirror_high == pytest.approx(1 - low, abs=1e-12)


def test_the_confidence_level_and_the_places_are_used() -> None:
    # n = 0 and n = N have closed forms at any level: alpha / 2 = 0.05 at 90%.
    assert clopper_pearson(0, 10, 0.9)[1] == pytest.approx(1 - 0.05 ** (1 / 10), abs=1e-13)
    assert clopper_pearson(10, 10, 0.9)[0] == pytest.approx(0.05 ** (1 / 10), abs=1e-13)
    assert proportion_percent(1, 3, 0.9) == (33.33, 1.7, 86.46)
    assert proportion_percent(1, 3, places=1) == (33.3, 0.8, 90.6)
    assert round_half_up(12.3456, 3) == 12.346
    assert round_half_up(2.675) == 2.68


def test_a_bound_on_a_tie_is_rounded_up_not_lost_to_float_noise() -> None:
    assert 100.0 * clopper_pearson(0, 1)[1] < 97.5  # 97.49999999999999 in binary
    assert proportion_percent(0, 1) == (0.0, 0.0, 97.5)


def test_beta_quantile_at_its_ends_and_inside() -> None:
    assert beta_quantile(0.0, 2.0, 3.0) == 0.0
    assert beta_quantile(1.0, 2.0, 3.0) == 1.0
    assert beta_quantile(0.25, 1.0, 1.0) == pytest.approx(0.25, abs=1e-15)  # I_x(1, 1) = x
    assert beta_quantile(0.0625, 4.0, 1.0) == pytest.approx(0.5, abs=1e-15)  # I_x(4, 1) = x^4


def test_a_continued_fraction_that_does_not_converge_is_an_error_naming_a_and_b(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stats, "_MAX_ITERATIONS", 1)
    # x = 1e-20 converges at the first step; x = 0.3 needs more than one
    assert regularized_beta(1.0, 1.0, 1e-20) == pytest.approx(1e-20, rel=1e-12)
    with pytest.raises(ArithmeticError) as raised:
        regularized_beta(2.0, 3.0, 0.3)
    assert str(raised.value) == "incomplete beta continued fraction did not converge (a=2.0, b=3.0)"
