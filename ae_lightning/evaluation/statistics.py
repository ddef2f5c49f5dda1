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
MAX_SEEDS = 100  # seeds needed are simulated up to this; beyond, the report says "more than"
SIMULATIONS = 2000  # simulated suites per seed count when seeds needed are estimated (Monte Carlo s.e. ≤ 0.011)


@functools.lru_cache(maxsize=4096)
def t_quantile(probability: float, dof: int) -> float:
    """Student's t quantile, cached: the simulations behind the report's statements ask for the same few quantiles
    thousands of times (scipy's ``ppf`` was most of their time)."""
    return float(stats.t.ppf(probability, dof))


def summarize(values: list[float]) -> dict[str, float | int | None]:
    """``{mean, std, ci_low, ci_high, n}`` of one variant's per-seed scores (``ci_*`` None for one seed)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return {"mean": mean, "std": 0.0, "ci_low": None, "ci_high": None, "n": n}
    # statistics.stdev's value (to ~1e-16) without its exact fractions, which were most of the simulations' time;
    # equal values: exactly 0, as stdev gives (fmean need not return the value itself, e.g. for [0.1] * 3)
    if min(values) == max(values):
        std = 0.0
    else:
        std = math.sqrt(math.fsum((value - mean) * (value - mean) for value in values) / (n - 1))
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
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
        bound = summary["mean"] - t_quantile(1 - ALPHA / count, n - 1) * summary["std"] / math.sqrt(n)
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
    # not separable: the seeds at which the rule, as made, would separate the observed difference at 80 % power
    # (simulated; seeds_for_power); None where no difference was estimated
    seeds_for_power: dict[str, int | None] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


METHOD = "paired t against the best, each pair on its own spread, Bonferroni over every ordered pair of variants"


def pair_critical_value(variants: int, seeds: int, alpha: float = ALPHA) -> float:
    """The paired t a difference must exceed: one-sided at α / (k(k − 1)) on n − 1 degrees of freedom."""
    return t_quantile(1 - alpha / (variants * (variants - 1)), seeds - 1)


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
    method says why. ``with_power``: also say, for each pair not separated, how many seeds would separate it by this
    rule as it is made (:func:`seeds_for_power`; only where a difference was estimated).
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
    method = METHOD
    if reasons:
        method += " (not separable: " + ", ".join(sorted(reasons)) + " — every per-seed difference equal, or too few"
        method += " seeds: nothing can be separated there)"
    seeds_used = min(pair_seeds.values())
    if with_power and not_separable:
        power = seeds_for_power({name: scores[name] for name in names}, higher_is_better, not_separable, alpha)
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


def variant_spreads(scores: dict[str, dict[int, float]]) -> dict[str, float]:
    """Each variant's own per-seed standard deviation once the seed's shared effect is removed: a per-seed
    difference of two variants has variance σ_i² + σ_j² (the seed effect cancels), so the σ² are the least-squares
    solution over every pair with two or more shared seeds (Grubbs' estimator for unequal precisions), clipped at
    0; two variants split their pair's variance equally."""
    names = list(scores)
    rows, targets = [], []
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            shared = sorted(set(scores[a]) & set(scores[names[j]]))
            if len(shared) >= 2:
                row = np.zeros(len(names))
                row[[i, j]] = 1.0
                rows.append(row)
                targets.append(float(np.var([scores[a][seed] - scores[names[j]][seed] for seed in shared], ddof=1)))
    if not rows:
        return {name: 0.0 for name in names}
    variances = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)[0]
    if len(names) == 2:  # one pair: σ₁² + σ₂² is all the data can say
        variances = np.full(2, targets[0] / 2)
    return {name: math.sqrt(max(float(v), 0.0)) for name, v in zip(names, variances)}


def simulated_power(
    means: np.ndarray,
    spreads: np.ndarray,
    seeds: int,
    higher_is_better: bool,
    alpha: float = ALPHA,
    simulations: int = SIMULATIONS,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """P(each variant is called separable) by :func:`compare_with_best` as it is made — the best re-selected in every
    simulated suite, each pair's paired t, the Bonferroni critical value — for suites of ``seeds`` seeds whose
    variants score ``means`` with per-seed spreads ``spreads`` (seed effects cancel in every pair and shift every
    mean alike, so they are left out). One entry per variant; the true best's is its chance of being separated from
    a wrongly selected best."""
    rng = rng if rng is not None else np.random.default_rng(0)
    sign = 1.0 if higher_is_better else -1.0
    k = len(means)
    draws = means[None, :, None] + spreads[None, :, None] * rng.standard_normal((simulations, k, seeds))
    best = np.argmax(sign * draws.mean(2), axis=1)
    differences = sign * (draws[np.arange(simulations), best][:, None, :] - draws)  # [simulation, variant, seed]
    spread = differences.std(2, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = differences.mean(2) * math.sqrt(seeds) / spread
    separated = (t > pair_critical_value(k, seeds, alpha)) & (np.arange(k)[None, :] != best[:, None])
    return separated.mean(0)


def seeds_for_power(
    scores: dict[str, dict[int, float]], higher_is_better: bool, variants: list[str], alpha: float = ALPHA
) -> dict[str, int | None]:
    """For each of ``variants`` (not separated from the best): the fewest seeds at which :func:`compare_with_best`,
    as it is made (the best re-selected, the Bonferroni split), would separate it from the best with probability
    :data:`POWER`, simulated (:func:`simulated_power`, :data:`SIMULATIONS` suites per seed count) with the observed
    means and each variant's own spread (:func:`variant_spreads`) taken as the truth; ``MAX_SEEDS + 1`` for "more
    than MAX_SEEDS".

    Only where a difference was estimated: the pair's own two-sided interval of the mean per-seed difference
    (Student's t at 1 − α/(k − 1): Bonferroni over the k − 1 pairs with the best, because the best was picked for
    looking best — at plain 95 % equal variants got a count in 7.6 % of pairs) excludes 0. Otherwise None — an
    observed gap inside its own noise is no difference to plan for: with equal variants a plug-in count is finite
    for every pair (a median of 39 seeds with 3 seeds, 6 variants), and says nothing.

    Calibrated: at the count returned, ``compare_with_best`` itself on 2000 suites with that truth separates the
    pair in 80 % ± 5 % (tests/test_statistics.py), where one seed moves the power by less than that (counts of 8 or
    more). The count is for the observed difference, which from a best picked for looking best runs large —
    optimistic, as the report says."""
    names = [name for name, values in scores.items() if values]
    sign = 1.0 if higher_is_better else -1.0
    means = np.array([statistics.fmean(scores[name].values()) for name in names])
    best = names[int(np.argmax(sign * means))]
    spreads = variant_spreads({name: scores[name] for name in names})
    spread_array = np.array([spreads[name] for name in names])
    cache: dict[int, np.ndarray] = {}

    def power(seeds: int) -> np.ndarray:
        if seeds not in cache:
            rng = np.random.default_rng(seeds)  # one stream per seed count: repeatable reports
            cache[seeds] = simulated_power(means, spread_array, seeds, higher_is_better, alpha, rng=rng)
        return cache[seeds]

    needed: dict[str, int | None] = {}
    for name in variants:
        shared = sorted(set(scores[best]) & set(scores[name]))
        differences = np.array([sign * (scores[best][seed] - scores[name][seed]) for seed in shared])
        if len(shared) < 2 or not float(differences.std(ddof=1)) > 0:
            needed[name] = None
            continue
        error = float(differences.std(ddof=1)) / math.sqrt(len(shared))
        if abs(float(differences.mean())) / error <= t_quantile(1 - alpha / (2 * (len(names) - 1)), len(shared) - 1):
            needed[name] = None
            continue
        index = names.index(name)
        if power(MAX_SEEDS)[index] < POWER:
            needed[name] = MAX_SEEDS + 1
            continue
        low, high = 1, 2  # power(low) < POWER <= power(high): doubling, then bisection
        while power(high)[index] < POWER:
            low, high = high, min(2 * high, MAX_SEEDS)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if power(middle)[index] < POWER else (low, middle)
        needed[name] = high
    return needed


def probability_of_improvement(x: list[float], y: list[float], higher_is_better: bool) -> float:
    """P(a run of X scores better than a run of Y), over all n·m pairs, ties counted half."""
    sign = 1 if higher_is_better else -1
    wins = sum((sign * (a - b) > 0) + 0.5 * (a == b) for a in x for b in y)
    return wins / (len(x) * len(y))
