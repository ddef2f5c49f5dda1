"""One run of a suite, in its own process: fit one (variant, seed), judge it with the evaluation battery, log to
CSV and W&B, and write ``result.json``. ``compare`` (``launch.py``) writes the run's two files and starts one of
these per run:

    python -m ae_lightning.suite.run RUN_DIR

    RUN_DIR/config.yaml   what trains: the config ``ae-lightning fit --config`` takes (it refits the run bitwise on
                          the CPU); this process hands it to the same AutoencoderCLI
    RUN_DIR/run.json      the rest: suite id and name, variant, seed, W&B and evaluation settings

RUN_DIR afterwards holds ``result.json`` (status, error, metrics), ``metrics.csv``, ``checkpoints/``,
``examples.pt`` (fixed test images and their reconstructions, for the report) and ``wandb/``.
A run that finds ``checkpoints/last.ckpt`` resumes from it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from ae_lightning.startup import collector_paused_for_imports

# this process's start-up: torch and Lightning imported with the collector paused (ae_lightning/startup.py)
with collector_paused_for_imports():
    import torch
    import yaml
    from pytorch_lightning.loggers import Logger, WandbLogger

    from ae_lightning.callbacks import EpochLine, FitMeter, ImagePanels, ResumeCheckpoint
    from ae_lightning.data import ImageDataModule, Noise
    from ae_lightning.devices import evaluation_device, peak_memory_mb
    from ae_lightning.errors import USER_ERRORS, find_user_error
    from ae_lightning.evaluation.anomaly import calibrated_threshold
    from ae_lightning.evaluation.battery import EvaluationSettings, battery_noise_generator, collapse_reason, evaluate
    from ae_lightning.evaluation.stages import Stages
    from ae_lightning.evaluation.views import write_latent_views
    from ae_lightning.files import atomic_path, atomic_torch_save, write_json_atomic
    from ae_lightning.lightning_cli import run_cli
    from ae_lightning.loggers import RunCSVLogger, keep_rows_up_to
    from ae_lightning.messages import warn
    from ae_lightning.suite.config import RunSpec
    from ae_lightning.variants import VARIANTS, AutoencoderBase
    from ae_lightning.variants.base import Samples

EXAMPLE_IMAGES = 8
SHARING_ENV = "AE_LIGHTNING_RUNS_SHARING_DEVICE"  # set by the suite runner (launch.py): runs at once on this device


class TolerantWandbLogger(WandbLogger):
    """A WandbLogger whose failures (no network, quota, a broken service) print one warning and switch it off,
    instead of failing the training run."""

    failed = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Lightning passes anonymous=None to wandb.init, which answers with a warning that the setting has no
        # effect; leave it out. (A Lightning private name: without it there is nothing to remove.)
        getattr(self, "_wandb_init", {}).pop("anonymous", None)

    def _guard(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return None
        try:
            return getattr(super(), method)(*args, **kwargs)
        except Exception as err:
            self.failed = True
            warn(f"W&B disabled for this run after an error in {method}: {err}")
            return None

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self._guard("log_hyperparams", params, *args, **kwargs)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._guard("log_metrics", metrics, step)

    def log_image(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log_image", *args, **kwargs)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._guard("after_save_checkpoint", checkpoint_callback)

    def finalize(self, status: str) -> None:
        self._guard("finalize", status)


def wandb_run_id(suite_id: str, variant: str, seed: int, normal_class: int | None = None) -> str:
    """Stable per (suite, variant, [one-class protocol's normal class,] seed): a resumed or requeued run continues
    the same W&B run."""
    key = f"{suite_id}/{variant}/{seed}" if normal_class is None else f"{suite_id}/{variant}/class{normal_class}/{seed}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def run_info(spec: RunSpec) -> dict[str, Any]:
    """``run.json``: a run's settings that are not training settings (those are in its config.yaml)."""
    info = {key: spec[key] for key in ("suite_id", "suite_name", "variant", "model", "seed", "wandb")}
    if "normal_class" in spec:  # the one-class protocol: W&B filters and groups on it
        info["normal_class"] = spec["normal_class"]
    info["dataset"] = spec["data"].get("name", "fashion_mnist")
    if "evaluation" in spec:
        info["evaluation"] = spec["evaluation"]
    return info


def write_run_files(spec: RunSpec, run_dir: Path) -> None:
    """What the parent writes before it starts a run's process: ``config.yaml`` and ``run.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "config.yaml") as partial:
        partial.write_text(yaml.safe_dump(run_config(spec), sort_keys=False))
    write_json_atomic(run_dir / "run.json", run_info(spec))


def make_wandb_logger(
    info: dict[str, Any],
    run_dir: Path,
    job_type: str = "train",
    group: str | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
) -> TolerantWandbLogger | None:
    """The run's W&B logger (``info``: its run.json): in the suite's group (a tuning trial: ``group``, ``name``,
    ``job_type="tune"``); its W&B config is ``info`` with the training config under ``config``."""
    settings = info["wandb"]
    if settings["mode"] == "disabled":
        return None
    if group is None:  # a suite run: its id stays the same across resumes and requeues
        normal_class = info.get("normal_class")
        scope = "" if normal_class is None else f"-class{normal_class}"
        group, name = info["suite_id"], f"{info['variant']}{scope}-seed{info['seed']}"
        run_id = wandb_run_id(info["suite_id"], info["variant"], info["seed"], normal_class)
    else:
        run_id = hashlib.sha1(f"{group}/{name}".encode()).hexdigest()[:16]
    try:
        return TolerantWandbLogger(
            project=settings["project"],
            entity=settings.get("entity"),
            group=group,
            name=name,
            job_type=job_type,
            tags=[info["suite_name"], info["model"], info["dataset"]],
            id=run_id,
            resume="allow",
            mode=settings["mode"],
            # absolute: a W&B service shared with a parent process (its env carries it) resolves a relative
            # directory against its own working directory, not this run's
            save_dir=str(Path(run_dir).resolve()),
            config={**info, **({"config": config} if config else {})},
        )
    except Exception as err:
        warn(f"W&B unavailable for this run ({err}); logging to CSV only")
        return None


def evaluation_settings(info: dict[str, Any]) -> EvaluationSettings:
    settings = dict(info["evaluation"])
    settings["noise"] = Noise(**settings["noise"])
    return EvaluationSettings(**settings)


@torch.no_grad()
def save_examples(
    model: AutoencoderBase, datamodule: ImageDataModule, settings: EvaluationSettings, path: Path
) -> None:
    """The first test images, their fixed corruption and the model's reconstructions of both, for the report."""
    clean = datamodule.splits["test"].images[:EXAMPLE_IMAGES].float() / 255
    noisy = settings.noise(clean, generator=battery_noise_generator(settings))
    model.eval()
    examples = {
        "clean": clean,
        "noisy": noisy,
        "reconstruction": model(clean.to(model.device)).cpu(),
        "denoised": model(noisy.to(model.device)).cpu(),
    }
    if isinstance(model, Samples):
        torch.manual_seed(0)
        examples["samples"] = model.sample(32).cpu()
    torch.save(examples, path)


def datamodule_of(spec: dict[str, Any]) -> ImageDataModule:
    """The run's data: split and evaluation corruption fixed by the suite's ``data.seed`` (every run of a suite,
    whatever its seed, trains and is judged on the same images), shuffling driven by the run's seed."""
    return ImageDataModule(**run_config(spec)["data"])


def checkpoint_selection(spec: RunSpec, val_size: int) -> dict[str, Any]:
    """The ModelCheckpoint settings that choose the checkpoint the battery judges: the run's ``select_on``
    objective (val/loss unless the variant has its own), none without a validation split."""
    if not val_size:
        return {"monitor": None}
    select_on = spec.get("select_on") or {"metric": "val/loss", "direction": "minimize"}
    if select_on == {"metric": "val/loss", "direction": "minimize"}:
        return {"monitor": "val/loss"}  # as every run's config.yaml has said so far
    return {"monitor": select_on["metric"], "mode": "min" if select_on["direction"] == "minimize" else "max"}


def run_config(spec: RunSpec) -> dict[str, Any]:
    """What the run trains, as the config ``ae-lightning fit --config`` takes: written to ``RUN_DIR/config.yaml``,
    it reproduces the run (bitwise on the CPU). Where the run writes is not in it."""
    variant = VARIANTS[spec["model"]]
    val_size = spec["data"].get("val_size", inspect.signature(ImageDataModule).parameters["val_size"].default)
    return {
        "seed_everything": spec["seed"],
        "model": {"class_path": f"{variant.__module__}.{variant.__qualname__}", "init_args": spec["model_args"]},
        "data": {**spec["data"], "shuffle_seed": spec["seed"]},
        "trainer": {**spec["trainer"], "enable_progress_bar": False},
        "checkpoint": checkpoint_selection(spec, val_size),
        "resume_checkpoint": {"every_n_train_steps": spec["checkpoint_every_n_steps"]},
    }


def cache_dir_of(datamodule: ImageDataModule) -> Path:
    """Beside the data: ``<data dir>/.ae_lightning_cache`` (a tensors file's folder for ``tensors``)."""
    root = Path(datamodule.root).expanduser()
    return (root if root.is_dir() else root.parent) / ".ae_lightning_cache"


def leave_process_group() -> None:
    """After a DDP fit every rank leaves the process group, so the battery that rank 0 then runs alone cannot wait
    on a collective (torchmetrics' ``compute()`` gathers from every rank while a group exists; the other ranks have
    returned: NCCL errors, gloo errors or hangs)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def build_run(config: dict[str, Any], run_dir: Path, loggers: list[Logger], callbacks: list) -> Any:
    """The run's model, data and Trainer, built from its training config (``config.yaml``) by the AutoencoderCLI,
    as `ae-lightning fit --config RUN_DIR/config.yaml` builds them (one Trainer construction, one checkpoint
    cadence); only where it writes, its loggers and the callbacks that report to the runner are added. Returns the
    (not yet run) AutoencoderCLI."""
    checkpoints = str(run_dir / "checkpoints")
    config = {
        **config,
        "trainer": {**config["trainer"], "default_root_dir": str(run_dir)},
        "checkpoint": {**config.get("checkpoint", {}), "dirpath": checkpoints},
        "resume_checkpoint": {**config.get("resume_checkpoint", {}), "dirpath": checkpoints},
    }
    # save_config=False: config.yaml is written before the run starts, and is the reproducible one
    return run_cli(config, run=False, trainer_overrides={"logger": loggers, "callbacks": callbacks}, save_config=False)


def run(run_dir: Path) -> dict[str, Any]:
    info = json.loads((run_dir / "run.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    loggers: list[Logger] = [RunCSVLogger(str(run_dir), name="", version="")]
    wandb_logger = make_wandb_logger(info, run_dir, config=config)
    if wandb_logger is not None:
        loggers.append(wandb_logger)
    meter = FitMeter()
    callbacks = [meter, EpochLine(), ImagePanels(info["wandb"].get("image_every_n_epochs", 1))]
    cli = build_run(config, run_dir, loggers, callbacks)
    model, datamodule, trainer = cli.model, cli.datamodule, cli.trainer
    checkpoint = trainer.checkpoint_callback
    resume = next(c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint))
    # The newest of last.ckpt and a checkpoint Lightning wrote on SLURM's preemption signal (hpc_ckpt_<n>.ckpt).
    candidates = [p for p in [Path(resume.path), *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    last = max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None
    if last is not None:
        print(f"resuming from {last}", flush=True)
    # rows after the checkpoint (or all, starting afresh) are logged again: keep metrics.csv free of duplicates
    resumed_step = torch.load(last, map_location="cpu", weights_only=True)["global_step"] if last else None
    keep_rows_up_to(run_dir / "metrics.csv", resumed_step)
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(last) if last else None, weights_only=True)
    fit_seconds = time.perf_counter() - started
    trained_on = trainer.strategy.root_device
    leave_process_group()
    if not trainer.is_global_zero:
        return {}
    peak_mem_mb = meter.peak_mem_mb or peak_memory_mb(trained_on)
    metrics: dict[str, Any] = {
        "fit/seconds": fit_seconds,
        "fit/peak_mem_mb": peak_mem_mb,
        # set by the suite runner: how many runs trained at once on this device (their times are not comparable)
        "fit/runs_sharing_device": float(os.environ.get(SHARING_ENV, 1)),
    }
    if meter.samples:  # a run resumed after its last step trains nothing here: no throughput to report
        metrics["fit/samples_per_s"] = meter.samples_per_s
    settings = evaluation_settings(info)
    device = evaluation_device(trained_on, settings.device)
    best = checkpoint.best_model_path if Path(checkpoint.best_model_path or "").is_file() else resume.path
    model.load_state_dict(torch.load(best, map_location=device, weights_only=True)["state_dict"])
    model.to(device)
    splits = datamodule.splits
    anomaly: dict[str, torch.Tensor] = {}
    calibration: dict[str, torch.Tensor] = {}
    maps: dict[str, torch.Tensor] = {}
    stages = Stages()  # a line as each stage starts, and eval/<stage>_seconds in result.json
    metrics |= evaluate(
        model,
        datamodule.evaluated_train_images(),
        splits["train"].labels,
        splits["test"].images,
        splits["test"].labels,
        settings,
        classifier_cache=cache_dir_of(datamodule),
        test_is_anomaly=datamodule.test_is_anomaly,
        anomaly_out=anomaly,
        test_masks=datamodule.test_masks,
        test_factors=datamodule.test_factors,
        stages=stages,
        calibration_images=splits["calibration"].images if "calibration" in splits else None,
        calibration_out=calibration,
        maps_out=maps,
    )
    if calibration:  # what `ae-lightning score` and `export` decide with (and re-set for another --fpr)
        pixel = metrics.get("anomaly/reconstruction/pixel_threshold")
        write_thresholds(run_dir / "thresholds.json", calibration, settings.anomaly_fpr, pixel)
    if anomaly:  # the report's ROC curves, histograms and worst cases
        is_anomaly, test_images = datamodule.test_is_anomaly, splits["test"].images.cpu()
        # with defect masks: the images the report shows with their anomaly maps
        examples = map_examples(maps["maps"], anomaly["reconstruction"], datamodule, metrics) if maps else None
        atomic_torch_save(
            {
                "scores": anomaly,
                "is_anomaly": is_anomaly,
                "labels": splits["test"].labels.cpu(),
                "worst": {score: worst_cases(values, is_anomaly, test_images) for score, values in anomaly.items()},
                **({"maps": examples} if examples else {}),
            },
            run_dir / "anomaly_scores.pt",
        )
    with stages("views", "examples and latent views for the report"):
        save_examples(model, datamodule, settings, run_dir / "examples.pt")
        views = write_latent_views(model, splits["test"].images, splits["test"].labels, run_dir, datamodule.class_names)
    metrics |= stages.metrics()
    print(stages.summary(), flush=True)
    if wandb_logger is not None and not wandb_logger.failed:
        for key, path in views.items():
            wandb_logger.log_image(key, images=[str(path)])  # TolerantWandbLogger: a failure is one warning
        try:
            wandb_logger.experiment.summary.update(metrics)
            # Finish here, not at interpreter exit: finish() waits until W&B has written the run, so whoever reads
            # the run directory after this process ends (the suite, `wandb sync`) finds it complete.
            wandb_logger.experiment.finish()
        except Exception as err:
            warn(f"W&B summary not written: {err}")
    collapse = collapse_reason(metrics, settings)
    if collapse is not None:  # said in the run's log and console, in result.json, and by the report
        warn(f"{info['variant']} seed {info['seed']}: the code collapsed — {collapse}")
    return {
        "collapse": collapse,
        "checkpoint": Path(best).name,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "trained_on": str(trained_on),
        "evaluated_on": str(device),
        "world_size": trainer.world_size,
        # CPU results are bitwise only at the same thread count (the order of a sum's terms); --parallel N gave
        # each run cores / N threads: a refit sets OMP_NUM_THREADS to this
        "cpu_threads": torch.get_num_threads(),
        "metrics": metrics,
    }


def map_examples(
    maps: torch.Tensor, scores: torch.Tensor, datamodule: ImageDataModule, metrics: dict[str, Any], count: int = 4
) -> dict[str, Any]:
    """The test images the report's ``anomaly_maps.png`` shows with their anomaly maps and masks: the ``count``
    normal images scored most anomalous (false positives), the ``count`` anomalies scored most normal (false
    negatives), and the first two of each defect type."""
    split, is_anomaly = datamodule.splits["test"], datamodule.test_is_anomaly
    labels = split.labels.cpu()
    names = datamodule.class_names or []
    normal, anomalous = (~is_anomaly).nonzero()[:, 0], is_anomaly.nonzero()[:, 0]
    chosen = [(int(i), "false positive") for i in normal[scores[normal].argsort(descending=True)[:count]]]
    chosen += [(int(i), "false negative") for i in anomalous[scores[anomalous].argsort()[:count]]]
    for label in labels[anomalous].unique().tolist():
        kind = names[label] if label < len(names) else f"defect {label}"
        chosen += [(int(i), kind) for i in (labels == label).nonzero()[:2, 0]]
    index = torch.tensor([i for i, _ in chosen])
    return {
        "index": index,
        "kind": [kind for _, kind in chosen],
        "images": split.images[index].cpu(),
        "maps": maps[index],
        "masks": datamodule.test_masks[index],
        "scores": scores[index],
        "pixel_threshold": metrics.get("anomaly/reconstruction/pixel_threshold", float("nan")),
    }


def write_thresholds(path: Path, calibration: dict[str, torch.Tensor], fpr: float, pixel: float | None) -> None:
    """Each score's threshold for the target ``fpr`` and the calibration scores it was set on (and, for runs with
    defect masks, the pixel threshold of the anomaly maps)."""
    thresholds = {}
    for score, values in calibration.items():
        threshold, promised = calibrated_threshold(values, fpr)
        thresholds[score] = {
            "threshold": threshold,
            "promised_fpr": promised,
            "calibration_scores": [float(v) for v in values],
        }
    written = {"fpr": fpr, "calibration_images": len(next(iter(calibration.values()))), "scores": thresholds}
    if pixel is not None:
        written["pixel_threshold"] = pixel
    write_json_atomic(path, written)


def worst_cases(scores: torch.Tensor, is_anomaly: torch.Tensor, images: torch.Tensor, count: int = 8) -> dict:
    """The ``count`` normal test images scored most anomalous (false positives at any useful threshold) and the
    ``count`` anomalies scored most normal (false negatives), with their indices and scores, for the report."""
    normal, anomalous = (~is_anomaly).nonzero()[:, 0], is_anomaly.nonzero()[:, 0]
    false_positives = normal[scores[normal].argsort(descending=True)[:count]]
    false_negatives = anomalous[scores[anomalous].argsort()[:count]]
    return {
        "false_positives": images[false_positives],
        "false_positive_index": false_positives,
        "false_positive_scores": scores[false_positives],
        "false_negatives": images[false_negatives],
        "false_negative_index": false_negatives,
        "false_negative_scores": scores[false_negatives],
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    run_dir = Path(argv[0])
    warnings.filterwarnings("ignore", category=UserWarning, module="pytorch_lightning")
    try:
        result = run(run_dir)
        if not result:  # a non-zero DDP rank: rank 0 reports
            return
        status = {"status": "done", "error": None, **result}
    except BaseException as err:
        user_error = find_user_error(err)  # a setting to fix: its message alone, no traceback
        failure = user_error or err
        status = {"status": "failed", "error": f"{type(failure).__name__}: {failure}"}
        if user_error is None:
            status["traceback"] = traceback.format_exc()
        if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0:
            write_json_atomic(run_dir / "result.json", status)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr, flush=True)
        sys.exit(USER_ERRORS[type(user_error)])
    write_json_atomic(run_dir / "result.json", status)


if __name__ == "__main__":
    main()
