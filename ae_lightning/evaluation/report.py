"""The local report of a suite: ``aggregate.json`` (variant → metric → mean, std, 95 % interval, n), ``summary.csv``
(one row per run, with its variant's statistics), ``report.md`` (variant × metric with intervals, the best per
column and the variants not significantly different from it, probabilities of improvement) and PNGs a person can
look at; plus the W&B summary run with every variant's battery as a table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

from ae_lightning.evaluation.battery import (
    BATTERY_KEYS,
    GENERATIVE_KEYS,
    RECONSTRUCTION_KEYS,
    STRUCTURE_KEYS,
    EvaluationSettings,
)
from ae_lightning.evaluation.statistics import (
    ALPHA,
    CONFIDENCE,
    MAX_SEEDS,
    POWER,
    Comparison,
    compare_with_best,
    probability_of_improvement,
    summarize,
)
from ae_lightning.files import atomic_path
from ae_lightning.messages import warn
from ae_lightning.variants import VARIANTS

FIT_KEYS = ("fit/seconds", "fit/samples_per_s", "fit/peak_mem_mb")
METRIC_KEYS = BATTERY_KEYS + FIT_KEYS
HIGHER_IS_BETTER = {
    "test/psnr",
    "test/ssim",
    "test/noisy_psnr",
    "test/noisy_ssim",
    "probe/accuracy",
    "probe/knn_accuracy",
    "test/elbo",
    "fit/samples_per_s",
}
LOWER_IS_BETTER = {
    "test/mse",
    "test/noisy_mse",
    "test/nll_iw",
    "gen/fd_domain",
    "gen/fid_inception",
    "fit/seconds",
    "fit/peak_mem_mb",
}
# test/jacobian_fro, test/code_sparsity and test/active_units describe a model; no value of them is "best".


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


def format_value(summary: dict[str, Any]) -> str:
    """``mean ± half-width of the 95 % interval``; the mean alone for one seed."""
    if summary["ci_high"] is None:
        return format_number(summary["mean"])
    return f"{format_number(summary['mean'])} ± {format_number(summary['ci_high'] - summary['mean'], 2)}"


def markdown_table(table: Table, compared: dict[str, Comparison], keys: list[str]) -> str:
    """Variant × metric, mean ± the interval's half-width; the best in **bold** and ≈ on every variant not
    separated from it, both as ``comparison.json`` says (no marks where only one variant has the metric)."""
    lines = ["| variant | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for variant, row in table.items():
        cells = []
        for key in keys:
            if key not in row:
                cells.append("–")
                continue
            text = format_value(row[key])
            comparison = compared.get(key)
            if comparison is not None and comparison.separable + comparison.not_separable:
                if comparison.best == variant:
                    text = f"**{text}**"
                elif variant in comparison.not_separable and comparison.n_seeds > 1:
                    text += " ≈"
            cells.append(text)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unseparated_line(key: str, comparison: Comparison) -> str | None:
    """For a metric whose best is not separated from some variants: how many seeds would separate each observed
    difference at 80 % power — the next decision a researcher faces."""
    if comparison.n_seeds < 2 or not comparison.not_separable:
        return None

    def needed(variant: str) -> str:
        seeds = comparison.seeds_for_power.get(variant)
        if seeds is None:
            return f"{variant} – (no difference observed)"
        return f"{variant} > {MAX_SEEDS}" if seeds > MAX_SEEDS else f"{variant} ~{seeds}"

    return (
        f"`{key}`: {comparison.best} best; not separated from it with {comparison.n_seeds} seeds: "
        f"{', '.join(comparison.not_separable)}. Seeds that would separate each observed difference at "
        f"{POWER:.0%} power: {', '.join(needed(v) for v in comparison.not_separable)}."
    )


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


def write_summary_csv(path: Path, records: list[dict[str, Any]], table: Table) -> None:
    """One row per run: its metrics, then its variant's statistics over seeds (``<metric>:mean`` … ``:n``)."""
    statistic_columns = [f"{key}:{stat}" for key in METRIC_KEYS for stat in SUMMARY_STATISTICS]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "model", "seed", "status", "error", *METRIC_KEYS, *statistic_columns])
        for r in records:
            row = table.get(r["variant"], {})
            statistics_cells = [
                "" if row.get(key, {}).get(stat) is None else row[key][stat]
                for key in METRIC_KEYS
                for stat in SUMMARY_STATISTICS
            ]
            writer.writerow(
                [
                    r["variant"],
                    r["model"],
                    r["seed"],
                    r["status"],
                    r["error"] or "",
                    *[r["metrics"].get(k, "") for k in METRIC_KEYS],
                    *statistics_cells,
                ]
            )


# --- figures -----------------------------------------------------------------------------------------------------
def first_done(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """variant → its first finished run (lowest seed), whose examples and curves stand for the variant."""
    chosen: dict[str, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        if r["status"] == "done" and r["variant"] not in chosen:
            chosen[r["variant"]] = r
    return chosen


def image_rows_figure(rows: list[tuple[str, torch.Tensor]], title: str, path: Path) -> None:
    """One labelled strip of images per row; the left margin fits the longest label."""
    label_inches = 0.08 * max(len(label) for label, _ in rows) + 0.2  # ~0.08 in a character at 9 pt
    width = 10 + label_inches
    figure, axes = plt.subplots(len(rows), 1, figsize=(width, 1.35 * len(rows) + 0.5), squeeze=False)
    for axis, (label, images) in zip(axes[:, 0], rows):
        grid = make_grid(images.clamp(0, 1), nrow=len(images), padding=2, pad_value=1.0)
        axis.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle(title)
    figure.tight_layout(rect=(label_inches / width, 0, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def read_curve(run_dir: Path, key: str) -> tuple[list[float], list[float]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return [], []
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r.get(key)]
    x_key = "step" if key.startswith("train/") else "epoch"
    return [float(r[x_key]) + (1 if x_key == "epoch" else 0) for r in rows], [float(r[key]) for r in rows]


def curves_figure(chosen: dict[str, dict[str, Any]], path: Path) -> None:
    """val/mse of every variant on one axis (comparable); each variant's own training reconstruction term on an
    axis for its unit: a distance per pixel, or nats per image for likelihood models (VAE)."""
    in_nats = {v for v, r in chosen.items() if hasattr(VARIANTS.get(r["model"]), "posterior")}
    panels = 2 + bool(in_nats and set(chosen) - in_nats)
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    val_axis, distance_axis, nats_axis = axes[0, 0], axes[0, 1], axes[0, -1]
    for index, (variant, record) in enumerate(chosen.items()):
        colour = f"C{index % 10}"  # one colour per variant in every panel
        val_axis.plot(*read_curve(Path(record["run_dir"]), "val/mse"), marker="o", label=variant, color=colour)
        train_axis = nats_axis if variant in in_nats else distance_axis
        train_axis.plot(*read_curve(Path(record["run_dir"]), "train/recon"), label=variant, color=colour)
    val_axis.set(title="val/mse (clean images, comparable)", xlabel="epoch", ylabel="MSE per pixel")
    val_axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if set(chosen) - in_nats:
        distance_axis.set(title="train/recon: reconstruction distance", xlabel="step", ylabel="per pixel", yscale="log")
    if in_nats:
        nats_axis.set(title="train/recon: −log p(x|z)", xlabel="step", ylabel="nats per image", yscale="log")
    for axis in axes.flat:
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def metrics_figure(table: Table, path: Path) -> None:
    """A bar per variant and metric; error bars are the 95 % intervals (none with one seed)."""
    keys = [k for k in METRIC_KEYS if any(k in row for row in table.values())]
    columns = 4
    figure, axes = plt.subplots(
        math.ceil(len(keys) / columns),
        columns,
        figsize=(4 * columns, 3 * math.ceil(len(keys) / columns)),
        squeeze=False,
    )
    colour = {variant: f"C{i % 10}" for i, variant in enumerate(table)}  # one colour per variant in every panel
    for axis, key in zip(axes.flat, keys):
        names = [v for v, row in table.items() if key in row]
        summaries = [table[v][key] for v in names]
        with_intervals = all(summary["ci_high"] is not None for summary in summaries)
        axis.bar(
            range(len(names)),
            [summary["mean"] for summary in summaries],
            yerr=[
                [summary["mean"] - summary["ci_low"] for summary in summaries],
                [summary["ci_high"] - summary["mean"] for summary in summaries],
            ]
            if with_intervals
            else None,
            color=[colour[v] for v in names],
            capsize=3,
        )
        axis.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
        direction = " (↑)" if key in HIGHER_IS_BETTER else " (↓)" if key in LOWER_IS_BETTER else ""
        axis.set_title(key + direction, fontsize=9)
    for axis in list(axes.flat)[len(keys) :]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_figures(out: Path, records: list[dict[str, Any]], table: Table) -> list[str]:
    chosen = first_done(records)
    examples = {
        v: torch.load(Path(r["run_dir"]) / "examples.pt", weights_only=True)
        for v, r in chosen.items()
        if (Path(r["run_dir"]) / "examples.pt").is_file()
    }
    written = []
    if examples:
        reference = next(iter(examples.values()))
        image_rows_figure(
            [("original", reference["clean"])] + [(v, e["reconstruction"]) for v, e in examples.items()],
            "Reconstructions of the same test images",
            out / "reconstructions.png",
        )
        image_rows_figure(
            [("original", reference["clean"]), ("corrupted", reference["noisy"])]
            + [(v, e["denoised"]) for v, e in examples.items()],
            "Denoising: reconstructions of the same corrupted test images",
            out / "denoising.png",
        )
        written += ["reconstructions.png", "denoising.png"]
        samples = [(v, e["samples"]) for v, e in examples.items() if "samples" in e]
        if samples:
            image_rows_figure(
                [(v, s[i : i + 16]) for v, s in samples for i in (0, 16)],
                "VAE samples from the prior",
                out / "vae_samples.png",
            )
            written.append("vae_samples.png")
    if chosen:
        curves_figure(chosen, out / "curves.png")
        metrics_figure(table, out / "metrics.png")
        written += ["curves.png", "metrics.png"]
    return written


def likelihood_protocol(suite: dict[str, Any]) -> str:
    """How the VAE's nats were measured, stated next to them: binarisation, likelihood, k."""
    vaes = [v for v in suite["variants"] if hasattr(VARIANTS.get(v["model"]), "posterior")]
    if not vaes:
        return ""
    k = suite["evaluation"].get("iw_samples", EvaluationSettings.iw_samples)
    parts = []
    for variant in vaes:
        binarize = {**suite["data"], **(variant.get("data") or {})}.get("binarize", "none")
        likelihood = (variant.get("args") or {}).get("likelihood", "bernoulli")
        if likelihood == "gaussian":
            what = "Gaussian likelihood on grey-level images (not comparable with binarised-data nats)"
        elif binarize == "none":
            what = "Bernoulli likelihood on grey-level images (not binarised: not comparable with papers' nats)"
        else:
            what = f"Bernoulli likelihood on {binarize}-binarised images"
        parts.append(f"{variant['name']}: {what}")
    return f"VAE ELBO and IW-NLL (k = {k}) in nats per test image — " + "; ".join(parts) + "."


def generative_protocol(suite: dict[str, Any], records: list[dict[str, Any]]) -> str:
    samples = suite["evaluation"].get("gen_samples", EvaluationSettings.gen_samples)
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
    "Cost of the fit": ("fit/samples_per_s",),
}
SECTION_KEYS = {
    "Reconstruction, denoising, linear probe": RECONSTRUCTION_KEYS,
    "Structure of the code": STRUCTURE_KEYS,
    "Generative quality": GENERATIVE_KEYS,
    "Cost of the fit": FIT_KEYS,
}


def pixel_probe_baseline(out: Path) -> dict[str, Any] | None:
    """The pixel-space probes the runner wrote (``pixel_baseline.json``; see evaluation/baseline.py), if any."""
    path = out / "pixel_baseline.json"
    return json.loads(path.read_text()) if path.is_file() else None


def tuning_figure(name: str, entry: dict[str, Any], objective: dict[str, str], path: Path) -> None:
    """One variant's trials: the objective against the trial number and against its main knob (pruned trials at
    their last epoch's value, marked ×)."""
    history = [t for t in entry["history"] if t["value"] is not None or t["epoch_values"]]
    knob = entry["main_knob"]
    figure, (by_trial, by_knob) = plt.subplots(1, 2, figsize=(9, 3.2))
    for state, marker in (("complete", "o"), ("pruned", "x"), ("fail", "s")):
        chosen = [t for t in history if t["state"] == state]
        if not chosen:
            continue
        values = [t["value"] if t["value"] is not None else t["epoch_values"][-1] for t in chosen]
        by_trial.scatter([t["number"] for t in chosen], values, marker=marker, label=state)
        by_knob.scatter([t["params"].get(knob) for t in chosen], values, marker=marker, label=state)
    by_trial.set_xlabel("trial")
    by_trial.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_knob.set_xlabel(knob)
    numeric = [t["params"].get(knob) for t in history if isinstance(t["params"].get(knob), (int, float))]
    if numeric and min(numeric) > 0 and max(numeric) / min(numeric) > 20:
        by_knob.set_xscale("log")
    for axis in (by_trial, by_knob):
        axis.set_ylabel(f"{objective['metric']} ({'↓' if objective['direction'] == 'minimize' else '↑'})")
    by_trial.legend(fontsize=7)
    figure.suptitle(
        f"{name}: {entry['trials']} trials ({entry['pruned']} pruned, {entry['failed']} failed), "
        f"{entry.get('epochs_trained', '?')} epochs"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
            tuning_figure(name, entry, objective, out / figure)
            figures.append(figure)
    return lines + [""] + [f"![{f}]({f})" for f in figures] + [""]


def write_report(out: Path, suite: dict[str, Any], records: list[dict[str, Any]]) -> None:
    scores = per_seed_scores(records)
    table = aggregate(scores)
    with atomic_path(out / "aggregate.json") as partial:
        partial.write_text(json.dumps(table, indent=2))
    compared = comparisons(scores)
    write_comparison_json(out, compared)
    write_summary_csv(out / "summary.csv", records, table)
    figures = write_figures(out, records, table)
    seeds = sorted({r["seed"] for r in records})
    noise = suite["evaluation"]["noise"]
    if len(seeds) > 1:
        statistics_note = (
            f"Mean ± half-width of the {CONFIDENCE:.0%} confidence interval over seeds (Student's t); best mean per "
            "column in **bold**; ≈ marks a variant *not separated* from the best with these seeds — not shown to be "
            "equal, only not shown to differ. Unmarked variants are separable from the best, with a "
            f"{ALPHA:.0%} family-wise error rate for each column's whole statement (Tukey's studentized range "
            "against the best, seeds as blocks; `comparison.json` holds each column's verdict)."
        )
    else:
        statistics_note = (
            "One seed: no intervals and no significance tests — a single seed cannot separate variants; "
            "best per column in **bold** only as a pointer. Run several seeds (`--seeds 0 1 2 3 4`) to compare."
        )
    lines = [
        f"# Suite `{suite['name']}`",
        "",
        f"Data: {suite['data'].get('name', 'fashion_mnist')}; seeds {seeds}; "
        f"{suite['trainer'].get('max_epochs', '?')} epochs; evaluation corruption {noise['kind']} {noise['level']}. "
        f"{statistics_note} {likelihood_protocol(suite)}",
        "",
    ]
    if table and not any("probe/accuracy" in row for row in table.values()):
        lines += ["Linear and k-NN probes skipped: the data has no labels.", ""]
    baseline = pixel_probe_baseline(out)
    if baseline and "error" in baseline:
        lines += [f"Probes on raw pixels: not computed ({baseline['error']}).", ""]
    elif baseline:
        lines += [
            f"Probes on raw pixels, for comparison with the codes' (same probes, same images): linear "
            f"{baseline['probe/accuracy']:.4g} (L2 {baseline['probe/l2']:g}), {settings_knn(suite)}-NN "
            f"{baseline['probe/knn_accuracy']:.4g}.",
            "",
        ]
    lines += tuning_section(out)
    for section, keys in SECTION_KEYS.items():
        if not any(key in row for key in keys for row in table.values()):
            continue  # e.g. no variant samples: no generative section
        lines += [f"## {section}", "", markdown_table(table, compared, list(keys)), ""]
        unseparated = [
            line
            for key in HEADLINE_METRICS[section]
            if key in compared and (line := unseparated_line(key, compared[key])) is not None
        ]
        if unseparated:
            lines += ["\n".join(f"- {line}" for line in unseparated), ""]
        if section == "Generative quality":
            lines += [generative_protocol(suite, records), ""]
        for key in HEADLINE_METRICS[section]:
            improvement = improvement_table(scores, key)
            if improvement:
                lines += [improvement, ""]
    failed = [r for r in records if r["status"] != "done"]
    if failed:
        lines += ["## Runs that did not finish", ""]
        lines += [f"- {r['variant']} seed {r['seed']}: {r['status']}: {r['error']}" for r in failed] + [""]
    lines += [f"![{name}]({name})" for name in figures]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def write_wandb_summary(out: Path, suite: dict[str, Any], suite_id: str, records: list[dict[str, Any]]) -> None:
    """One W&B run of job_type 'summary' in the suite's group: every run's battery as a table, and the figures."""
    if suite["wandb"]["mode"] == "disabled":
        return
    try:
        import wandb

        run = wandb.init(
            project=suite["wandb"]["project"],
            entity=suite["wandb"].get("entity"),
            group=suite_id,
            name="summary",
            job_type="summary",
            mode=suite["wandb"]["mode"],
            dir=str(out),
            id=f"{suite_id}-summary".replace("/", "-")[-64:],
            resume="allow",
            config={"suite": suite},
            tags=[suite["name"], "summary"],
            reinit="finish_previous",
        )
        columns = ["variant", "model", "seed", "status", *METRIC_KEYS]
        rows = [
            [r["variant"], r["model"], r["seed"], r["status"], *[r["metrics"].get(k) for k in METRIC_KEYS]]
            for r in records
        ]
        images = {f"report/{p.stem}": wandb.Image(str(p)) for p in sorted(out.glob("*.png"))}
        run.log({"battery": wandb.Table(columns=columns, data=rows), **images})
        run.finish()
    except Exception as err:  # W&B problems never fail a suite
        warn(f"W&B summary run not written: {err}")
