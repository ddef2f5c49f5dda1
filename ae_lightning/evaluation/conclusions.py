"""The report's opening: a few sentences per section, generated from what the suite measured — each headline
metric's best and what is or is not separated from it (``comparison.json``), the pixel baselines, and what the
runs cannot support (one seed, a small test split, failed runs, fit times from runs that shared a machine). Nothing
here is typed in: every number is read from the tables the report prints below it."""

from __future__ import annotations

from typing import Any

from ae_lightning.evaluation.report_tables import HIGHER_IS_BETTER, format_number, format_value
from ae_lightning.evaluation.statistics import ALPHA, Comparison, clearly_above

# How a sentence says what being best at a metric means; a metric not listed is named as it is.
WHAT_BEST_MEANS = {
    "test/mse": "reconstructs clean test images best",
    "test/noisy_psnr": "denoises best",
    "probe/accuracy": "has the most linearly separable codes",
    "test/nll_iw": "has the lowest test NLL",
    "gen/fd_domain": "samples closest to the test images",
    "disentangle/mig": "disentangles best by MIG",
    "anomaly/reconstruction/auroc": "detects anomalies best by its reconstruction error",
    "fit/samples_per_s": "trains fastest",
}


def listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def praised(variant: str, labels: dict[str, str], reasons: dict[str, str] | None) -> str:
    """A variant named where a sentence speaks well of it: a collapsed one with its mark and, beside it, why; one
    with runs that did not finish, with how many — "best" or "above the pixels" must never read as praise of a
    degenerate code, or of the good runs of a variant whose bad ones failed."""
    label = labels.get(variant, variant)
    return f"{label} ({reasons[variant]})" if reasons and variant in reasons else label


def metric_sentence(
    key: str,
    comparison: Comparison,
    table: dict[str, dict[str, Any]],
    labels: dict[str, str] | None = None,
    reasons: dict[str, str] | None = None,
) -> str:
    """One sentence: the best variant, its value, and which variants are (not) separated from it; ``labels``: how
    a variant is named (a collapsed one with its mark), ``reasons``: its caveats (collapsed, runs that did not
    finish), said beside it where it is named best (:func:`praised`)."""
    labels = labels or {}
    best = comparison.best
    best_name = praised(best, labels, reasons)
    summary = table[best][key]
    # sentences read better without exponents: 13850 samples/s, not 1.385e+04
    value = f"{summary['mean']:.0f}" if abs(summary["mean"]) >= 1000 else format_value(summary, key)
    what = WHAT_BEST_MEANS.get(key, f"is best on {key}")
    if comparison.n_seeds < 2:
        direction = "highest" if key in HIGHER_IS_BETTER else "lowest"
        return f"{best_name} has the {direction} `{key}` ({value})."
    if comparison.not_separable or not comparison.separable:  # not shown to be better than every other variant
        direction = "highest" if key in HIGHER_IS_BETTER else "lowest"
        sentence = f"{best_name} has the {direction} mean `{key}` ({value})"
    else:
        sentence = f"{best_name} {what} (`{key}` {value})"
    clauses = []
    if comparison.not_separable:
        verb = "is" if len(comparison.not_separable) == 1 else "are"
        tied = listing([labels.get(v, v) for v in comparison.not_separable])
        clauses.append(f"{tied} {verb} not separated from it with {comparison.n_seeds} seeds")
    if comparison.separable:
        verb = "is" if len(comparison.separable) == 1 else "are"
        rest = "the other" if len(comparison.separable) == 1 else f"the other {len(comparison.separable)}"
        worse = listing([labels.get(v, v) for v in comparison.separable]) if len(comparison.separable) <= 3 else rest
        clauses.append(f"{worse} {verb} worse")
    if clauses:
        sentence += "; " + ", and ".join(clauses)
    return sentence + "."


def baseline_sentence(
    key: str,
    table: dict[str, dict[str, Any]],
    baseline: dict[str, Any] | None,
    labels: dict[str, str] | None = None,
    test_images: int | None = None,
    reasons: dict[str, str] | None = None,
) -> str | None:
    """The codes against the same measurement on raw pixels (one number, no seeds), where the suite computed one:
    "above" or "beats" only for the variants ``clearly_above`` finds — every variant checked, the family-wise error
    held over all of them, and never on less than one test image's share (1/``test_images``); a variant with
    caveats named there with them (:func:`praised`)."""
    labels = labels or {}
    if not baseline:
        return None
    margin = 1 / test_images if test_images else 0.0
    n_seeds = max((row[key]["n"] for row in table.values() if key in row), default=0)
    if key == "probe/accuracy" and "probe/accuracy" in baseline:
        scored = {v: row[key] for v, row in table.items() if key in row}
        best = max(scored, key=lambda v: scored[v]["mean"])
        pixels = baseline["probe/accuracy"]
        above = [praised(v, labels, reasons) for v in clearly_above(scored, pixels, margin)]
        if above:
            return (
                f"{listing(above)}'s codes probe above the raw pixels ({format_number(pixels)}; {ALPHA:.0%} "
                f"family-wise over the {len(scored)} variants, {n_seeds} seeds)."
            )
        if scored[best]["mean"] > pixels:
            why = "one seed is not a test" if n_seeds < 2 else "within chance"
            return (
                f"{praised(best, labels, reasons)}'s mean probe ({format_number(scored[best]['mean'])}) is above the "
                f"raw pixels' ({format_number(pixels)}), {why}: not shown to beat them."
            )
        return (
            f"No code beats the same linear probe on the raw pixels ({format_number(pixels)}; the best code, "
            f"{labels.get(best, best)}'s, reaches {format_number(scored[best]['mean'])})."
        )
    if key == "anomaly/reconstruction/auroc" and "anomaly/pixel_knn/auroc" in baseline:
        scored = {v: row[key] for v, row in table.items() if key in row}
        knn, pca = baseline["anomaly/pixel_knn/auroc"], baseline["anomaly/pca/auroc"]
        baselines = {"the pixel k-NN": knn, "PCA": pca}
        # every variant against both baselines: one family of 2 × variants claims
        beaten = {
            name: clearly_above(scored, score, margin, comparisons=2 * len(scored)) for name, score in baselines.items()
        }
        parts = [f"without learning, the pixel k-NN reaches {format_number(knn)} and PCA {format_number(pca)}"]
        kept = [name for name in baselines if not beaten[name]]
        if kept:
            parts.append(f"no autoencoder is shown to beat {listing(kept)}")
        for variant in scored:
            wins = [name for name in baselines if variant in beaten[name]]
            if wins:
                parts.append(f"{praised(variant, labels, reasons)} beats {listing(wins)}")
        if len(parts) > 1 and any(beaten.values()):
            parts[-1] += f" ({ALPHA:.0%} family-wise over {2 * len(scored)} comparisons, {n_seeds} seeds)"
        return parts[0][0].upper() + parts[0][1:] + "; " + "; ".join(parts[1:]) + "."
    return None


def caveats(
    seeds: list[int], test_images: int | None, small_test_split: int, failed: int, runs: int, shared: bool
) -> list[str]:
    """What these runs cannot support."""
    lines = []
    if len(seeds) < 2:
        lines.append(
            "One seed: no interval and no test — every 'best' below is a pointer, not a finding; run several seeds "
            "(`--seeds 0 1 2 3 4`) to compare."
        )
    else:
        lines.append(
            f"With {len(seeds)} seeds, 'worse' means separated from the best by a paired test on that pair's own "
            f"spread ({ALPHA:.0%} family-wise error for each metric, noisy variants or not); 'not separated' is not "
            "'equal'."
        )
    if test_images is not None and test_images < small_test_split:
        lines.append(f"The test split holds {test_images} images: small differences here are within chance.")
    if failed:
        lines.append(
            f"{failed} of {runs} runs did not finish; each comparison uses the seeds the two variants both finished."
        )
    if shared:
        lines.append("The runs shared the machine (several at a time): their fit times are information, not a ranking.")
    return lines


def opening(
    sections: dict[str, tuple[str, ...]],
    table: dict[str, dict[str, Any]],
    compared: dict[str, Comparison],
    baseline: dict[str, Any] | None,
    caveat_lines: list[str],
    labels: dict[str, str] | None = None,
    test_images: int | None = None,
    reasons: dict[str, str] | None = None,
) -> list[str]:
    """The report's first section: what the runs cannot support, then the sentences of each section with a
    headline metric."""
    lines = ["## In brief", "", " ".join(caveat_lines), ""]
    for section, keys in sections.items():
        sentences = []
        for key in keys:
            # a metric of one variant only (the VAE's NLL beside plain AEs) has no best to speak of
            if key in compared and compared[key].best in table and sum(key in row for row in table.values()) > 1:
                sentences.append(metric_sentence(key, compared[key], table, labels, reasons))
                if (extra := baseline_sentence(key, table, baseline, labels, test_images, reasons)) is not None:
                    sentences.append(extra)
        if sentences:
            lines += [f"**{section}.** " + " ".join(sentences), ""]
    return lines
