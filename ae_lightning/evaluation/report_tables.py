"""The report's numbers: per-seed scores, ``aggregate.json`` (mean, std, 95 % interval, n), ``comparison.json``
(each metric's best and what is separable from it, with family-wise error control; statistics.py), ``summary.csv``
and the markdown tables with their marks."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from ae_lightning.evaluation.anomaly import ANOMALY_KEYS
from ae_lightning.evaluation.anomaly import HIGHER_IS_BETTER as ANOMALY_HIGHER
from ae_lightning.evaluation.anomaly import LOWER_IS_BETTER as ANOMALY_LOWER
from ae_lightning.evaluation.battery import (
    BATTERY_KEYS,
)
from ae_lightning.evaluation.disentanglement import DISENTANGLEMENT_KEYS
from ae_lightning.evaluation.statistics import (
    MAX_SEEDS,
    POWER,
    Comparison,
    compare_with_best,
    probability_of_improvement,
    summarize,
)
from ae_lightning.files import atomic_path

FIT_KEYS = ("fit/seconds", "fit/samples_per_s", "fit/peak_mem_mb")


METRIC_KEYS = BATTERY_KEYS + DISENTANGLEMENT_KEYS + ANOMALY_KEYS + FIT_KEYS


HIGHER_IS_BETTER = {
    "test/psnr",
    "test/ssim",
    "test/noisy_psnr",
    "test/noisy_ssim",
    "probe/accuracy",
    "probe/knn_accuracy",
    "test/elbo",
    "fit/samples_per_s",
    *DISENTANGLEMENT_KEYS,
} | ANOMALY_HIGHER


LOWER_IS_BETTER = {
    "test/mse",
    "test/noisy_mse",
    "test/nll_iw",
    "gen/fd_domain",
    "gen/fid_inception",
    "fit/seconds",
    "fit/peak_mem_mb",
} | ANOMALY_LOWER


def variants_in_order(records: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["variant"] for r in records))


Scores = dict[str, dict[str, dict[int, float]]]  # variant → metric → {seed: value} of the runs that finished


Table = dict[str, dict[str, dict[str, Any]]]  # variant → metric → {mean, std, ci_low, ci_high, n}


def per_seed_scores(records: list[dict[str, Any]]) -> Scores:
    scores: Scores = {}
    for variant in variants_in_order(records):
        done = [r for r in records if r["variant"] == variant and r["status"] == "done"]
        scores[variant] = {}
        for key in METRIC_KEYS:
            values = {
                r["seed"]: float(r["metrics"][key])
                for r in done
                if isinstance(r["metrics"].get(key), (int, float)) and math.isfinite(r["metrics"][key])
            }
            if values:
                scores[variant][key] = values
    return scores


def protocol_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The one-class protocol's runs (each with its ``normal_class``) as one record per (variant, seed): every
    metric the mean over the classes of that seed's runs — the protocol's overall score, on which seeds are then
    compared like any suite's runs. A (variant, seed) is done only when its run of every class is done: a mean over
    fewer classes would compare different tasks."""
    merged = []
    for variant in variants_in_order(records):
        runs_of_variant = [r for r in records if r["variant"] == variant]
        for seed in dict.fromkeys(r["seed"] for r in runs_of_variant):
            runs = [r for r in runs_of_variant if r["seed"] == seed]
            missing = [r["normal_class"] for r in runs if r["status"] != "done"]
            metrics = {}
            if not missing:
                keys = set.intersection(*(set(r["metrics"]) for r in runs))
                metrics = {
                    key: sum(float(r["metrics"][key]) for r in runs) / len(runs)
                    for key in sorted(keys)
                    if all(isinstance(r["metrics"][key], (int, float)) for r in runs)
                }
            merged.append(
                {
                    "variant": variant,
                    "model": runs[0]["model"],
                    "seed": seed,
                    "status": "failed" if missing else "done",
                    "error": f"the runs of normal class(es) {missing} did not finish" if missing else None,
                    "metrics": metrics,
                    "run_dir": runs[0]["run_dir"],
                }
            )
    return merged


def aggregate(scores: Scores) -> Table:
    """variant → metric → mean, std, 95 % Student-t interval and n over seeds (``aggregate.json``)."""
    return {
        variant: {key: summarize(list(values.values())) for key, values in row.items()}
        for variant, row in scores.items()
    }


def comparisons(scores: Scores) -> dict[str, Comparison]:
    """metric → the best variant and those separable from it (``comparison.json``; the report's marks): every
    metric with a direction that at least one variant scored."""
    result = {}
    for key in METRIC_KEYS:
        if key not in HIGHER_IS_BETTER | LOWER_IS_BETTER:
            continue
        scored = {variant: row[key] for variant, row in scores.items() if key in row}
        if scored:
            result[key] = compare_with_best(scored, key in HIGHER_IS_BETTER)
    return result


def write_comparison_json(out: Path, compared: dict[str, Comparison]) -> None:
    with atomic_path(out / "comparison.json") as partial:
        partial.write_text(json.dumps({key: c.as_dict() for key, c in compared.items()}, indent=2))


def format_number(value: float, significant: int = 4) -> str:
    """``16`` for a whole number (active units, not ``16.0000``), else ``significant`` significant digits."""
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.{significant}g}"


def metric_range(key: str) -> tuple[float, float] | None:
    """The values a metric can take, where it is bounded: accuracies, detection metrics and rates, disentanglement
    scores and SSIM."""
    if key.startswith(("probe/", "anomaly/", "disentangle/")) or key in ("test/ssim", "test/noisy_ssim"):
        return (-1.0, 1.0) if key.endswith("ssim") else (0.0, 1.0)
    return None


def format_value(summary: dict[str, Any], key: str | None = None) -> str:
    """``mean ± half-width of the 95 % interval``; the mean alone for one seed. For a bounded metric whose interval
    reaches past its range (few seeds, a wide spread), ``mean (low to high)`` with the interval cut at the range: the
    metric cannot lie outside it, so the cut interval covers as often as the whole one."""
    if summary["ci_high"] is None:
        return format_number(summary["mean"])
    bounds = metric_range(key) if key else None
    if bounds is not None and (summary["ci_low"] < bounds[0] or summary["ci_high"] > bounds[1]):
        low, high = max(summary["ci_low"], bounds[0]), min(summary["ci_high"], bounds[1])
        return f"{format_number(summary['mean'])} ({format_number(low, 2)} to {format_number(high, 2)})"
    return f"{format_number(summary['mean'])} ± {format_number(summary['ci_high'] - summary['mean'], 2)}"


def markdown_table(
    table: Table,
    compared: dict[str, Comparison],
    keys: list[str],
    headers: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """Variant × metric, mean ± the interval's half-width; the best in **bold** and ≈ on every variant not
    separated from it, both as ``comparison.json`` says (no marks where only one variant has the metric).
    ``headers``: column names other than the keys themselves; ``labels``: a row's name other than the variant's
    (a collapsed variant's mark)."""
    lines = ["| variant | " + " | ".join(headers or keys) + " |", "|---|" + "---|" * len(keys)]
    labels = labels or {}
    for variant, row in table.items():
        cells = []
        for key in keys:
            if key not in row:
                cells.append("–")
                continue
            cells.append(marked(format_value(row[key], key), variant, compared.get(key)))
        lines.append(f"| {labels.get(variant, variant)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def marked(text: str, variant: str, comparison: Comparison | None) -> str:
    """A cell's text with its mark: **bold** for the best, ≈ for a variant not separated from it."""
    if comparison is not None and comparison.separable + comparison.not_separable:
        if comparison.best == variant:
            return f"**{text}**"
        if variant in comparison.not_separable and comparison.n_seeds > 1:
            return text + " ≈"
    return text


def unseparated_line(key: str, comparison: Comparison) -> str | None:
    """For a metric whose best is not separated from some variants: how many seeds would separate each estimated
    difference at 80 % power — the next decision a researcher faces — and which gaps are inside their own noise."""
    if comparison.n_seeds < 2 or not comparison.not_separable:
        return None
    counted = [v for v in comparison.not_separable if comparison.seeds_for_power.get(v) is not None]
    within = [v for v in comparison.not_separable if comparison.seeds_for_power.get(v) is None]

    def needed(variant: str) -> str:
        seeds = comparison.seeds_for_power[variant]
        return f"{variant} > {MAX_SEEDS}" if seeds > MAX_SEEDS else f"{variant} ~{seeds}"

    line = (
        f"`{key}`: {comparison.best} best; not separated from it with {comparison.n_seeds} seeds: "
        f"{', '.join(comparison.not_separable)}."
    )
    if counted:
        line += (
            f" Seeds that would separate each estimated difference at {POWER:.0%} power (simulated for this comparison,"
            f" the best re-selected): {', '.join(needed(v) for v in counted)} (optimistic: a gap from a best picked "
            "for looking best runs large)."
        )
    if within:
        line += (
            f" No difference estimated for {', '.join(within)}: each gap is inside its own interval (no seed count to "
            "plan for)."
        )
    return line


def improvement_table(scores: Scores, key: str) -> str | None:
    """P(row variant scores better than column variant) on ``key``, over all pairs of their runs."""
    names = [v for v, row in scores.items() if key in row]
    if len(names) < 2 or all(len(scores[v][key]) < 2 for v in names):
        return None
    higher = key in HIGHER_IS_BETTER
    lines = [
        f"P(row better than column) on `{key}` ({'higher' if higher else 'lower'} is better):",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for x in names:
        x_values = list(scores[x][key].values())
        cells = [
            "–" if x == y else f"{probability_of_improvement(x_values, list(scores[y][key].values()), higher):.2f}"
            for y in names
        ]
        lines.append(f"| {x} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SUMMARY_STATISTICS = ("mean", "std", "ci_low", "ci_high", "n")


def write_summary_csv(
    path: Path, records: list[dict[str, Any]], table: Table, class_tables: dict[int, Table] | None = None
) -> None:
    """One row per run: its metrics, then its variant's statistics over seeds (``<metric>:mean`` … ``:n``); under
    the one-class protocol (``class_tables``) a ``normal_class`` column and the statistics of the run's class."""
    statistic_columns = [f"{key}:{stat}" for key in METRIC_KEYS for stat in SUMMARY_STATISTICS]
    protocol = ["normal_class"] if class_tables is not None else []
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "model", *protocol, "seed", "status", "error", *METRIC_KEYS, *statistic_columns])
        for r in records:
            of_run = table if class_tables is None else class_tables.get(r["normal_class"], {})
            row = of_run.get(r["variant"], {})
            statistics_cells = [
                "" if row.get(key, {}).get(stat) is None else row[key][stat]
                for key in METRIC_KEYS
                for stat in SUMMARY_STATISTICS
            ]
            writer.writerow(
                [
                    r["variant"],
                    r["model"],
                    *[r[key] for key in protocol],
                    r["seed"],
                    r["status"],
                    r["error"] or "",
                    *[r["metrics"].get(k, "") for k in METRIC_KEYS],
                    *statistics_cells,
                ]
            )
