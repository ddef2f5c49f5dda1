"""Statistics across seeds, so a ranking says whether it could be noise.

- :func:`summarize`: mean, standard deviation, n and a 95 % confidence interval of the mean by Student's t
  (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n); with one seed there is no interval.
- :func:`compare_with_best`: which variant is best on a metric and which are separable from it, with the error rate
  held for the whole statement whether or not the variants are equally noisy (paired t on each pair's own spread,
  Bonferroni over the pairs; see its docstring for why), and how many seeds would separate each pair that is not
  separated.
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


@dataclass
class Comparison:
    """One metric's statement, as ``comparison.json`` holds it."""

    best: str
    not_separable: list[str]
    separable: list[str]
    method: str
    alpha: float
    n_seeds: int  # the fewest seeds any mark rests on (each pair: the seeds both variants finished)
    seeds: list[int] = field(default_factory=list)  # the seeds every compared variant finished
    critical_value: float | None = None  # a variant is separable when its paired t against the best exceeds this
    # per variant compared with the best: the seeds the pair shares (what its mark rests on), and the standard
    # error of the mean per-seed difference
    pair_seeds: dict[str, int] = field(default_factory=dict)
    standard_errors: dict[str, float] = field(default_factory=dict)
    # not separable: the seeds at which the rule would separate the observed difference at 80 % power, from that
    # pair's observed spread of per-seed differences; None where it cannot be said
    seeds_for_power: dict[str, int | None] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


METHOD = "paired t against the best, each pair on its own spread, Bonferroni over every ordered pair of variants"


@functools.lru_cache(maxsize=4096)
def pair_critical_value(variants: int, seeds: int, alpha: float = ALPHA) -> float:
    """The paired t a difference must exceed: one-sided at α / (k(k − 1)) on n − 1 degrees of freedom."""
    return float(stats.t.ppf(1 - alpha / (variants * (variants - 1)), seeds - 1))


def compare_with_best(
    scores: dict[str, dict[int, float]], higher_is_better: bool, alpha: float = ALPHA, with_power: bool = True
) -> Comparison:
    """Which variant is best on one metric, and which variants are separable from it, from per-seed scores
    ``{variant: {seed: value}}``, with family-wise error rate ``alpha`` for the whole statement — whether or not
    the variants are equally noisy.

    Best: the variant with the best mean over its own seeds (the mean the report prints, so the bold cell is the
    best printed number). Each other variant is compared with it on the seeds both finished (seed s of two variants
    shares the split, the test images and the data order, so a per-seed difference removes the seed's effect):
    the per-seed differences d_s, their mean d̄ and standard deviation s_d on n shared seeds, t = d̄ / (s_d / √n);
    separable when t > t₁₋α/(k(k−1)), n−1 (direction-adjusted). Each pair is judged on its own spread, so a variant
    that sometimes collapses widens only its own pairs' intervals; the Bonferroni split over all k(k − 1) ordered
    pairs holds the error rate whichever variant the data made look best (the best is selected, so the pairs
    with it are not a fixed family: the bound must cover every pair that could have been the selected one's).

    Why this and not Tukey's studentized range (what the report used before): Tukey's test pools one residual
    variance over all variants; when the variants differ in spread, its error rate grows with the disparity and does
    not shrink with seeds — simulated (six equal variants, 4000 suites each; tests/test_statistics.py): one variant
    3× noisier 11 % (3 seeds) and 11 % (10), spreads ½ … 3 12 % and 11 %, one 10× noisier 18 % and 16 % (5 seeds),
    seed effects of different sizes per variant 10 % and 9 %. This rule, on the same rows: 2.0 %, 2.2 %, 2.0 %,
    1.9 %, 1.5 % (3 seeds), 1.8 % (5), 2.6 % and 2.4 %, and 2.5 % (3) / 2.9 % (5) with equal spreads. Games–Howell
    (the studentized range on each pair's own spread) was tried and rejected: 10 % with 3 seeds. The price is
    power: a variant worse by 2 residual standard deviations among six equal spreads is separated in 3 % of suites
    with 3 seeds (Tukey: 46 %), 23 % with 5 (Tukey: 82 %) and 86 % with 10 — with 2 degrees of freedom per pair,
    three seeds separate only differences many times their own spread. The report says how many seeds each
    unseparated pair would need.

    With fewer than two shared seeds, or no spread in a pair's differences, that pair is not separable and the
    method says why. ``with_power``: also say, for each pair not separated, how many seeds would separate it at this
    rule (:func:`seeds_to_separate`, for the pair taken as given).
    """
    names = [name for name, values in scores.items() if values]
    sign = 1.0 if higher_is_better else -1.0
    means = {name: statistics.fmean(scores[name].values()) for name in names}
    best = max(names, key=lambda name: sign * means[name])
    others = [name for name in names if name != best]
    blocks = sorted(set.intersection(*(set(scores[name]) for name in names)))
    base = {"best": best, "alpha": alpha, "seeds": blocks}
    if not others:
        return Comparison(
            not_separable=[], separable=[], method="one variant: nothing to compare", n_seeds=len(blocks), **base
        )
    k = len(names)
    separable, not_separable, pair_seeds, errors, power, reasons = [], [], {}, {}, {}, set()
    for name in others:
        shared = sorted(set(scores[best]) & set(scores[name]))
        pair_seeds[name] = len(shared)
        differences = np.array([sign * (scores[best][seed] - scores[name][seed]) for seed in shared])
        if len(shared) < 2:
            not_separable.append(name)
            reasons.add("fewer than 2 shared seeds")
            continue
        spread = float(differences.std(ddof=1))
        scale = max(1.0, float(np.abs(differences).max()), abs(means[best]))
        if spread <= 1e-9 * scale:  # every per-seed difference equal: no error to judge the difference by
            not_separable.append(name)
            reasons.add("no spread across seeds")
            continue
        errors[name] = spread / math.sqrt(len(shared))
        if float(differences.mean()) / errors[name] > pair_critical_value(k, len(shared), alpha):
            separable.append(name)
        else:
            not_separable.append(name)
            if with_power:
                power[name] = seeds_to_separate(abs(float(differences.mean())), spread, k, alpha)
    method = METHOD
    if reasons:
        method += " (not separable: " + ", ".join(sorted(reasons)) + " — every per-seed difference equal, or too few"
        method += " seeds: nothing can be separated there)"
    seeds_used = min(pair_seeds.values())
    return Comparison(
        not_separable=not_separable,
        separable=separable,
        method=method,
        n_seeds=seeds_used,
        critical_value=pair_critical_value(k, seeds_used, alpha) if seeds_used >= 2 else None,
        pair_seeds=pair_seeds,
        standard_errors=errors,
        seeds_for_power=power,
        **base,
    )


def power_of(difference: float, difference_sd: float, variants: int, seeds: int, alpha: float = ALPHA) -> float:
    """P(the rule of :func:`compare_with_best` separates two variants whose per-seed differences have mean
    ``difference`` and standard deviation ``difference_sd``) with ``seeds`` seeds among ``variants`` variants: the
    noncentral t's chance of passing the critical value (the pair taken as given, not selected)."""
    noncentrality = difference * math.sqrt(seeds) / difference_sd
    return float(stats.nct.sf(pair_critical_value(variants, seeds, alpha), seeds - 1, noncentrality))


def seeds_to_separate(difference: float, difference_sd: float, variants: int, alpha: float = ALPHA) -> int | None:
    """The fewest seeds at which an observed ``difference`` with this per-seed spread would be separated at
    :data:`POWER`; ``MAX_SEEDS + 1`` for "more than MAX_SEEDS", None where it cannot be said (no difference, or
    no spread to judge by)."""
    if not (difference > 0 and difference_sd > 0 and math.isfinite(difference_sd)):
        return None
    if power_of(difference, difference_sd, variants, MAX_SEEDS, alpha) < POWER:
        return MAX_SEEDS + 1
    low, high = 2, 3  # power(low) < POWER <= power(high): doubling, then bisection (power grows with seeds)
    if power_of(difference, difference_sd, variants, low, alpha) >= POWER:
        return low
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
