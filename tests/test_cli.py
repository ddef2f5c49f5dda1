"""The ``ae-lightning`` command and every shipped config."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
import yaml

from ae_lightning.cli import main
from ae_lightning.lightning_cli import run_cli

from conftest import REPO

CONFIGS = REPO / "experiments" / "configs"
SMALL_DATA = ["--data.val_size", "100", "--data.batch_size", "50", "--data.download", "false"]


def cli(*args: str, cwd: Path, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ae_lightning", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def cli_in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``ae-lightning ARGS`` run in this process: the same ``main`` without a process's ~3 s of importing torch and
    Lightning. For commands that stop before any work (bad input: exit 2, one message; --help), and for ``compare``
    and ``score`` with W&B disabled (compare's runs are processes of their own either way; measured: the
    statistics module's three suites 57 → 33 s), a ``fit``/``predict`` that repeats one the test already ran
    through the entry point (the saved-config refit: 18 → 7 s), and the slow set's one-epoch fit of each variant on
    real Fashion-MNIST (what they check is the fit, not the process). Tune, suites with W&B on (its service would
    start in the test process), tests of what a process prints or of the entry point itself, and anything a test
    kills go through ``cli``."""
    stdout, stderr, previous = io.StringIO(), io.StringIO(), Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main(list(args))
                returncode = 0
            except SystemExit as stop:
                returncode = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except Exception:  # a traceback, as the process would print it
                traceback.print_exc()
                returncode = 1
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["ae-lightning", *args], returncode, stdout.getvalue(), stderr.getvalue())


def one_step(data_root: Path, tmp_path: Path, *configs: Path, extra: tuple[str, ...] = ()) -> None:
    args = ["fit"]
    for config in configs:
        args += ["--config", str(config)]
    data_name = "cifar10" if any("cifar" in c.name for c in configs) else None
    args += [
        "--data.root",
        str(data_root),
        *SMALL_DATA,
        "--trainer.fast_dev_run",
        "1",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger",
        "false",
        *extra,
    ]
    if data_name:
        args += ["--data.name", data_name]
    cli_obj = run_cli(args)
    # one batch really trained (Lightning counts each optimizer's step: the adversarial AE has two)
    assert cli_obj.trainer.global_step == len(cli_obj.trainer.optimizers)
    assert torch.isfinite(cli_obj.trainer.callback_metrics["train/loss"])


@pytest.mark.parametrize("config", sorted((CONFIGS / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_config_runs_a_step(config, data_root, tmp_path):
    one_step(data_root, tmp_path, config, CONFIGS / "data" / "mnist.yaml")


def test_every_variant_has_a_model_config():
    from ae_lightning import VARIANTS

    configs = (CONFIGS / "model").glob("*.yaml")
    configured = {yaml.safe_load(path.read_text())["model"]["class_path"] for path in configs}
    assert {f"ae_lightning.{name}" for name in VARIANTS} <= configured


@pytest.mark.parametrize("config", sorted((CONFIGS / "data").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_data_config_runs_a_step(config, data_root, tmp_path):
    base = [] if config.stem in ("mnist", "fashion_mnist", "cifar10") else [CONFIGS / "data" / "fashion_mnist.yaml"]
    one_step(data_root, tmp_path, CONFIGS / "model" / "denoising.yaml", *base, config)


@pytest.mark.parametrize("config", sorted((CONFIGS / "trainer").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_trainer_config_runs_a_step(config, data_root, tmp_path):
    # No GPU here: GPU presets run on the CPU with everything else they set; ddp_cpu runs for real in a subprocess.
    if config.stem == "ddp_cpu":
        result = cli(
            "fit",
            "--config",
            str(config),
            "--model",
            "Autoencoder",
            "--data.name",
            "mnist",
            "--data.root",
            str(data_root),
            *SMALL_DATA,
            "--trainer.max_steps",
            "2",
            "--trainer.limit_val_batches",
            "1",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(list(tmp_path.glob("runs/lightning_logs/version_0/checkpoints/last.ckpt"))) == 1
        return
    extra = (
        "--trainer.accelerator",
        "cpu",
        "--trainer.strategy",
        "auto",
        "--trainer.devices",
        "1",
        "--trainer.num_nodes",
        "1",
    )
    one_step(
        data_root,
        tmp_path,
        config,
        CONFIGS / "model" / "autoencoder.yaml",
        CONFIGS / "data" / "mnist.yaml",
        extra=extra if config.stem in ("gpu", "ddp", "multinode") else (),
    )


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def last_value(rows: list[dict[str, str]], key: str) -> float:
    return [float(r[key]) for r in rows if r.get(key)][-1]


def test_fit_from_yaml_end_to_end_and_saved_config_reproduces(data_root, tmp_path):
    args = [
        "--config",
        str(CONFIGS / "model" / "vae.yaml"),
        "--config",
        str(CONFIGS / "data" / "mnist.yaml"),
        "--data.root",
        str(data_root),
        *SMALL_DATA,
        "--trainer.max_epochs",
        "2",
        "--trainer.log_every_n_steps",
        "5",
    ]
    first = cli("fit", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "runs" / "lightning_logs" / "version_0"
    rows = read_metrics(run_dir / "metrics.csv")
    val_mse = last_value(rows, "val/mse")
    assert 0 < val_mse < 0.1 and last_value(rows, "train/kl") > 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    # The saved config alone reproduces the run exactly (seeded, deterministic on the CPU). This refit and predict
    # run in the test process (the first fit above is the entry point's, as a user runs it): each saves a process.
    again = cli_in_process("fit", "--config", str(run_dir / "config.yaml"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    rows_again = read_metrics(tmp_path / "runs" / "lightning_logs" / "version_1" / "metrics.csv")
    assert last_value(rows_again, "val/mse") == pytest.approx(val_mse, rel=1e-5)

    # predict writes codes and reconstructions of the test split to a loadable file
    out = tmp_path / "predictions.pt"
    predicted = cli_in_process(
        "predict",
        "--config",
        str(run_dir / "config.yaml"),
        "--ckpt_path",
        str(run_dir / "checkpoints" / "last.ckpt"),
        "--predictions.path",
        str(out),
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    assert result["codes"].shape == (200, 16) and result["reconstructions"].shape == (200, 1, 28, 28)
    assert result["variant"] == "VariationalAutoencoder" and result["split"] == "test"
    from ae_lightning.data.sources import load_split

    assert torch.equal(result["labels"], load_split("mnist", data_root, train=False)[1])
    mse = (result["reconstructions"] - load_split("mnist", data_root, train=False)[0].float() / 255).pow(2).mean()
    assert mse.item() < 0.1


def test_print_config_shows_the_chosen_variant(tmp_path):
    result = cli_in_process(
        "fit", "--model", "ContractiveAutoencoder", "--model.jacobian", "exact", "--print_config", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "class_path: ae_lightning.ContractiveAutoencoder" in result.stdout and "jacobian: exact" in result.stdout


def test_denoising_without_noise_is_one_clear_error(data_root, tmp_path):
    result = cli_in_process(
        "fit",
        "--model",
        "DenoisingAutoencoder",
        "--data.name",
        "mnist",
        "--data.root",
        str(data_root),
        *SMALL_DATA,
        "--trainer.max_epochs",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "ae-lightning: error: DenoisingAutoencoder needs corrupted inputs but data.noise is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_option_values_are_one_clear_error(data_root, tmp_path):
    result = cli_in_process(
        "fit",
        "--model",
        "SparseAutoencoder",
        "--model.penalty",
        "topk",
        "--model.k",
        "99",
        "--data.root",
        str(data_root),
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "model.k=99 must be in [1, latent_dim=32]" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli_in_process("fit", "--model", "Autoencoder", "--data.name", "svhn", cwd=tmp_path)
    assert result.returncode != 0 and "svhn" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--model", "NoSuchVariant"],
            "--model 'NoSuchVariant' is not a variant; allowed: ['AdversarialAutoencoder', 'Autoencoder', ",
        ),
        (["--model=NoSuchVariant"], "--model 'NoSuchVariant' is not a variant"),
        (
            ["--model", "Autoencoder", "--data.noise.kind", "bogus", "--data.noise.level", "0.1"],
            "noise.kind='bogus' is not a known corruption; allowed: ['gaussian', 'masking', 'salt_pepper']",
        ),
        (["--model", "VariationalAutoencoder", "--model.likelihood", "poisson"], "model.likelihood='poisson'"),
        (["--model", "Autoencoder", "--trainer.max_epochs", "abc"], 'Parser key "trainer.max_epochs"'),
        (["--model", "Autoencoder", "--data.nosuch", "1"], "unrecognized arguments: --data.nosuch 1"),
        (["--model", "SparseAutoencoder", "--model.k", "8"], "model.k=8 is not used with penalty 'l1'"),
        (
            ["--model", "Autoencoder", "--trainer.max_epochs", "-1"],
            "trainer.max_epochs=-1: allowed: a whole number >= 1",
        ),
        (["--model", "Autoencoder", "--trainer.limit_train_batches", "0"], "trainer.limit_train_batches=0.0: allowed"),
    ],
)
def test_bad_values_get_a_short_message(args, expected, data_root, tmp_path):
    result = cli_in_process("fit", *args, "--data.root", str(data_root), "--data.download", "false", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr, result.stderr[-2000:]
    assert result.stderr.count("\n") <= 10 and "usage:" not in result.stderr and "Traceback" not in result.stderr


def test_no_warning_on_every_command_and_default_root_dir_holds_the_run(data_root, tmp_path):
    args = ["fit", "--model", "Autoencoder", "--data.root", str(data_root), *SMALL_DATA, "--trainer.max_epochs", "1"]
    result = cli(*args, "--trainer.default_root_dir", str(tmp_path / "mine"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "args parameter is intended to run from within Python" not in result.stderr
    run = tmp_path / "mine" / "lightning_logs" / "version_0"
    assert (run / "metrics.csv").is_file() and (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "runs").exists()  # nothing lands in ./runs when the user said where


def test_missing_data_offline_is_one_clear_error(tmp_path):
    result = cli_in_process(
        "fit",
        "--model",
        "Autoencoder",
        "--data.name",
        "mnist",
        "--data.root",
        str(tmp_path / "empty"),
        "--data.download",
        "false",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "mnist: data files not found in" in result.stderr and "train-images-idx3-ubyte" in result.stderr


def test_help_lists_every_subcommand(tmp_path):
    result = cli("--help", cwd=tmp_path)
    assert (
        result.returncode == 0
        and "usage: ae-lightning {fit,validate,test,predict,compare,tune,score,export} ..." in result.stdout
    )
    for subcommand in ("fit", "validate", "test", "predict", "compare", "tune", "score", "export"):
        assert f"\n  {subcommand} " in result.stdout, subcommand
    assert cli(cwd=tmp_path).returncode == 2  # no subcommand: the same help, and an error code
    # the top-level help and the package import load neither torch nor Lightning (~5 s of every start-up)
    probe = "import sys, ae_lightning, ae_lightning.cli as c\ntry: c.main(['--help'])\nexcept SystemExit: pass\n"
    probe += "print(sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert loaded.stdout.strip().endswith("[]"), loaded.stdout + loaded.stderr
    import ae_lightning

    assert ae_lightning.Autoencoder.__name__ == "Autoencoder" and "load" in dir(ae_lightning)  # imported on use
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        ae_lightning.Nope  # noqa: B018
    result = cli_in_process("fit", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--model" in result.stdout and "--trainer.max_epochs" in result.stdout
    result = cli_in_process("compare", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--task-index" in result.stdout and "--report-only" in result.stdout
    result = cli_in_process("tune", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--tune-only" in result.stdout and "--worker-index" not in result.stdout
    result = cli_in_process("score", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--images" in result.stdout and "--scores" in result.stdout


def test_imports_pause_the_collector_and_only_a_start_up_freezes(monkeypatch):
    """ae_lightning/startup.py: paused for the imports; collected and frozen only where the block is the process's
    first import of torch, so nothing alive in a longer-lived process (a notebook, this one) is frozen."""
    import gc
    import weakref

    from ae_lightning.startup import collector_paused_for_imports

    before = gc.get_freeze_count()
    with collector_paused_for_imports():  # torch is imported here already: not a start-up
        assert not gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() <= before  # nothing frozen
    gc.disable()
    try:
        with collector_paused_for_imports():
            pass
        assert not gc.isenabled()  # a collector that was off stays off
    finally:
        gc.enable()

    class Node:
        pass

    garbage = Node()
    garbage.cycle = garbage  # only the collector frees it
    freed = weakref.ref(garbage)
    del garbage
    monkeypatch.delitem(sys.modules, "torch")  # as in a process starting up
    try:
        with collector_paused_for_imports():
            made = [[] for _ in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= len(made)  # what is alive: out of later collections
        assert freed() is None  # the garbage before it: freed, not frozen
    finally:
        gc.unfreeze()  # this test process lives on


# the collections Python runs while each process-start imports torch and Lightning (~1 100 with the collector on),
# whether it froze them, and whether the collector is on for the work after
START_UP_PROBE = """
import gc
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
{start}
print(len(collections), gc.get_freeze_count(), gc.isenabled())
"""


@pytest.mark.parametrize(
    "start",
    [
        "import ae_lightning.suite.run",  # a suite run's process: its module's imports
        "import ae_lightning.cli\ntry: ae_lightning.cli.main(['compare', '--help'])\nexcept SystemExit: pass",
    ],
    ids=["suite run", "ae-lightning command"],
)
def test_a_process_start_imports_with_the_collector_paused_then_frozen(start, tmp_path):
    probe = START_UP_PROBE.format(start=start)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    collections, frozen, enabled = result.stdout.split()[-3:]
    # the few left are the standard library's imports before the pause
    assert int(collections) < 50 and int(frozen) > 100_000 and enabled == "True", result.stdout[-500:]


def test_every_epoch_logs_its_training_loss_unless_the_user_set_the_interval(data_root, tmp_path):
    """500 training images in batches of 50: 10 steps an epoch, below Lightning's default interval of 50."""
    base = ["fit", "--model", "Autoencoder", "--data.root", str(data_root), *SMALL_DATA, "--trainer.max_epochs", "2"]
    logged = run_cli([*base, "--trainer.default_root_dir", str(tmp_path / "default")])
    assert logged.trainer.log_every_n_steps == 10
    with open(tmp_path / "default" / "lightning_logs" / "version_0" / "metrics.csv") as f:
        epochs = {int(row["epoch"]) for row in csv.DictReader(f) if row.get("train/loss")}
    assert epochs == {0, 1}  # a training loss in every epoch (the default interval logs none)
    chosen = ["--trainer.log_every_n_steps", "50", "--trainer.default_root_dir", str(tmp_path / "chosen")]
    assert run_cli([*base, *chosen]).trainer.log_every_n_steps == 50  # what the user set stays
