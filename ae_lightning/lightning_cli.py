"""LightningCLI for ae-lightning: ``AutoencoderCLI`` — the one place a Trainer, its checkpoint callbacks and its
loggers are built, for ``ae-lightning fit | validate | test | predict`` and for every suite run and tuning trial —
the prediction writer, and the checkpoint check that runs before anything loads one.

    ae-lightning fit --model ContractiveAutoencoder --data.name fashion_mnist --trainer.max_epochs 5
    ae-lightning fit --config experiments/configs/model/vae.yaml --config experiments/configs/trainer/cpu.yaml

The model's ``input_shape`` is linked from ``data.image_shape``, so it is never set twice.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from jsonargparse import Namespace
from pytorch_lightning.callbacks import BasePredictionWriter, Checkpoint, ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from ae_lightning.callbacks import EpochLine, LogEveryEpoch, ResumeCheckpoint, ValidationProbe
from ae_lightning.data import ImageDataModule
from ae_lightning.errors import ConfigError
from ae_lightning.files import atomic_torch_save
from ae_lightning.limits import check_trainer_limits
from ae_lightning.loggers import RunCSVLogger
from ae_lightning.quiet import quiet_libraries
from ae_lightning.variants import AutoencoderBase


class PredictionWriter(BasePredictionWriter):
    """Writes what ``predict`` computed to one file, loadable with ``torch.load(path, weights_only=True)``:

    ``{"codes": float [N, latent_dim], "reconstructions": float [N, C, H, W], "labels": int64 [N],
    "variant": str, "dataset": str, "split": str}``.

    ``path`` defaults to ``<log dir>/predictions.pt``. Under DDP each rank writes ``…rank<r>.pt`` holding samples
    r, r + W, r + 2W, … of the split (W = world size).
    """

    def __init__(self, path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.path = path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        if not predictions:
            return
        merged = {key: torch.cat([p[key].detach().cpu() for p in predictions]) for key in predictions[0]}
        datamodule = trainer.datamodule
        merged.update(
            variant=type(pl_module).__name__,
            dataset=getattr(datamodule, "name", "unknown"),
            split=getattr(datamodule, "predict_split", "unknown"),
        )
        path = Path(self.path or Path(trainer.log_dir or ".") / "predictions.pt")
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        atomic_torch_save(merged, path)
        self.written_path = path


class AutoencoderCLI(LightningCLI):
    """The one place a Trainer, its checkpoint callbacks (``--checkpoint.*``, ``--resume_checkpoint.*``, one cadence)
    and its loggers are built — for ``ae-lightning fit`` and for every suite run (``suite/run.py``), which
    only adds what is run-specific (its loggers, progress and cost callbacks) through ``trainer_overrides``."""

    def __init__(self, *args, trainer_overrides: dict | None = None, **kwargs) -> None:
        self.trainer_overrides = trainer_overrides or {}
        super().__init__(*args, **kwargs)

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        """The Trainer, with what a command-line run gets by default: a CSV logger in
        ``<default_root_dir>/lightning_logs/version_<n>`` that keeps a resumed run's rows (none for ``predict``,
        which logs nothing), the epoch line suite runs print, and Lightning's progress bar only on a terminal."""
        config = (self.config_init[self.subcommand] if self.subcommand else self.config_init).get("trainer", {})
        defaults: dict = {}
        if config.get("logger") in (None, True):
            root = config.get("default_root_dir") or "runs"
            defaults["logger"] = False if self.subcommand == "predict" else RunCSVLogger(root, name="lightning_logs")
        callbacks = config.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        if config.get("enable_progress_bar") is None and not any(isinstance(c, ProgressBar) for c in callbacks):
            defaults["enable_progress_bar"] = sys.stdout.isatty()
        if self.subcommand == "fit":
            defaults["callbacks"] = [*callbacks, EpochLine()]
        trainer = super().instantiate_trainer(**{**kwargs, **defaults, **self.trainer_overrides})
        if config.get("log_every_n_steps") is None and self.subcommand in ("fit", None):
            trainer.callbacks.append(LogEveryEpoch())  # an epoch logs at least once; a value the user set is kept
        checkpoint = (self.config[self.subcommand] if self.subcommand else self.config).get("checkpoint") or {}
        if checkpoint.get("monitor") == ValidationProbe.KEY and self.subcommand in ("fit", "validate", None):
            trainer.callbacks.insert(0, ValidationProbe())  # before the checkpoints read it
        if self.subcommand == "predict":
            # Predicting writes no checkpoint: without checkpoint callbacks, restoring theirs cannot warn that their
            # directory changed; Lightning's note that their state is not restored concerns resuming a fit.
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, Checkpoint)]
            warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks used")
            # PredictionWriter does not use batch indices, which Lightning cannot read off the in-memory loader
            warnings.filterwarnings("ignore", message="Couldn't infer the batch indices fetched from your dataloader")
        return trainer

    def init_parser(self, **kwargs) -> LightningArgumentParser:
        # Parse errors are raised (and printed short by main), not printed after 90 lines of usage.
        return super().init_parser(**{**kwargs, "exit_on_error": False})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.image_shape", "model.init_args.input_shape", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/loss", "checkpoint.mode": "min"})
        parser.add_lightning_class_args(ResumeCheckpoint, "resume_checkpoint")
        parser.add_lightning_class_args(PredictionWriter, "predictions")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        if isinstance(args, (dict, Namespace)):
            # A config built in code (a suite run, a tuning trial): parsed as a config file is, without
            # LightningCLI's warning about the launching process's own command line (`compare SUITE …`), which is
            # not meant for it.
            self.config = parser.parse_object(args)
        else:
            super().parse_arguments(parser, args)
        # Before LightningCLI reads the checkpoint's hyperparameters (which would silently switch the variant).
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        check_checkpoint(config.get("ckpt_path"), config.get("model"))
        trainer = config.get("trainer")
        check_trainer_limits(trainer.as_dict() if isinstance(trainer, Namespace) else dict(trainer or {}))


def check_checkpoint(ckpt_path: str | None, model_config) -> None:
    """Fail with one clear message on a missing, truncated or corrupted checkpoint, or one of another variant."""
    if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry"):
        return
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r}: no such file")
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        saved = checkpoint["ae_lightning"]["variant"]
    except Exception as err:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} is not a readable ae-lightning checkpoint (truncated or "
            f"corrupted?): {type(err).__name__}: {err}"
        ) from None
    asked = str(getattr(model_config, "class_path", "")).rsplit(".", 1)[-1]
    if asked and saved != asked:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} was written by {saved}, but the model asked for is {asked}: "
            f"use --model {saved} (or the config.yaml saved with that run)"
        )


COMPARE_EPILOG = (
    "compare: ae-lightning compare SUITE.yaml [--out DIR] trains every variant of a suite side by side and writes "
    "the report; see ae-lightning compare --help. tune: ae-lightning tune SUITE.yaml tunes them first at one budget."
)


def run_cli(
    args: list[str] | dict | None = None,
    run: bool = True,
    trainer_overrides: dict | None = None,
    save_config: bool = True,
) -> AutoencoderCLI:
    """LightningCLI over every variant; ``args=None`` reads the command line, a dict is a whole config.
    ``trainer_overrides``: Trainer arguments set in code (a suite run's loggers and callbacks); ``save_config``:
    write the run's config.yaml."""
    quiet_libraries()
    return AutoencoderCLI(
        AutoencoderBase,
        ImageDataModule,
        trainer_overrides=trainer_overrides,
        save_config_callback=SaveConfigCallback if save_config else None,
        subclass_mode_model=True,
        seed_everything_default=0,
        # Logs, checkpoints and the saved config go under default_root_dir (the default logger, RunCSVLogger, writes
        # to <default_root_dir>/lightning_logs/version_<n>, as Lightning's does).
        trainer_defaults={"default_root_dir": "runs"},
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"epilog": COMPARE_EPILOG, "prog": "ae-lightning"},
        args=args,
        run=run,
    )
