"""Seed statistics: mean ± std of an arm, and the difference of two arms' means with a 95% interval.

Welch's t-interval (``scipy.stats.ttest_ind(equal_var=False).confidence_interval``) when both arms have
at least ``WELCH_MIN_SEEDS`` seeds; with fewer, a percentile bootstrap of the difference of means
(``scipy.stats.bootstrap``), which with 2 seeds per arm can take only a handful of values and so is
narrower than the truth: the method is reported beside every interval.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

__all__ = ["WELCH_MIN_SEEDS", "Difference", "mean_std", "difference"]

WELCH_MIN_SEEDS = 3
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Difference:
    """``mean(ours) - mean(baseline)`` and its interval; ``method`` names how it was computed."""

    value: float
    low: float
    high: float
    method: str

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0 (no interval: False)."""
        return bool(np.isfinite(self.low) and np.isfinite(self.high) and (self.low > 0 or self.high < 0))

    def verdict(self) -> str:
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return "no interval"
        return "significant" if self.significant else "not significant"


def mean_std(values: Sequence[float]) -> tuple:
    """Mean and sample standard deviation (ddof=1; 0 for one value)."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def difference(ours: Sequence[float], baseline: Sequence[float], method: str = "auto",
               seed: int = 0) -> Difference:
    """Difference of means with a 95% interval.

    ``method``: ``'auto'`` (Welch with at least ``WELCH_MIN_SEEDS`` seeds per arm, else bootstrap),
    ``'welch'`` or ``'bootstrap'``. One seed in either arm gives no interval, and so does a seed
    without a value (NaN: a metric its evaluation could not compute); the difference is then NaN.

    Example:
        >>> d = difference([2.0, 2.1, 2.2], [1.0, 1.1, 1.2])
        >>> round(d.value, 6), d.method, d.significant
        (1.0, 'welch', True)
    """
    if method not in ("auto", "welch", "bootstrap"):
        raise ValueError(f"`method` must be 'auto', 'welch' or 'bootstrap', got {method!r}")
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    value = float(a.mean() - b.mean())
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return Difference(float("nan"), float("nan"), float("nan"), "a seed without a value")
    if min(a.size, b.size) < 2:
        return Difference(value, float("nan"), float("nan"), "one seed")
    if method == "auto":
        method = "welch" if min(a.size, b.size) >= WELCH_MIN_SEEDS else "bootstrap"
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        # Every seed gave the same value: the difference is exact, and both methods would be undefined.
        return Difference(value, value, value, "no seed variance")
    if method == "welch":
        result = stats.ttest_ind(a, b, equal_var=False)
        ci = result.confidence_interval(confidence_level=CONFIDENCE)
        return Difference(value, float(ci.low), float(ci.high), "welch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that resamples of 2 seeds are often degenerate
        result = stats.bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis),
                                 confidence_level=CONFIDENCE, n_resamples=9999, method="percentile",
                                 vectorized=True, rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Difference(value, float(ci.low), float(ci.high), "bootstrap")
