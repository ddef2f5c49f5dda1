"""Statistics across seeds, so a ranking says whether it could be noise.

- :func:`summarize`: mean, standard deviation, n and a 95 % confidence interval of the mean by Student's t
  (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n); with one seed there is no interval.
- :func:`compare_with_best`: which variant is best on a metric and which are separable from it, with the error rate
  held for the whole statement (Tukey's studentized range; see its docstring for why), and how many seeds would
  separate each pair that is not separated.
- :func:`probability_of_improvement`: P(X scores better than Y) over all pairs of their runs, ties counted half
  (the Mann–Whitney statistic over n·m; Agarwal et al. 2021, rliable).
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05  # family-wise error rate of each metric's "best / separable from the best" statement
POWER = 0.8  # the power at which the report says how many seeds would separate an observed difference
MAX_SEEDS = 10_000  # beyond this the report says "more than"


def summarize(values: list[float]) -> dict[str, float | int | None]:
    """``{mean, std, ci_low, ci_high, n}`` of one variant's per-seed scores (``ci_*`` None for one seed)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return {"mean": mean, "std": 0.0, "ci_low": None, "ci_high": None, "n": n}
    std = statistics.stdev(values)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def clearly_above(
    summaries: dict[str, dict[str, Any]], value: float, margin: float = 0.0, comparisons: int | None = None
) -> list[str]:
    """The variants shown to score above ``value + margin`` (a fixed number: a baseline measured once), with the
    family-wise error rate held at ``ALPHA`` over ``comparisons`` such claims (default: one per variant) by
    Bonferroni — a one-sided Student-t bound at ``ALPHA / comparisons`` each, valid whatever the dependence between
    variants that share a test split. One seed shows nothing (a bare mean is not a test). ``margin``: the smallest
    difference worth a claim (one test image's share of an accuracy)."""
    count = comparisons or len(summaries)
    shown = []
    for variant, summary in summaries.items():
        n = summary["n"]
        if n < 2:
            continue
        bound = summary["mean"] - stats.t.ppf(1 - ALPHA / count, n - 1) * summary["std"] / math.sqrt(n)
        if bound > value + margin:
            shown.append(variant)
    return shown


@functools.lru_cache(maxsize=4096)
def range_critical_value(variants: int, df: float, alpha: float = ALPHA) -> float:
    """c such that P(the largest difference between ``variants`` equal means exceeds c standard errors of one
    difference) = α, with the variance estimated on ``df`` degrees of freedom: Tukey's studentized range quantile
    q₁₋α(k, df) / √2. For two variants it is the two-sided t quantile t₁₋α/₂,df (tested)."""
    if variants < 2 or not df > 0:
        raise ValueError(f"need variants >= 2 and df > 0 (got {variants}, {df})")
    # beyond 2000 degrees of freedom the quantile moves in the fourth digit; capping keeps large-n power searches fast
    return float(stats.studentized_range.ppf(1 - alpha, variants, min(df, 2000)) / math.sqrt(2))


@dataclass
class Comparison:
    """One metric's statement, as ``comparison.json`` holds it."""

    best: str
    not_separable: list[str]
    separable: list[str]
    method: str
    alpha: float
    n_seeds: int
    seeds: list[int] = field(default_factory=list)  # the seeds every compared variant finished (the blocks)
    critical_value: float | None = None  # c: a variant is separable when best − it > c · standard error
    standard_error: float | None = None  # of a difference of two variants' means
    # not separable: the seeds at which the rule would separate the observed difference at 80 % power, from the
    # observed spread of per-seed differences (pooled, as the rule pools it); None where it cannot be said
    seeds_for_power: dict[str, int | None] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


METHOD = "Tukey's studentized range against the best (single-step, all pairs), seeds as blocks"


def compare_with_best(
    scores: dict[str, dict[int, float]], higher_is_better: bool, alpha: float = ALPHA, with_power: bool = True
) -> Comparison:
    """Which variant is best on one metric, and which variants are separable from it, from per-seed scores
    ``{variant: {seed: value}}``, with family-wise error rate ``alpha`` for the whole statement.

    Design: a randomized complete block design with the seeds as blocks (every seed of a suite shares the split,
    the test images and, per run seed, the data order, so seed s of two variants differs only in the variant). From
    the two-way additive model (variant + seed) the residual standard deviation s has (k − 1)(n − 1) degrees of
    freedom, and a difference of two variants' means has standard error s·√(2/n).

    Rule: the best is the variant with the best mean; variant i is *separable* from it when
    mean_best − mean_i > c · s·√(2/n) (direction-adjusted), c = q₁₋α(k, df)/√2 from Tukey's studentized range
    (Tukey 1953; Hsu 1996, *Multiple Comparisons*, ch. 5). Every pairwise difference of the k means stays within
    c standard errors of its true value with probability 1 − α, so the statement "these are separable from the
    best" is wrong anywhere — some separated variant truly as good as the one picked — with probability ≤ α,
    whichever variant the data made look best (strong family-wise control).

    Why not the alternatives the review named: Holm's step-down over the k − 1 tests against the *selected* best
    ignores the selection (the largest gap among k equal means is not a t-distributed pair). Hsu's multiple
    comparisons with the best (MCB) controls the non-strict statement "μ_i ≤ max of the others", which is true
    for equal variants: simulated here with six equal variants it called some variant separable from the best in
    19 % of suites with 3 seeds. The studentized range is the procedure whose guarantee is the statement the
    report makes. Its assumptions: additive seed effects, equal residual variance across variants, normal errors.

    Measured by simulation in tests/test_statistics.py (6 variants, a seed effect shared by all, 4000 suites):
    equal variants are called separable in 5.4 % of suites with 3 seeds and 5.0 % with 5 (the bound is exact when
    its assumptions hold; Monte Carlo error 0.35 %); one variant worse by 2 residual standard deviations is
    separated in 46 % of suites with 3 seeds and 82 % with 5 — three seeds separate only large differences, which
    is why the report says how many seeds each unseparated pair would need. Where one variant's runs vary 3x as
    much as the others', equal variants are called separable in about 11 % of suites: a variant with a much wider
    interval than the rest is read with care.

    Only the seeds every variant finished are used (complete blocks; the best is then the best mean over those
    seeds, and ``seeds`` says which — the report says so under its table). With fewer than two such seeds, or no
    spread across them, nothing is separable, and the method says why. ``with_power``: also say, for
    each pair not separated, how many seeds would separate it (:func:`seeds_to_separate`).
    """
    names = [name for name, values in scores.items() if values]
    sign = 1.0 if higher_is_better else -1.0
    means = {name: statistics.fmean(scores[name].values()) for name in names}
    best = max(names, key=lambda name: sign * means[name])
    others = [name for name in names if name != best]
    blocks = sorted(set.intersection(*(set(scores[name]) for name in names)))
    base = {"best": best, "alpha": alpha, "seeds": blocks, "n_seeds": len(blocks)}
    if not others:
        return Comparison(not_separable=[], separable=[], method="one variant: nothing to compare", **base)
    if len(blocks) < 2:
        return Comparison(
            not_separable=others,
            separable=[],
            method="fewer than 2 seeds shared by every variant: nothing can be separated",
            **base,
        )
    k, n = len(names), len(blocks)
    table = np.array([[scores[name][seed] for seed in blocks] for name in names])  # k × n
    block_means = {name: float(row.mean()) for name, row in zip(names, table)}
    best = max(names, key=lambda name: sign * block_means[name])
    others = [name for name in names if name != best]
    residuals = table - table.mean(1, keepdims=True) - table.mean(0, keepdims=True) + table.mean()
    df = (k - 1) * (n - 1)
    residual_sd = math.sqrt(float((residuals**2).sum()) / df)
    if residual_sd <= 1e-9 * max(1.0, float(np.abs(table).max())):
        # every difference is the same on every seed: the additive model leaves no error to judge a difference by
        return Comparison(
            not_separable=others,
            separable=[],
            method="no spread across seeds (every per-seed difference equal): nothing can be separated",
            **{**base, "best": best},
        )
    critical = range_critical_value(k, df, alpha)
    standard_error = residual_sd * math.sqrt(2 / n)
    separable = [name for name in others if sign * (block_means[best] - block_means[name]) > critical * standard_error]
    not_separable = [name for name in others if name not in separable]
    # the spread of a per-seed difference as the rule sees it (pooled over the variants: s·√2), so "n seeds would
    # separate it" speaks of the same test that did not separate it here
    power = (
        {}
        if not with_power
        else {
            name: seeds_to_separate(abs(block_means[best] - block_means[name]), residual_sd * math.sqrt(2), k, alpha)
            for name in not_separable
        }
    )
    return Comparison(
        best=best,
        not_separable=not_separable,
        separable=separable,
        method=METHOD,
        alpha=alpha,
        n_seeds=n,
        seeds=blocks,
        critical_value=critical,
        standard_error=standard_error,
        seeds_for_power=power,
    )


def power_of(difference: float, difference_sd: float, variants: int, seeds: int, alpha: float = ALPHA) -> float:
    """P(the rule of :func:`compare_with_best` separates two variants whose per-seed differences have mean
    ``difference`` and standard deviation ``difference_sd``) with ``seeds`` seeds among ``variants`` variants: the
    noncentral t's chance of passing the critical value (the pair taken as given, not selected)."""
    df = (variants - 1) * (seeds - 1)
    noncentrality = difference * math.sqrt(seeds) / difference_sd
    return float(stats.nct.sf(range_critical_value(variants, df, alpha), df, noncentrality))


def seeds_to_separate(difference: float, difference_sd: float, variants: int, alpha: float = ALPHA) -> int | None:
    """The fewest seeds at which an observed ``difference`` with this per-seed spread would be separated at
    :data:`POWER`; ``MAX_SEEDS + 1`` for "more than MAX_SEEDS", None where it cannot be said (no difference, or
    no spread to judge by)."""
    if not (difference > 0 and difference_sd > 0 and math.isfinite(difference_sd)):
        return None
    if power_of(difference, difference_sd, variants, MAX_SEEDS, alpha) < POWER:
        return MAX_SEEDS + 1
    low, high = 1, 2  # power(low) < POWER <= power(high): doubling, then bisection (power grows with seeds)
    while power_of(difference, difference_sd, variants, high, alpha) < POWER:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (
            (middle, high) if power_of(difference, difference_sd, variants, middle, alpha) < POWER else (low, middle)
        )
    return high


def probability_of_improvement(x: list[float], y: list[float], higher_is_better: bool) -> float:
    """P(a run of X scores better than a run of Y), over all n·m pairs, ties counted half."""
    sign = 1 if higher_is_better else -1
    wins = sum((sign * (a - b) > 0) + 0.5 * (a == b) for a in x for b in y)
    return wins / (len(x) * len(y))
