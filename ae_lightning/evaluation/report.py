"""The local report of a suite: ``summary.csv``, ``report.md`` (variant × metric, mean ± std over seeds, best per
column in bold) and PNGs a person can look at; plus the W&B summary run with every variant's battery as a table."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

from ae_lightning.evaluation.battery import BATTERY_KEYS, RECONSTRUCTION_KEYS, STRUCTURE_KEYS
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
    "test/elbo",
    "fit/samples_per_s",
}
LOWER_IS_BETTER = {"test/mse", "test/noisy_mse", "test/nll_iw", "fit/seconds", "fit/peak_mem_mb"}
# test/jacobian_fro, test/code_sparsity and test/active_units describe a model; no value of them is "best".


def variants_in_order(records: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["variant"] for r in records))


def aggregate(records: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """variant → metric → (mean, std over seeds, number of seeds), from the runs that finished."""
    table: dict[str, dict[str, tuple[float, float, int]]] = {}
    for variant in variants_in_order(records):
        done = [r["metrics"] for r in records if r["variant"] == variant and r["status"] == "done"]
        row = {}
        for key in METRIC_KEYS:
            values = [m[key] for m in done if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])]
            if values:
                row[key] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))
        table[variant] = row
    return table


def best_per_metric(table: dict[str, dict[str, tuple[float, float, int]]]) -> dict[str, str]:
    best = {}
    for key in METRIC_KEYS:
        scored = [(row[key][0], variant) for variant, row in table.items() if key in row]
        if len(scored) > 1 and key in HIGHER_IS_BETTER | LOWER_IS_BETTER:
            best[key] = (max if key in HIGHER_IS_BETTER else min)(scored)[1]
    return best


def format_number(value: float, significant: int = 4) -> str:
    """``16`` for a whole number (active units, not ``16.0000``), else ``significant`` significant digits."""
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.{significant}g}"


def format_value(mean: float, std: float, count: int) -> str:
    return f"{format_number(mean)} ± {format_number(std, 2)}" if count > 1 else format_number(mean)


def markdown_table(table: dict[str, dict[str, tuple[float, float, int]]], keys: list[str]) -> str:
    best = best_per_metric(table)
    lines = ["| variant | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for variant, row in table.items():
        cells = []
        for key in keys:
            if key not in row:
                cells.append("–")
                continue
            text = format_value(*row[key])
            cells.append(f"**{text}**" if best.get(key) == variant else text)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_summary_csv(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "model", "seed", "status", "error", *METRIC_KEYS])
        for r in records:
            writer.writerow(
                [
                    r["variant"],
                    r["model"],
                    r["seed"],
                    r["status"],
                    r["error"] or "",
                    *[r["metrics"].get(k, "") for k in METRIC_KEYS],
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


def metrics_figure(table: dict[str, dict[str, tuple[float, float, int]]], path: Path) -> None:
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
        axis.bar(
            range(len(names)),
            [table[v][key][0] for v in names],
            yerr=[table[v][key][1] for v in names],
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


def write_figures(out: Path, records: list[dict[str, Any]], table: dict) -> list[str]:
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


def write_report(out: Path, suite: dict[str, Any], records: list[dict[str, Any]]) -> None:
    write_summary_csv(out / "summary.csv", records)
    table = aggregate(records)
    figures = write_figures(out, records, table)
    seeds = sorted({r["seed"] for r in records})
    noise = suite["evaluation"]["noise"]
    lines = [
        f"# Suite `{suite['name']}`",
        "",
        f"Data: {suite['data'].get('name', 'fashion_mnist')}; seeds {seeds}; "
        f"{suite['trainer'].get('max_epochs', '?')} epochs; evaluation corruption {noise['kind']} {noise['level']}. "
        "Mean ± std over seeds; best per column in **bold** (↑ or ↓ as the metric reads). VAE NLL/ELBO in nats per "
        "image on binarised test images (Bernoulli likelihood).",
        "",
        "## Reconstruction, denoising, linear probe",
        "",
        markdown_table(table, list(RECONSTRUCTION_KEYS)),
        "",
        "## Structure of the code",
        "",
        markdown_table(table, list(STRUCTURE_KEYS)),
        "",
        "## Cost of the fit",
        "",
        markdown_table(table, list(FIT_KEYS)),
        "",
    ]
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
