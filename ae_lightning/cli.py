"""The ``ae-lightning`` command, dispatch only: ``fit | validate | test | predict`` go to LightningCLI
(``lightning_cli.py``), ``compare`` and ``tune`` to the suite machinery (``suite/``). Errors a user can act on are
printed as one line, without a traceback."""

from __future__ import annotations

import sys

from jsonargparse import ArgumentError

from ae_lightning.errors import USER_ERRORS, ConfigError, find_user_error
from ae_lightning.startup import collector_paused_for_imports

# Every subcommand, for `ae-lightning --help`: LightningCLI's (one run), the suite runner and the tuner.
SUBCOMMANDS = {
    "fit": "train one variant (LightningCLI: --model, --data.*, --trainer.*, --config FILE)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split (test/mse and the variant's terms)",
    "predict": "write codes and reconstructions of a split to a file (--predictions.path)",
    "compare": "train every (variant, seed) of a suite side by side, judge them with one battery, write the report",
    "tune": "tune every variant of a suite at the same budget (Optuna, validation split), then compare the best",
    "score": "anomaly scores of new images from a trained run (score RUN_DIR --images DIR --out scores.csv)",
    "export": "a run's detector as one TorchScript or ONNX file (export RUN_DIR --format onnx --out detector.onnx)",
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


def check_model_argument(argv: list[str]) -> None:
    """A bad ``--model`` gets one line naming the value and the variants, before LightningCLI's parser (whose
    message for it runs to ~90 lines)."""
    from ae_lightning.variants import VARIANTS

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
        # the command's imports (torch, Lightning) with the collector paused (ae_lightning/startup.py); the command
        # itself runs with it on
        with collector_paused_for_imports():
            if args[:1] == ["compare"]:
                from ae_lightning.suite.compare import main as command
            elif args[:1] == ["score"]:
                from ae_lightning.scoring import main as command
            elif args[:1] == ["export"]:
                from ae_lightning.export import main as command
            elif args[:1] == ["tune"]:
                from ae_lightning.suite.tune import main as command
            else:
                command = None
                from ae_lightning.lightning_cli import run_cli  # here: --help and compare need none of Lightning's CLI
        if command is not None:
            sys.exit(command(args[1:]))
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


if __name__ == "__main__":
    main()
