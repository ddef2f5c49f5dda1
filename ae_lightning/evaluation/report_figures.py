"""The report's figures (PNGs beside report.md): reconstructions and denoising by every variant, VAE samples, the
training curves of all variants on one plot, a bar chart per metric with its interval, and each variant's tuning
trials."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import yaml
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

from ae_lightning.evaluation.report_tables import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    METRIC_KEYS,
    Table,
    format_number,
)
from ae_lightning.variants import VARIANTS


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


def smoothed(values: list[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average, debiased at the start (as TensorBoard's smoothing slider)."""
    average, out = 0.0, []
    for step, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**step))
    return out


def scale_for(axis_values: list[float]) -> str:
    """Log where the values span more than a factor of 3, linear where the range is narrow (e.g. 230–295 nats)."""
    positive = [v for v in axis_values if v > 0]
    return "log" if positive and len(positive) == len(axis_values) and max(positive) / min(positive) > 3 else "linear"


def curves_figure(chosen: dict[str, dict[str, Any]], path: Path) -> None:
    """val/mse of every variant on one axis (comparable); each variant's own training reconstruction term on an
    axis for its unit: a distance per pixel, or nats per image for likelihood models (VAE). Step curves are
    smoothed, the raw values faint behind them."""
    in_nats = {v for v, r in chosen.items() if hasattr(VARIANTS.get(r["model"]), "posterior")}
    panels = 2 + bool(in_nats and set(chosen) - in_nats)
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    val_axis, distance_axis, nats_axis = axes[0, 0], axes[0, 1], axes[0, -1]
    plotted: dict[int, list[float]] = {id(distance_axis): [], id(nats_axis): []}
    for index, (variant, record) in enumerate(chosen.items()):
        colour = f"C{index % 10}"  # one colour per variant in every panel
        val_axis.plot(*read_curve(Path(record["run_dir"]), "val/mse"), marker="o", label=variant, color=colour)
        train_axis = nats_axis if variant in in_nats else distance_axis
        steps, values = read_curve(Path(record["run_dir"]), "train/recon")
        train_axis.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
        train_axis.plot(steps, smoothed(values), label=variant, color=colour)
        plotted[id(train_axis)] += values
    val_axis.set(title="val/mse (clean images, comparable)", xlabel="epoch", ylabel="val/mse (MSE per pixel)")
    val_axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if set(chosen) - in_nats:
        distance_axis.set(
            title="train/recon: each variant's reconstruction distance\n(smoothed; raw faint)",
            xlabel="step",
            ylabel="train/recon (distance per pixel)",
            yscale=scale_for(plotted[id(distance_axis)]),
        )
    if in_nats:
        nats_axis.set(
            title="train/recon: −log p(x|z)\n(smoothed; raw faint)",
            xlabel="step",
            ylabel="train/recon (nats per image)",
            yscale=scale_for(plotted[id(nats_axis)]),
        )
    for axis in axes.flat:
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


UNITS = {
    "mse": "MSE per pixel",
    "psnr": "dB",
    "ssim": "SSIM",
    "accuracy": "accuracy",
    "jacobian_fro": "‖J‖_F",
    "code_sparsity": "fraction of units",
    "elbo": "nats per image",
    "nll_iw": "nats per image",
    "active_units": "units",
    "fd_domain": "Fréchet distance",
    "seconds": "s",
    "samples_per_s": "samples / s",
    "peak_mem_mb": "MB",
}


def unit_of(key: str) -> str:
    name = key.split("/")[-1].removeprefix("noisy_").removeprefix("knn_")
    return UNITS.get(name, key.split("/")[-1])


def metrics_figure(table: Table, path: Path) -> None:
    """A bar per variant and metric; error bars are the 95 % intervals (none with one seed). Metrics only one
    variant has (the VAE's likelihood, a codebook's usage) share one panel of values instead of a bar each."""
    present = [k for k in METRIC_KEYS if any(k in row for row in table.values())]
    alone = [k for k in present if len(table) > 1 and sum(k in row for row in table.values()) == 1]
    keys = [k for k in present if k not in alone]
    columns = 4
    rows = math.ceil((len(keys) + bool(alone)) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
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
        axis.set_ylabel(unit_of(key), fontsize=8)
    spare = list(axes.flat)[len(keys) :]
    for axis in spare:
        axis.axis("off")
    if alone and spare:  # one variant's own metrics: its values as text, not full-width bars
        text = "\n".join(
            f"{v}: {k} {format_number(table[v][k]['mean'])}" for k in alone for v in table if k in table[v]
        )
        spare[0].text(0.0, 1.0, "Metrics of one variant only\n\n" + text, va="top", fontsize=8, family="monospace")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


NOISE_NAMES = {"gaussian": "Gaussian noise σ = {}", "masking": "masking noise ({:.0%} of pixels zeroed)",
               "salt_pepper": "salt-and-pepper noise ({:.0%} of pixels)"}  # fmt: skip


def write_figures(
    out: Path, records: list[dict[str, Any]], table: Table, scope: str = "", noise: dict[str, Any] | None = None
) -> list[str]:
    """Every figure of the report from ``records`` (the first finished run of each variant stands for it) and the
    aggregated ``table``; ``scope`` says in titles what the runs are (a one-class protocol's first class);
    ``noise``: the evaluation corruption (``{kind, level}``), named in the denoising figure."""
    noise = noise or {"kind": "gaussian", "level": 0.3}
    corruption = NOISE_NAMES.get(noise["kind"], noise["kind"] + " {}").format(noise["level"])
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
            f"Denoising: reconstructions of the same test images corrupted by {corruption}",
            out / "denoising.png",
        )
        written += ["reconstructions.png", "denoising.png"]
        samples = [(v, e["samples"]) for v, e in examples.items() if "samples" in e]
        if samples:
            image_rows_figure(
                [(v if i == 0 else "", s[i : i + 16]) for v, s in samples for i in (0, 16)],
                "Samples from the prior (32 per variant, two rows)",
                out / "vae_samples.png",
            )
            written.append("vae_samples.png")
    if chosen:
        curves_figure(chosen, out / "curves.png")
        metrics_figure(table, out / "metrics.png")
        written += ["curves.png", "metrics.png"]
    written += anomaly_figures(chosen, out, scope=scope)
    return written


SCORE_LABELS = {
    "reconstruction": "reconstruction error (MSE per pixel)",
    "elbo": "−ELBO (nats)",
    "iw_nll": "IW-NLL (nats)",
    "knn_code": "code k-NN distance (standardised)",
    "center_distance": "distance to the one-class centre",
}


def score_label(score: str, record: dict[str, Any]) -> str:
    """The axis label of a run's score: a standardised run's reconstruction error is in the standardised space."""
    config = Path(record.get("run_dir", "")) / "config.yaml"
    standardize = "none"
    if score == "reconstruction" and config.is_file():
        standardize = ((yaml.safe_load(config.read_text()) or {}).get("data") or {}).get("standardize", "none")
    if standardize != "none":
        return f"squared error per pixel, {standardize}-standardised"
    return SCORE_LABELS.get(score, score)


def anomaly_figures(
    chosen: dict[str, dict[str, Any]], out: Path, score: str = "reconstruction", scope: str = ""
) -> list[str]:
    """ROC curves of every variant on one plot, each variant's score histogram for normal and anomalous test
    images, and each variant's worst false positives and false negatives, from the first finished run of each
    variant (its anomaly_scores.pt). ``scope``: what the runs are, for the titles (a one-class protocol's class)."""
    from torchmetrics.functional.classification import binary_roc

    from ae_lightning.evaluation.anomaly import as_probabilities

    saved = {}
    for variant, record in chosen.items():
        path = Path(record["run_dir"]) / "anomaly_scores.pt"
        if path.is_file():
            data = torch.load(path, weights_only=True)
            if score in data["scores"]:
                saved[variant] = (data["scores"][score].float(), data["is_anomaly"].bool(), record["seed"])
    if not saved:
        return []
    written = worst_cases_figure(chosen, out, score, scope) + anomaly_map_figures(chosen, out)
    figure, axis = plt.subplots(figsize=(5.2, 4.6))
    for variant, (scores, is_anomaly, seed) in saved.items():
        fpr, tpr, _ = binary_roc(as_probabilities(scores), is_anomaly.long())
        axis.plot(fpr.numpy(), tpr.numpy(), label=f"{variant} (seed {seed})")
    axis.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="chance")
    axis.set_xlabel("false positive rate (normal test images flagged)")
    axis.set_ylabel("true positive rate (anomalies caught)")
    scope_line = f"\n{scope.removeprefix(', ')}" if scope else ""  # its own line: one line is clipped
    axis.set_title(f"ROC of the score: {SCORE_LABELS.get(score, score)}{scope_line}", fontsize=10)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(out / "anomaly_roc.png", dpi=110)
    plt.close(figure)
    columns = min(3, len(saved))
    rows = math.ceil(len(saved) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.6 * rows), squeeze=False)
    for axis, (variant, (scores, is_anomaly, seed)) in zip(axes.flat, saved.items()):
        low, high = float(scores.min()), float(scores.max())
        # a long right tail (standardised errors: a stray pixel where training never varied) on a log axis
        wide = low > 0 and high / max(float(scores.quantile(0.01)), 1e-300) > 100
        edges = torch.logspace(math.log10(low), math.log10(high), 41) if wide else torch.linspace(low, high, 41)
        bins = edges.numpy()
        axis.hist(scores[~is_anomaly].numpy(), bins=bins, alpha=0.6, density=True, label="normal")
        axis.hist(scores[is_anomaly].numpy(), bins=bins, alpha=0.6, density=True, label="anomalous")
        if wide:
            axis.set_xscale("log")
        axis.set_title(f"{variant} (seed {seed})", fontsize=9)
        axis.set_xlabel(score_label(score, chosen[variant]), fontsize=8)
        axis.set_ylabel("density", fontsize=8)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(saved) :]:
        axis.axis("off")
    labels = {score_label(score, chosen[variant]) for variant in saved}
    title = labels.pop() if len(labels) == 1 else f"{score} (each panel's axis gives its space)"
    figure.suptitle(f"Score histograms: {title}{scope}", fontsize=10)
    figure.tight_layout()
    figure.savefig(out / "anomaly_histograms.png", dpi=110)
    plt.close(figure)
    return ["anomaly_roc.png", "anomaly_histograms.png", *written]


def anomaly_map_figures(chosen: dict[str, dict[str, Any]], out: Path) -> list[str]:
    """``anomaly_maps_<variant>.png`` for runs with defect masks: a column per shown test image (the worst false
    positives and false negatives, then the first two of each defect type), rows image, anomaly map (the per-pixel
    reconstruction error, one colour scale for the figure), defect mask, and the map above the pixel threshold set
    on normal calibration images."""
    written = []
    for variant, record in chosen.items():
        path = Path(record["run_dir"]) / "anomaly_scores.pt"
        shown = torch.load(path, weights_only=True).get("maps") if path.is_file() else None
        if not shown:
            continue
        images, maps, masks = shown["images"].float() / 255, shown["maps"].float(), shown["masks"]
        threshold = float(shown["pixel_threshold"])
        scale = float(torch.quantile(maps.flatten()[:1_000_000], 0.995)) or 1.0
        columns = len(images)
        figure, axes = plt.subplots(4, columns, figsize=(1.25 * columns + 1.2, 5.6), squeeze=False)
        rows = ["image", "anomaly map", "defect mask", "map > pixel threshold"]
        for column in range(columns):
            image = images[column].permute(1, 2, 0).squeeze(-1).numpy()
            panels = [
                (image, {"cmap": "gray", "vmin": 0, "vmax": 1}),
                (maps[column].numpy(), {"cmap": "inferno", "vmin": 0, "vmax": scale}),
                (masks[column].float().numpy(), {"cmap": "gray", "vmin": 0, "vmax": 1}),
                ((maps[column] > threshold).float().numpy(), {"cmap": "gray", "vmin": 0, "vmax": 1}),
            ]
            for row, (panel, style) in enumerate(panels):
                axis = axes[row, column]
                axis.imshow(panel, interpolation="nearest", **style)
                axis.set_xticks([])
                axis.set_yticks([])
                if column == 0:
                    axis.set_ylabel(rows[row], fontsize=8)
            axes[0, column].set_title(
                f"{shown['kind'][column]}\nscore {float(shown['scores'][column]):.3g}", fontsize=7
            )
        figure.suptitle(
            f"{variant} (seed {record['seed']}): where the reconstruction fails — worst false positives, worst false "
            f"negatives, then each defect type (pixel threshold {threshold:.3g})",
            fontsize=9,
        )
        figure.tight_layout()
        name = "anomaly_maps_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in variant) + ".png"
        figure.savefig(out / name, dpi=100)
        plt.close(figure)
        written.append(name)
    return written


def worst_cases_figure(chosen: dict[str, dict[str, Any]], out: Path, score: str, scope: str) -> list[str]:
    """``anomaly_worst.png``: per variant, the normal test images its score flags most (false positives) and the
    anomalies it passes as most normal (false negatives) — what a detector gets wrong, to look at."""
    rows = []
    for variant, record in chosen.items():
        path = Path(record["run_dir"]) / "anomaly_scores.pt"
        worst = torch.load(path, weights_only=True).get("worst", {}).get(score) if path.is_file() else None
        if worst is None:
            continue
        rows.append((f"{variant}: normal, scored most anomalous", worst["false_positives"].float() / 255))
        rows.append((f"{variant}: anomalies, scored most normal", worst["false_negatives"].float() / 255))
    if not rows:
        return []
    title = f"Worst false positives and false negatives of the score: {SCORE_LABELS.get(score, score)}{scope}"
    image_rows_figure(rows, title, out / "anomaly_worst.png")
    return ["anomaly_worst.png"]


def tuning_figure(
    name: str, entry: dict[str, Any], objective: dict[str, str], path: Path, budget_epochs: int | None = None
) -> None:
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
        f"{entry.get('epochs_trained', '?')}" + (f" of {budget_epochs}" if budget_epochs else "") + " epochs trained"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
