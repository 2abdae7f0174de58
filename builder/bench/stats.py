"""Summary statistics the way Go's benchmark tools report them: median with a 95% confidence
interval from order statistics (distribution-free, as benchstat does), P95, min, max, and a
MAD-based outlier warning."""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True, kw_only=True)
class Summary:
    n: int
    median: float
    p95: float
    min: float
    max: float
    ci_low: float | None  # 95% CI of the median; None below 6 samples
    ci_high: float | None
    outliers: int

    def as_json(self) -> dict:
        return asdict(self)


def median_ci(sorted_xs: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """The narrowest symmetric order-statistic interval holding the median with the given
    confidence; None when the sample is too small to reach it (n < 6 for 95%)."""
    n = len(sorted_xs)
    best = None
    for k in range(n // 2, -1, -1):  # interval [x_(k), x_(n-1-k)] in 0-based order statistics
        cover = sum(math.comb(n, i) for i in range(k + 1, n - k)) / 2**n if n - k > k + 1 else 0.0
        # P(x_(k) <= median <= x_(n-1-k)) = P(k+1 <= B <= n-1-k), B ~ Bin(n, 1/2)
        if cover >= confidence:
            best = (sorted_xs[k], sorted_xs[n - 1 - k])
            break
    return best


def quantile(sorted_xs: list[float], q: float) -> float:
    """Linear-interpolated quantile (the same as numpy's default)."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def outliers(xs: list[float], threshold: float = 3.5) -> int:
    """How many samples lie more than `threshold` modified z-scores from the median
    (Iglewicz and Hoaglin): the spread is 1.4826 x MAD, or 1.2533 x the mean absolute deviation
    when more than half the runs are equal and MAD is 0."""
    if len(xs) < 5:  # too few runs for a robust spread: no verdict
        return 0
    med = statistics.median(xs)
    deviations = [abs(x - med) for x in xs]
    spread = 1.4826 * statistics.median(deviations) or 1.2533 * statistics.fmean(deviations)
    if spread == 0:  # every run the same
        return 0
    return sum(1 for d in deviations if d / spread > threshold)


def summarize(xs: list[float]) -> Summary | None:
    if not xs:
        return None
    s = sorted(xs)
    ci = median_ci(s)
    return Summary(
        n=len(s), median=statistics.median(s), p95=quantile(s, 0.95), min=s[0], max=s[-1],
        ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None, outliers=outliers(s),
    )
