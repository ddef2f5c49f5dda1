"""The local report of a suite, written from its runs' records: ``report.md`` — its header (data, seeds, how to
read the marks, the pixel baseline), the tuning section, a section per kind of metric (tables with intervals and
the family-wise marks of ``comparison.json``, seeds needed, probabilities of improvement), the runs that failed and
the figures — plus the W&B summary run with every variant's battery as a table. The numbers are made in
``report_tables.py``, the PNGs in ``report_figures.py``."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from ae_lightning.data.sources import CLASS_NAMES, folder_classes
from ae_lightning.evaluation.anomaly import ANOMALY_KEYS
from ae_lightning.evaluation.anomaly import SCORES as ANOMALY_SCORE_NAMES
from ae_lightning.evaluation.baseline import PCA_COMPONENTS
from ae_lightning.evaluation.battery import (
    GENERATIVE_KEYS,
    RECONSTRUCTION_KEYS,
    SMALL_TEST_SPLIT,
    STRUCTURE_KEYS,
    EvaluationSettings,
)
from ae_lightning.evaluation.conclusions import caveats, opening
from ae_lightning.evaluation.disentanglement import DISENTANGLEMENT_KEYS
from ae_lightning.evaluation.report_figures import tuning_figure, write_figures
from ae_lightning.evaluation.report_tables import (
    FIT_KEYS,
    METRIC_KEYS,
    aggregate,
    comparisons,
    format_number,
    format_value,
    improvement_table,
    markdown_table,
    marked,
    per_seed_scores,
    protocol_records,
    unseparated_line,
    write_comparison_json,
    write_summary_csv,
)
from ae_lightning.evaluation.statistics import ALPHA, CONFIDENCE
from ae_lightning.files import atomic_path
from ae_lightning.messages import warn
from ae_lightning.variants import VARIANTS

# test/jacobian_fro, test/code_sparsity, test/active_units and the codebook's usage and perplexity describe a model;
# no value of them is "best".


def likelihood_protocol(suite: dict[str, Any]) -> str:
    """How the VAE's nats were measured, stated next to them: binarisation, likelihood, k."""
    vaes = [v for v in suite["variants"] if hasattr(VARIANTS.get(v["model"]), "posterior")]
    if not vaes:
        return ""
    k = suite["evaluation"].get("iw_samples", EvaluationSettings.iw_samples)
    parts = []
    for variant in vaes:
        binarize = variant["data"].get("binarize", "none")  # each variant's data complete (with_variant_data)
        likelihood = (variant.get("args") or {}).get("likelihood", "bernoulli")
        if likelihood == "gaussian":
            what = "Gaussian likelihood on grey-level images (not comparable with binarised-data nats)"
        elif binarize == "none":
            what = "Bernoulli likelihood on grey-level images (not binarised: not comparable with papers' nats)"
        else:
            what = f"Bernoulli likelihood on {binarize}-binarised images"
        parts.append(f"{variant['name']}: {what}")
    return f"VAE ELBO and IW-NLL (k = {k}) in nats per test image — " + "; ".join(parts) + "."


def counted(records: list[dict[str, Any]], key: str, fallback: int | None) -> str:
    """How many images the runs' metrics used (``eval/<count>`` in their results; ``fallback``, the setting, for
    runs from before it was recorded): "200", or "180 to 200" where the runs differ."""
    counts = sorted({int(r["metrics"][key]) for r in records if key in r["metrics"]})
    if not counts:
        return str(fallback)
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"


def generative_protocol(suite: dict[str, Any], records: list[dict[str, Any]]) -> str:
    setting = suite["evaluation"].get("gen_samples", EvaluationSettings.gen_samples)
    samples = counted([r for r in records if "gen/fd_domain" in r["metrics"]], "eval/gen_samples", setting)
    accuracies = {r["metrics"]["gen/classifier_accuracy"] for r in records if "gen/classifier_accuracy" in r["metrics"]}
    accuracy = f" (its test accuracy {min(accuracies):.4g})" if accuracies else ""
    return (
        f"Fréchet distances between {samples} prior samples and {samples} test images (they move with the number "
        f"of samples: compare at equal numbers). gen/fd_domain: in the 128-d features of a classifier trained by "
        f"ae-lightning on this dataset's training split{accuracy}; gen/fid_inception: torchmetrics' Inception FID, "
        "where its weights could be had."
    )


def settings_knn(suite: dict[str, Any]) -> int:
    return suite["evaluation"].get("knn_neighbours", EvaluationSettings.knn_neighbours)


HEADLINE_METRICS = {  # section: the metrics whose pairwise probability of improvement the report tabulates
    "Reconstruction, denoising, linear probe": ("test/mse", "test/noisy_psnr", "probe/accuracy"),
    "Structure of the code": ("test/nll_iw",),
    "Generative quality": ("gen/fd_domain",),
    "Disentanglement": ("disentangle/mig",),
    "Anomaly detection": ("anomaly/reconstruction/auroc",),
    "Cost of the fit": ("fit/samples_per_s",),
}
SECTION_KEYS = {
    "Reconstruction, denoising, linear probe": RECONSTRUCTION_KEYS,
    "Structure of the code": STRUCTURE_KEYS,
    "Generative quality": GENERATIVE_KEYS,
    "Disentanglement": DISENTANGLEMENT_KEYS,
    "Anomaly detection": ANOMALY_KEYS,
    "Cost of the fit": FIT_KEYS,
}


def pixel_probe_baseline(out: Path) -> dict[str, Any] | None:
    """The pixel-space probes the runner wrote (``pixel_baseline.json``; see evaluation/baseline.py), if any."""
    path = out / "pixel_baseline.json"
    return json.loads(path.read_text()) if path.is_file() else None


def tuning_section(out: Path) -> list[str]:
    """The report's tuning section from OUT/tuning.json (written by `ae-lightning tune`), with a PNG per variant."""
    path = out / "tuning.json"
    if not path.is_file():
        return []
    tuning = json.loads(path.read_text())
    budget = tuning["budget"]
    lines = [
        "## Tuning",
        "",
        f"Every variant tuned at the same compute: {budget['budget_epochs']} training epochs, in trials of "
        f"{budget['epochs']} epoch{'s' if budget['epochs'] != 1 else ''} (pruned trials fund further trials); "
        f"sampler: {tuning['sampler']['described']}; {tuning['pruner']['name']} pruner (no trial pruned in its "
        f"first {tuning['pruner']['warmup_epochs']} epoch(s)). Each trial's value is the best epoch's value of its "
        "objective on the validation split — the epoch whose checkpoint the final runs keep, as they select on the "
        "same objective; the test split was not read. Trials trained with seeds of their own, none of them a final "
        "seed. The best configuration of each variant was then trained over the seeds below.",
        "",
        "| variant | objective | best value | best parameters | trials | pruned | failed | epochs trained |",
        "|---|---|---|---|---|---|---|---|",
    ]
    figures = []
    for name, entry in tuning["variants"].items():
        best, objective = entry["best_value"], entry["objective"]
        params = ", ".join(
            f"{k} = {format_number(v) if isinstance(v, float) else v}" for k, v in (entry["best_params"] or {}).items()
        )
        arrow = "↓" if objective["direction"] == "minimize" else "↑"
        lines.append(
            f"| {name} | {objective['metric']} {arrow} | {'–' if best is None else format_number(best)} | "
            f"{params or 'not tuned'} | {entry['trials']} | {entry['pruned']} | {entry['failed']} | "
            f"{entry.get('epochs_trained', '–')} |"
        )
        if entry.get("history"):
            figure = f"tuning_{name}.png"
            tuning_figure(name, entry, objective, out / figure, budget.get("budget_epochs"))
            figures.append(figure)
    return lines + [""] + [f"![{f}]({f})" for f in figures] + [""]


def epochs_text(epochs: int | None) -> str:
    return "? epochs" if epochs is None else f"{epochs} epoch{'' if epochs == 1 else 's'}"


COLLAPSE_MARK = "†"


def collapsed_runs(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """variant → its finished runs whose code collapsed (``collapse`` in their result: the battery's reason)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if r["status"] == "done" and r.get("collapse"):
            found.setdefault(r["variant"], []).append(r)
    return found


def run_counts(runs: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """variant → (runs finished, runs the suite ran), in the suite's order."""
    counts: dict[str, tuple[int, int]] = {}
    for r in runs:
        finished, ran = counts.get(r["variant"], (0, 0))
        counts[r["variant"]] = (finished + (r["status"] == "done"), ran + 1)
    return counts


def variant_caveats(runs: list[dict[str, Any]], collapsed: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """variant → what its numbers rest on, where that is not every run healthy: "collapsed on n of m runs: why",
    "k of m runs did not finish: its numbers are the other j's" — said beside it wherever a sentence names it
    best, above the pixels or beating a baseline (a variant whose bad runs fail would otherwise look best on the
    good ones)."""
    caveats: dict[str, str] = {}
    for variant, (finished, ran) in run_counts(runs).items():
        parts = []
        if finished < ran:
            parts.append(f"{ran - finished} of {ran} runs did not finish: its numbers are the other {finished}'s")
        if variant in collapsed:
            bad = collapsed[variant]
            reason = sorted({r["collapse"] for r in bad})[0]
            parts.append(f"collapsed on {len(bad)} of {finished} run{'s' if finished != 1 else ''}: {reason}")
        if parts:
            caveats[variant] = "; ".join(parts)
    return caveats


def row_labels(runs: list[dict[str, Any]], collapsed: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """A table row's name: the collapse mark, and on how many runs its numbers rest where that is fewer than the
    suite ran (failed runs count against their variant): ``VAE † (2 of 3 runs)``."""
    labels = {}
    for variant, (finished, ran) in run_counts(runs).items():
        label = variant + (f" {COLLAPSE_MARK}" if variant in collapsed else "")
        label += f" ({finished} of {ran} runs)" if finished < ran else ""
        if label != variant:
            labels[variant] = label
    return labels


def collapse_lines(runs: list[dict[str, Any]], collapsed: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One sentence per variant with collapsed runs: on how many of its runs, and why (the first run's reason)."""
    lines, counts = [], run_counts(runs)
    for variant, bad in collapsed.items():
        total = counts[variant][0]
        reasons = sorted({r["collapse"] for r in bad})
        lines.append(
            f"{variant} {COLLAPSE_MARK} collapsed on {len(bad)} of {total} run{'s' if total != 1 else ''}: "
            + "; ".join(reasons[:2])
            + " — its scores are those of a degenerate code, not of the method (see 'When a variant looks bad' in "
            "the README)."
        )
    return lines


def anomaly_tables(table, compared, labels=None, fpr: float = 0.01) -> list[str]:
    lines = []
    titles = {
        "auroc": "AUROC ↑",
        "auprc": "AUPRC (anomalies positive) ↑",
        "fpr_at_95tpr": "FPR at 95 % TPR ↓",
        "pixel_auroc": "Pixel AUROC, per-pixel reconstruction error against the defect masks ↑",
        "pixel_aupro": "Pixel AUPRO: the mean overlap with each defect region up to a 30 % pixel false-positive rate, "
        "every region counting alike (MVTec AD, anomalib) ↑",
        "at_threshold/fpr": "Realised false-positive rate on the test split at the threshold set on the normal "
        f"calibration images for a target of {fpr:g} (not ranked: it should match the target)",
        "at_threshold/tpr": "Recall (anomalies flagged) at that threshold ↑",
        "at_threshold/precision": "Precision (flagged images that are anomalies) at that threshold ↑",
    }
    for metric, title in titles.items():
        scores = [s for s in ANOMALY_SCORE_NAMES if any(f"anomaly/{s}/{metric}" in row for row in table.values())]
        if not scores:
            continue
        keys = [f"anomaly/{score}/{metric}" for score in scores]
        lines += [
            f"{title} (`anomaly/<score>/{metric}`):",
            "",
            markdown_table(table, compared, keys, scores, labels),
            "",
        ]
    return lines


def not_finite_results(runs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """{(metric, variant): "seeds [..]" (and classes)} for every battery metric a finished run recorded as NaN or
    infinite: left out of the statistics, so the report says where."""
    found: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        if run["status"] != "done":
            continue
        for key in METRIC_KEYS:
            value = run["metrics"].get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                where = f"seed {run['seed']}" + (f" class {run['normal_class']}" if "normal_class" in run else "")
                found.setdefault((key, run["variant"]), []).append(where)
    return {pair: ", ".join(places) for pair, places in sorted(found.items())}


def threshold_lines(records: list[dict[str, Any]], fpr: float) -> list[str]:
    """What the thresholds rest on: how many calibration images, and what they can promise at that count."""
    counts = [r["metrics"]["eval/calibration_images"] for r in records if "eval/calibration_images" in r["metrics"]]
    if not counts:
        return [
            "No thresholds: the runs had no calibration images (data.calibration_size 0, or no validation split).",
            "",
        ]
    fewest = int(min(counts))
    needed = math.ceil(1 / fpr - 1 - 1e-9)
    line = (
        f"Thresholds: each run's own, set on its {fewest}{'+' if max(counts) > fewest else ''} normal calibration "
        f"images (held out of validation: never trained on, never the test split) for a target false-positive rate "
        f"of {fpr:g}, as the conformal quantile (`ae-lightning score` flags with it)."
    )
    if fewest < needed:
        line += (
            f" {fewest} calibration images are too few for that target (it needs {needed}): the largest calibration "
            f"score is the threshold, which promises only 1/{fewest + 1} = {1 / (fewest + 1):.3g}. Raise "
            "data.val_size or data.calibration_size."
        )
    return [line, ""]


def class_names_of(data: dict[str, Any]) -> list[str] | None:
    """The names of the data's labels: the dataset's classes, or a folder's class sub-folders in sorted order."""
    if data.get("name") == "folder":
        try:
            return folder_classes(data.get("root", "data")) or None
        except Exception:  # the folder is gone since the runs: numbers, then
            return None
    return CLASS_NAMES.get(data.get("name", "fashion_mnist"))


def class_label(data: dict[str, Any], normal_class: int) -> str:
    names = class_names_of(data)
    return f"{normal_class} ({names[normal_class]})" if names and normal_class < len(names) else str(normal_class)


def per_class_section(out: Path, suite: dict[str, Any], runs: list[dict[str, Any]]) -> tuple[list[str], dict]:
    """The one-class protocol's per-class tables (AUROC of each score: a column per normal class, mean ± interval
    over seeds, marks from the comparison within that class) and ``per_class.json`` (each class's aggregate and
    comparison); returns the lines and each class's aggregate table."""
    tables, compared, written = {}, {}, {}
    for normal_class in suite["one_class"]:
        scores = per_seed_scores([r for r in runs if r.get("normal_class") == normal_class])
        tables[normal_class], compared[normal_class] = aggregate(scores), comparisons(scores)
        written[str(normal_class)] = {
            "aggregate": tables[normal_class],
            "comparison": {key: c.as_dict() for key, c in compared[normal_class].items()},
        }
    with atomic_path(out / "per_class.json") as partial:
        partial.write_text(json.dumps(written, indent=2))
    headers = [class_label(suite["data"], c) for c in suite["one_class"]]
    lines = [
        "## Anomaly detection per normal class",
        "",
        "Each column: that class normal, every other class anomalous; mean ± interval over seeds, marks from the "
        "comparison within the class (`per_class.json`).",
        "",
    ]
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    labels = row_labels(runs, collapsed_runs(runs))
    for score in ANOMALY_SCORE_NAMES:
        key = f"anomaly/{score}/auroc"
        if not any(key in row for table in tables.values() for row in table.values()):
            continue
        lines += [
            f"AUROC of `{score}` (`{key}`) ↑:",
            "",
            "| variant | " + " | ".join(headers) + " |",
            "|---|" + "---|" * len(headers),
        ]
        for variant in variants:
            cells = [
                marked(format_value(tables[c][variant][key], key), variant, compared[c].get(key))
                if key in tables[c].get(variant, {})
                else "–"
                for c in suite["one_class"]
            ]
            lines.append(f"| {labels.get(variant, variant)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines, tables


def write_report(out: Path, suite: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """report.md and its tables, figures and JSON from the runs' ``records``; under the one-class protocol
    (``suite['one_class']``) each (variant, seed)'s runs are first averaged over the classes (``protocol_records``)
    and a per-class section follows."""
    runs, classes = records, suite.get("one_class")
    if classes:
        records = protocol_records(runs)
        class_lines, class_tables = per_class_section(out, suite, runs)
    scores = per_seed_scores(records)
    table = aggregate(scores)
    with atomic_path(out / "aggregate.json") as partial:
        partial.write_text(json.dumps(table, indent=2))
    compared = comparisons(scores)
    # Costs that say nothing about the variants are not ranked: on the CPU the peak memory is the process's RSS
    # (about the same for every variant), and fit times of runs that shared a device depend on their neighbours.
    on_cpu = all(str(r.get("trained_on") or "").startswith("cpu") for r in runs if r["status"] == "done")
    shared = any(r["metrics"].get("fit/runs_sharing_device", 1) > 1 for r in runs if r["status"] == "done")
    unranked = (["fit/peak_mem_mb"] if on_cpu else []) + (["fit/seconds", "fit/samples_per_s"] if shared else [])
    for key in unranked:
        compared.pop(key, None)
    write_comparison_json(out, compared)
    write_summary_csv(out / "summary.csv", runs, table, class_tables if classes else None)
    seeds = sorted({r["seed"] for r in records})
    noise = suite["evaluation"]["noise"]
    if classes:  # examples and curves: each variant's runs of the first class
        scope = f", normal class {class_label(suite['data'], classes[0])}"
        figures = write_figures(out, [r for r in runs if r["normal_class"] == classes[0]], table, scope, noise)
    else:
        figures = write_figures(out, records, table, noise=noise)
    if len(seeds) > 1:
        statistics_note = (
            f"Mean ± half-width of the {CONFIDENCE:.0%} confidence interval over seeds (Student's t); best mean per "
            "column in **bold**; ≈ marks a variant *not separated* from the best with these seeds — not shown to be "
            "equal, only not shown to differ. Unmarked variants are separable from the best, with a "
            f"{ALPHA:.0%} family-wise error rate for each column's whole statement, whether or not the variants are "
            "equally noisy (each variant's per-seed differences from the best on the seeds both finished, a paired t "
            "on that pair's own spread, Bonferroni over every ordered pair; `comparison.json` holds each column's "
            "verdict). With few seeds only large differences separate: the lines under a table say how many seeds "
            "would separate the rest."
        )
    else:
        statistics_note = (
            "One seed: no intervals and no significance tests — a single seed cannot separate variants; "
            "best per column in **bold** only as a pointer. Run several seeds (`--seeds 0 1 2 3 4`) to compare."
        )
    baseline = pixel_probe_baseline(out)
    headlines = {
        section: keys
        for section, keys in HEADLINE_METRICS.items()
        if section != "Cost of the fit" or "fit/samples_per_s" not in unranked
    }
    failed = [r for r in runs if r["status"] != "done"]
    not_finite = not_finite_results(runs)
    collapsed = collapsed_runs(runs)
    caveats_of = variant_caveats(runs, collapsed)
    marks = {variant: f"{variant} {COLLAPSE_MARK}" for variant in collapsed}  # sentences say the caveat beside it
    labels = row_labels(runs, collapsed)
    test_images = counted(records, "eval/test_images", None)  # as the report prints it: "200", "180 to 200"
    # the smallest test split any run used, as a number (None for runs from before it was recorded)
    smallest_test = min((int(r["metrics"]["eval/test_images"]) for r in records if "eval/test_images" in r["metrics"]),
                        default=None)  # fmt: skip
    caveat_lines = collapse_lines(runs, collapsed) + caveats(
        seeds,
        smallest_test,
        SMALL_TEST_SPLIT,
        len(failed),
        len(runs),
        shared,
    )
    if not_finite:
        caveat_lines.append(
            f"{sum(len(seeds) for seeds in not_finite.values())} results of finished runs are not finite (NaN or "
            "infinite) and are left out of the statistics: listed at the end, under 'Results that are not finite'."
        )
    lines = [
        f"# Suite `{suite['name']}`",
        "",
        *opening(headlines, table, compared, baseline, caveat_lines, marks, smallest_test, caveats_of),
        f"Data: {suite['data'].get('name', 'fashion_mnist')}; seeds {seeds}; "
        f"{epochs_text(suite['trainer'].get('max_epochs'))}; evaluation corruption {noise['kind']} {noise['level']}. "
        f"{statistics_note} {likelihood_protocol(suite)}",
        "",
    ]
    if smallest_test is not None and smallest_test < SMALL_TEST_SPLIT:
        lines += [
            f"**Small test split: {test_images} images.** Every score here moves by chance from one test split of "
            "this size to another, beyond what the intervals over seeds show (they share the split): treat "
            "small differences as unresolved.",
            "",
        ]
    skipped = [r for r in records if "eval/gen_skipped_images" in r["metrics"]]
    if skipped:
        skipped = counted(skipped, "eval/gen_skipped_images", None)
        floor = suite["evaluation"].get("gen_min_images", EvaluationSettings.gen_min_images)
        lines += [
            f"No generative quality: Fréchet distances from {skipped} test images (fewer than "
            f"evaluation.gen_min_images={floor}) would measure their own bias, not the models; "
            "`evaluation.gen_min_images: 0` computes them anyway.",
            "",
        ]
    too_few = [r for r in records if "eval/probe_skipped_min_class" in r["metrics"]]
    if too_few:
        fewest = int(min(r["metrics"]["eval/probe_skipped_min_class"] for r in too_few))
        floor = suite["evaluation"].get("probe_min_per_class", EvaluationSettings.probe_min_per_class)
        lines += [
            f"Linear and k-NN probes skipped: the rarest class has {fewest} training images, fewer than "
            f"evaluation.probe_min_per_class={floor} (a probe fit on so few examples measures which were drawn, not "
            "the code); `evaluation.probe_min_per_class: 0` computes them anyway.",
            "",
        ]
    normal = suite["data"].get("normal_classes")
    if classes:
        lines += [
            f"Anomaly detection, the one-class protocol (Ruff et al. 2018) over classes {classes}: each class in turn "
            "is the only normal class — training and validation saw only it, the test split holds every class, the "
            "others as anomalies — one run per variant, class and seed. Outside the per-class section every cell "
            "is first averaged over the classes within a seed (the protocol's overall score), then over seeds; the "
            "marks compare those per-seed means. Linear and k-NN probes skipped (one-class training data).",
            "",
        ]
    elif suite["data"].get("name") == "mvtec":
        lines += [
            f"Anomaly detection on an MVTec AD folder ({suite['data'].get('root')}): trained and validated on "
            "train/good only; the test split's good images are normal, every defect folder's are anomalies. Pixel "
            "AUROC where ground_truth masks mark the defects. No class probes (one-class training data).",
            "",
        ]
    elif normal is not None:
        lines += [
            f"Anomaly detection: normal classes {normal}; training and validation saw only them, the test split holds "
            "every class, the others as anomalies. Linear and k-NN probes skipped (one-class training data).",
            "",
        ]
    elif table and not too_few and not any("probe/accuracy" in row for row in table.values()):
        lines += ["Linear and k-NN probes skipped: the data has no labels.", ""]
    if baseline and "error" in baseline:
        lines += [f"Probes on raw pixels: not computed ({baseline['error']}).", ""]
    elif baseline and "probe/accuracy" in baseline:
        lines += [
            f"Probes on raw pixels, for comparison with the codes' (same probes, same images): linear "
            f"{baseline['probe/accuracy']:.4g} (L2 {baseline['probe/l2']:g}), {settings_knn(suite)}-NN "
            f"{baseline['probe/knn_accuracy']:.4g}.",
            "",
        ]
    if baseline and "anomaly/pca/auroc" in baseline:
        lines += [
            f"Anomaly detection without learning, same split{', mean over the classes' if classes else ''}: "
            "k-NN distance in pixel space AUROC "
            f"{baseline['anomaly/pixel_knn/auroc']:.4g}, PCA ({PCA_COMPONENTS} components) reconstruction error AUROC "
            f"{baseline['anomaly/pca/auroc']:.4g}.",
            "",
        ]
    lines += tuning_section(out)
    sections = list(SECTION_KEYS)
    if any(key in row for key in ANOMALY_KEYS for row in table.values()):  # a detection suite: its task first
        sections.insert(0, sections.pop(sections.index("Anomaly detection")))
    for section in sections:
        keys = SECTION_KEYS[section]
        if not any(key in row for key in keys for row in table.values()):
            continue  # e.g. no variant samples: no generative section
        if section == "Anomaly detection":  # one table per detection metric, a column per score
            title = f"## {section}" + (f", over the {len(classes)} normal classes" if classes else "")
            fpr = suite["evaluation"].get("anomaly_fpr", EvaluationSettings.anomaly_fpr)
            lines += [title, ""] + anomaly_tables(table, compared, labels, fpr)
            lines += threshold_lines(records, fpr)
        else:
            present = [key for key in keys if any(key in row for row in table.values())]  # no empty columns
            lines += [f"## {section}", "", markdown_table(table, compared, present, labels=labels), ""]
        unseparated = [
            line
            for key in HEADLINE_METRICS[section]
            if key in compared and (line := unseparated_line(key, compared[key])) is not None
        ]
        finished = sorted({r["seed"] for r in records if r["status"] == "done"})
        fewer = {
            k: ", ".join(
                f"{variant} {count}" for variant, count in compared[k].pair_seeds.items() if count < len(finished)
            )
            for k in keys
            if k in compared and any(count < len(finished) for count in compared[k].pair_seeds.values())
        }
        if fewer:
            unseparated.append(
                f"Marks rest on the seeds each variant shares with the best (a metric not finite on a run leaves that "
                f"seed out), fewer than the suite's {len(finished)} for: "
                + "; ".join(f"`{k}` {pairs}" for k, pairs in fewer.items())
                + ". The cells average all of a variant's finite seeds."
            )
        if unseparated:
            lines += ["\n".join(f"- {line}" for line in unseparated), ""]
        if section == "Generative quality":
            lines += [generative_protocol(suite, records), ""]
        if section == "Cost of the fit" and unranked:
            why = []
            if "fit/peak_mem_mb" in unranked:
                why.append("peak memory is the training process's RSS on the CPU (much the same for every variant)")
            if "fit/seconds" in unranked:
                why.append("the runs shared the machine (several at once), so their times depend on each other")
            lines += ["Not ranked: " + "; ".join(why) + ".", ""]
        if section == "Disentanglement":
            lines += [
                "The test codes against the data's known generative factors: MIG (Chen et al. 2018; each unit in 20 "
                "bins) and DCI (Eastwood & Williams 2018, as disentanglement_lib computes it: a unit's importance for "
                "a factor is its share of boosted regression stumps fit on half the test codes; completeness "
                "importance-weighted). Disentanglement and completeness: 1 = each factor in one unit of its own, near "
                "0 = factors spread over units; informativeness: the factors' explained variance on the other half "
                "(a random code scores ~0 there, so its D and C mean nothing).",
                "",
            ]
        for key in HEADLINE_METRICS[section]:
            if key in unranked:  # not ranked here: no probabilities of "better" either
                continue
            improvement = improvement_table(scores, key)
            if improvement:
                lines += [improvement, ""]
        if section == "Anomaly detection" and classes:
            lines += class_lines
    if failed:
        lines += ["## Runs that did not finish", ""]
        lines += [
            f"- {r['variant']}{' class ' + str(r['normal_class']) if 'normal_class' in r else ''} seed {r['seed']}: "
            f"{r['status']}: {r['error']}"
            for r in failed
        ] + [""]
    if not_finite:
        lines += ["## Results that are not finite", ""]
        lines += [
            "Each left out of its metric's statistics (a cell averages the variant's finite seeds; a mark rests on "
            "the seeds both variants of a pair have finite) — a diverged model, or nothing to compute (a precision "
            "with nothing flagged):",
            "",
        ]
        lines += [f"- `{key}`: {variant} {where}" for (key, variant), where in not_finite.items()] + [""]
    lines += [f"![{name}]({name})" for name in figures]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def write_wandb_summary(out: Path, suite: dict[str, Any], suite_id: str, records: list[dict[str, Any]]) -> None:
    """One W&B run of job_type 'summary' in the suite's group: every run's battery as a table, and the figures."""
    if suite["wandb"]["mode"] == "disabled":
        return
    try:
        import wandb

        summary_id = f"{suite_id}-summary".replace("/", "-")[-64:]
        # A re-run replaces the summary run instead of adding a second offline copy for `wandb sync` to upload.
        for earlier in (out / "wandb").glob(f"offline-run-*-{summary_id}"):
            shutil.rmtree(earlier, ignore_errors=True)
        run = wandb.init(
            project=suite["wandb"]["project"],
            entity=suite["wandb"].get("entity"),
            group=suite_id,
            name="summary",
            job_type="summary",
            mode=suite["wandb"]["mode"],
            dir=str(Path(out).resolve()),  # absolute, as a run's (suite/run.py: make_wandb_logger)
            id=summary_id,
            resume="allow",
            config={"suite": suite},
            tags=[suite["name"], "summary"],
            reinit="finish_previous",
        )
        protocol = ["normal_class"] if suite.get("one_class") else []  # a row per run, each class's its own
        columns = ["variant", "model", *protocol, "seed", "status", "collapse", *METRIC_KEYS]
        rows = [
            [
                r["variant"],
                r["model"],
                *[r[key] for key in protocol],
                r["seed"],
                r["status"],
                r.get("collapse"),
                *[r["metrics"].get(k) for k in METRIC_KEYS],
            ]
            for r in records
        ]
        images = {f"report/{p.stem}": wandb.Image(str(p)) for p in sorted(out.glob("*.png"))}
        run.log({"battery": wandb.Table(columns=columns, data=rows), **images})
        run.finish()
    except Exception as err:  # W&B problems never fail a suite
        warn(f"W&B summary run not written: {err}")
