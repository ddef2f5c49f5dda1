"""Statistics across seeds, so a ranking says whether it could be noise.

- :func:`summarize`: mean, standard deviation, n and a 95 % confidence interval of the mean by Student's t
  (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n); with one seed there is no interval.
- :func:`p_value_against`: is a variant's score different from the best variant's? Paired t-test over the seeds
  both ran (every run of a suite trains on the same split and is judged on the same test images, so seed s of
  two variants shares everything but the variant); Welch's unpaired t-test when their seeds differ.
- :func:`probability_of_improvement`: P(X scores better than Y) over all pairs of their runs, ties counted half
  (the Mann–Whitney statistic over n·m; Agarwal et al. 2021, rliable).
"""

from __future__ import annotations

import math
import statistics

from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05  # significance level of the "not different from the best" marks


def summarize(values: list[float]) -> dict[str, float | int | None]:
    """``{mean, std, ci_low, ci_high, n}`` of one variant's per-seed scores (``ci_*`` None for one seed)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return {"mean": mean, "std": 0.0, "ci_low": None, "ci_high": None, "n": n}
    std = statistics.stdev(values)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def p_value_against(best: dict[int, float], other: dict[int, float]) -> float | None:
    """Two-sided p-value of "other scores the same as best" from their per-seed scores ``{seed: value}``; None
    where there are too few seeds to test (fewer than 2 on a side)."""
    shared = sorted(set(best) & set(other))
    if len(shared) >= 2 and len(shared) == len(best) == len(other):
        differences = [best[seed] - other[seed] for seed in shared]
        if all(d == differences[0] for d in differences):  # no spread: the t statistic is undefined
            return 1.0 if differences[0] == 0 else 0.0
        return float(stats.ttest_rel([best[s] for s in shared], [other[s] for s in shared]).pvalue)
    if len(best) >= 2 and len(other) >= 2:
        result = stats.ttest_ind(list(best.values()), list(other.values()), equal_var=False)
        return 1.0 if math.isnan(result.pvalue) else float(result.pvalue)
    return None


def probability_of_improvement(x: list[float], y: list[float], higher_is_better: bool) -> float:
    """P(a run of X scores better than a run of Y), over all n·m pairs, ties counted half."""
    sign = 1 if higher_is_better else -1
    wins = sum((sign * (a - b) > 0) + 0.5 * (a == b) for a in x for b in y)
    return wins / (len(x) * len(y))
