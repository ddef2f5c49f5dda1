"""The ``ae-lightning`` command: LightningCLI (fit | validate | test | predict) in model subclass mode, plus
``compare`` (the side-by-side suite runner).

    ae-lightning fit --model ContractiveAutoencoder --data.name fashion_mnist --trainer.max_epochs 5
    ae-lightning fit --config experiments/configs/model/vae.yaml --config experiments/configs/trainer/cpu.yaml

The model's ``input_shape`` is linked from ``data.image_shape``, so it is never set twice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from jsonargparse import ArgumentError
from pytorch_lightning.callbacks import BasePredictionWriter, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from ae_lightning.callbacks import ResumeCheckpoint
from ae_lightning.data import ImageDataModule
from ae_lightning.errors import ConfigError, DataNotFoundError, NonFiniteLossError
from ae_lightning.files import atomic_path
from ae_lightning.variants import VARIANTS, AutoencoderBase

# Errors the user can act on: printed as one line (no traceback), with this exit code.
USER_ERRORS = {ConfigError: 2, DataNotFoundError: 2, NonFiniteLossError: 3}


def atomic_torch_save(obj: object, path: str | Path) -> None:
    with atomic_path(path) as partial:
        torch.save(obj, partial)


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
    and its loggers are built — for ``ae-lightning fit`` and for every suite run (``ae_lightning.experiment``), which
    only adds what is run-specific (its loggers, progress and cost callbacks) through ``trainer_overrides``."""

    def __init__(self, *args, trainer_overrides: dict | None = None, **kwargs) -> None:
        self.trainer_overrides = trainer_overrides or {}
        super().__init__(*args, **kwargs)

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        return super().instantiate_trainer(**{**kwargs, **self.trainer_overrides})

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
        super().parse_arguments(parser, args)
        # Before LightningCLI reads the checkpoint's hyperparameters (which would silently switch the variant).
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        check_checkpoint(config.get("ckpt_path"), config.get("model"))


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

# Every subcommand, for `ae-lightning --help`: LightningCLI's (one run), the suite runner and the tuner.
SUBCOMMANDS = {
    "fit": "train one variant (LightningCLI: --model, --data.*, --trainer.*, --config FILE)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split (test/mse and the variant's terms)",
    "predict": "write codes and reconstructions of a split to a file (--predictions.path)",
    "compare": "train every (variant, seed) of a suite side by side, judge them with one battery, write the report",
    "tune": "tune every variant of a suite at the same budget (Optuna, validation split), then compare the best",
}


def top_level_help() -> str:
    rows = "\n".join(f"  {name:<10}{text}" for name, text in SUBCOMMANDS.items())
    return (
        "usage: ae-lightning {" + ",".join(SUBCOMMANDS) + "} ...\n\n"
        "The autoencoder family in PyTorch Lightning, trained and compared side by side.\n\n"
        f"subcommands:\n{rows}\n\n"
        "ae-lightning SUBCOMMAND --help shows a subcommand's options, e.g. ae-lightning fit --help, "
        "ae-lightning compare --help."
    )


def run_cli(
    args: list[str] | None = None, run: bool = True, trainer_overrides: dict | None = None, save_config: bool = True
) -> AutoencoderCLI:
    """LightningCLI over every variant; ``args=None`` reads the command line. ``trainer_overrides``: Trainer
    arguments set in code (a suite run's loggers and callbacks); ``save_config``: write the run's config.yaml."""
    return AutoencoderCLI(
        AutoencoderBase,
        ImageDataModule,
        trainer_overrides=trainer_overrides,
        save_config_callback=SaveConfigCallback if save_config else None,
        subclass_mode_model=True,
        seed_everything_default=0,
        # Logs, checkpoints and the saved config go under default_root_dir (Lightning's default logger, a CSVLogger
        # when TensorBoard is not installed, writes to <default_root_dir>/lightning_logs/version_<n>).
        trainer_defaults={"default_root_dir": "runs"},
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"epilog": COMPARE_EPILOG, "prog": "ae-lightning"},
        args=args,
        run=run,
    )


def check_model_argument(argv: list[str]) -> None:
    """A bad ``--model`` gets one line naming the value and the variants, before LightningCLI's parser (whose
    message for it runs to ~90 lines)."""
    for index, arg in enumerate(argv):
        if arg == "--model" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--model="):
            value = arg.split("=", 1)[1]
        else:
            continue
        name = value.rsplit(".", 1)[-1]
        if value.startswith(("{", "[")) or value.endswith((".yaml", ".yml", ".json")) or name in VARIANTS:
            continue  # inline YAML/JSON, a config file, or a variant (by name or import path)
        raise ConfigError(f"--model {value!r} is not a variant; allowed: {sorted(VARIANTS)} (ae-lightning fit --help)")


SHOWN_PARSE_LINES = ("- Expected", "Expected", "Parser key", "Key ", "Given value:", "Subtypes:", "Unrecognized")


def short_parse_error(err: ArgumentError) -> str:
    """jsonargparse's message for a bad option, cut to the lines naming the key, the value and what was expected."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    keep = [lines[0], *(line for line in lines[1:] if line.startswith(SHOWN_PARSE_LINES))]
    return "\n  ".join(dict.fromkeys(keep[:8])) + "\n  (ae-lightning --help, or ae-lightning fit --help, for more)"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] in ([], ["-h"], ["--help"]):
        print(top_level_help())
        sys.exit(0 if args else 2)
    try:
        if args[:1] == ["compare"]:
            from ae_lightning.runner import main as compare_main

            sys.exit(compare_main(args[1:]))
        if args[:1] == ["tune"]:
            from ae_lightning.tuning import main as tune_main

            sys.exit(tune_main(args[1:]))
        check_model_argument(args)
        run_cli(argv)  # None: LightningCLI reads sys.argv itself (given both, it warns on every command)
    except ArgumentError as err:
        print(f"ae-lightning: error: {short_parse_error(err)}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        print(f"ae-lightning: error: {user_error}", file=sys.stderr)
        sys.exit(USER_ERRORS[type(user_error)])


def find_user_error(err: BaseException | None) -> BaseException | None:
    """The ConfigError/DataNotFoundError behind ``err``: jsonargparse wraps errors raised while it instantiates."""
    while err is not None:
        if isinstance(err, tuple(USER_ERRORS)):
            return err
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    main()
