"""A newcomer's first hour: a suite validated before anything runs, the battery's stages shown and timed, logs
without warnings a user cannot act on, ``fit``'s epoch line, ``predict`` without a stray log directory, re-runs
that neither reinstall nor duplicate."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import warnings
from argparse import Namespace
from pathlib import Path

import pytest
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from ae_lightning.evaluation.stages import Stages
from ae_lightning.lightning_cli import run_cli
from ae_lightning.loggers import RunCSVLogger

from conftest import REPO, write_small_suite
from test_cli import SMALL_DATA, cli, cli_in_process

AE = {"name": "AE", "model": "Autoencoder", "args": {"latent_dim": 8}}
VAE = {"name": "VAE", "model": "VariationalAutoencoder", "args": {"latent_dim": 8, "beta": 0.1}}
# What a log must not hold: Python warnings (Lightning's and ours), ANSI colours, Lightning's tips, W&B's notices.
NOISE = re.compile(r"[Ww]arning|\x1b\[|💡|anonymous setting|exists and is not empty|srun|tensorboardX")
# Python's warning filters as a user has them (the test helper `cli` ignores every warning by default).
SHOW_WARNINGS = {"PYTHONWARNINGS": ""}


def test_a_data_size_every_run_would_fail_on_is_one_message_before_anything_runs(tmp_path, data_root):
    suite = write_small_suite(tmp_path / "suite.yaml", data_root, "sizes", [AE, VAE], epochs=1, wandb_mode="disabled")
    result = cli_in_process(
        "compare", str(suite), "--out", str(tmp_path / "out"), "--data.val_size", "5000", cwd=tmp_path
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(
        "ae-lightning: error: data.val_size=5000 must be smaller than the 600 training images of data.name mnist"
    )
    assert "(e.g. --data.val_size 60: a tenth) — nothing was run: this data setting is every variant's" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()  # nothing written, nothing started


def test_missing_data_of_one_variant_stops_the_suite_naming_it(tmp_path, data_root):
    elsewhere = {"name": "Elsewhere", "model": "Autoencoder", "data": {"root": str(tmp_path / "no-data")}}
    suite = write_small_suite(tmp_path / "suite.yaml", data_root, "missing", [AE, elsewhere], 1, "disabled")
    result = cli_in_process("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert "mnist: data files not found" in result.stderr and "this data setting is Elsewhere's" in result.stderr
    assert not (tmp_path / "out" / "runs").exists()


def test_counts_the_data_cannot_give_are_said_once_used_and_recorded(tmp_path, data_root):
    evaluation = {
        "probe_train_samples": 10000,
        "jacobian_samples": 20,
        "iw_samples": 5,
        "iw_images": 5000,
        "gen_samples": 5000,
        "gen_min_images": 0,  # Fréchet distances from 200 images: forced, to see their count said and used
        "classifier_min_steps": 10,
        "classifier_epochs": 1,
    }
    suite = write_small_suite(
        tmp_path / "suite.yaml", data_root, "counts", [VAE], epochs=1, wandb_mode="disabled", evaluation=evaluation
    )
    result = cli_in_process("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("suite counts"))
    notes = [line for line in lines if line.startswith("note: ")]
    assert notes == [
        "note: evaluation.probe_train_samples=10000, but the train split has 500 images: the probes fit on 500",
        "note: evaluation.iw_images=5000, but the test split has 200 images: the importance-weighted NLL averages 200",
        "note: evaluation.gen_samples=5000, but the test split has 200 images: the Fréchet distances compare 200",
        "note: the test split has 200 images: the battery's scores move by chance between test splits this small, "
        "and the report says so",
    ]
    assert all(lines.index(note) == header + 1 + n for n, note in enumerate(notes))  # right under the header
    metrics = json.loads((tmp_path / "out" / "runs" / "VAE" / "seed0" / "result.json").read_text())["metrics"]
    assert metrics["eval/test_images"] == 200 and metrics["eval/gen_samples"] == 200
    assert metrics["eval/iw_images"] == 200 and metrics["eval/probe_train_samples"] == 500
    stages = ("reconstruction", "codes", "probes", "jacobian", "likelihood", "generative", "views")
    seconds = [metrics[f"eval/{stage}_seconds"] for stage in stages]
    assert all(s >= 0 for s in seconds) and metrics["eval/seconds"] == pytest.approx(sum(seconds))
    # the console shows each stage as it starts, under the run's prefix
    assert "[1/1 VAE seed 0] evaluating ELBO, active units and importance-weighted NLL (200 images × 5 samples)" in (
        result.stdout
    )
    assert "[1/1 VAE seed 0] evaluation done in" in result.stdout
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Fréchet distances between 200 prior samples and 200 test images" in report
    assert "5000 prior samples" not in report and "5000 test images" not in report


def test_stages_announce_themselves_time_themselves_and_report_progress():
    stream = io.StringIO()
    stages = Stages(every_s=0.0, stream=stream)
    with stages("first", "the first thing", unit="images") as progress:
        for done in range(1, 4):
            progress(done, 3)
    with stages("second", "the second thing"):
        time.sleep(0.05)
    assert stream.getvalue().splitlines() == [
        "evaluating the first thing …",
        "  first: 1/3 images (0 s)",
        "  first: 2/3 images (0 s)",  # never for the last step: the stage's end says it
        "evaluating the second thing …",
    ]
    metrics = stages.metrics()
    assert metrics["eval/second_seconds"] >= 0.05
    assert metrics["eval/seconds"] == pytest.approx(metrics["eval/first_seconds"] + metrics["eval/second_seconds"])
    assert stages.summary().startswith("evaluation done in ")
    silent = io.StringIO()
    quiet = Stages(quiet=True, stream=silent)
    with quiet("x", "nothing shown") as progress:
        progress(1, 2)
    assert silent.getvalue() == "" and "eval/x_seconds" in quiet.metrics()


def test_progress_waits_its_interval():
    stream = io.StringIO()
    with Stages(every_s=3600, stream=stream)("slow", "a loop") as progress:
        for done in range(1, 100):
            progress(done, 100)
    assert stream.getvalue().splitlines() == ["evaluating a loop …"]


def test_a_run_failing_on_a_setting_prints_its_message_not_a_traceback(tmp_path, data_root):
    from ae_lightning.suite.compare import plan_runs
    from ae_lightning.suite.config import load_suite
    from ae_lightning.suite.run import write_run_files

    path = write_small_suite(tmp_path / "suite.yaml", data_root, "one", [AE], epochs=1, wandb_mode="disabled")
    overrides = Namespace(epochs=None, data_root=None, seeds=None, wandb=None, only=None)
    (run,) = plan_runs(load_suite(path, overrides), "one-test", tmp_path / "out", ddp=False)
    run.spec["data"]["val_size"] = 5000  # as if the data shrank after the suite's check
    write_run_files(run.spec, run.directory)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "ae_lightning.suite.run", str(run.directory)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2
    assert "error: data.val_size=5000 must be smaller than the 600 training images" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    status = json.loads((run.directory / "result.json").read_text())
    assert status["status"] == "failed" and status["error"].startswith("ConfigError: data.val_size=5000")
    assert "traceback" not in status


def test_a_suite_and_a_fit_leave_no_warning_and_no_secret_in_their_outputs(tmp_path, data_root):
    # With a W&B API key in the environment (W&B offline): it must never reach configs, logs, reports or W&B files.
    secret = "abcdef0123456789abcdef0123456789abcdef01"
    env = {**SHOW_WARNINGS, "WANDB_API_KEY": secret}
    suite = write_small_suite(tmp_path / "suite.yaml", data_root, "quiet", [AE], epochs=1, wandb_mode="offline")
    result = cli("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    log = (tmp_path / "out" / "runs" / "AE" / "seed0" / "log.txt").read_text()
    assert "epoch 1/1" in log and "evaluation done in" in log
    for text in (log, result.stdout, result.stderr):
        assert not NOISE.search(text), NOISE.search(text).group(0) + "\n" + text[-3000:]
    # A first run writes metrics.csv into the run's directory without Lightning's "not empty" notice (above).
    assert (tmp_path / "out" / "runs" / "AE" / "seed0" / "metrics.csv").is_file()

    data = ["--data.name", "mnist", "--data.root", str(data_root), *SMALL_DATA]
    trainer = ["--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1"]
    trainer += ["--trainer.default_root_dir", str(tmp_path / "runs")]
    fit = cli("fit", "--model", "Autoencoder", *data, *trainer, cwd=tmp_path, env=env)
    assert fit.returncode == 0, fit.stderr[-3000:]
    output = fit.stdout + fit.stderr
    assert secret not in output and not any(
        secret.encode() in path.read_bytes() for path in (tmp_path / "runs").rglob("*") if path.is_file()
    )
    assert re.search(r"^epoch 1/2  train/loss [\d.]+  val/loss [\d.]+  val/mse [\d.]+  \(", output, re.M), output
    assert "epoch 2/2" in output
    assert "Epoch 0:" not in output and "it/s" not in output  # Lightning's progress bar: only on a terminal
    assert not NOISE.search(output), output[-3000:]
    assert (tmp_path / "runs" / "lightning_logs" / "version_0" / "metrics.csv").is_file()


def test_fit_raises_no_warning_of_ours(tmp_path, data_root):
    args = ["fit", "--model", "VariationalAutoencoder", "--data.name", "mnist", "--data.root", str(data_root)]
    args += SMALL_DATA
    args += [
        "--trainer.max_epochs",
        "1",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.log_every_n_steps",
        "1",
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", module=r"ae_lightning(\.|$)")  # any warning raised from our own code fails
        cli_obj = run_cli(args)
    assert cli_obj.trainer.current_epoch == 1


def test_predict_writes_its_file_and_no_log_directory(tmp_path, data_root):
    common = ["--model", "Autoencoder", "--data.name", "mnist", "--data.root", str(data_root), *SMALL_DATA]
    common += ["--trainer.default_root_dir", str(tmp_path / "runs")]
    run_cli(["fit", *common, "--trainer.max_epochs", "1"])
    checkpoint = tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    result = cli("predict", *common, "--ckpt_path", str(checkpoint), cwd=tmp_path, env=SHOW_WARNINGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "runs" / "lightning_logs").iterdir()) == ["version_0"]
    assert (tmp_path / "runs" / "predictions.pt").is_file()
    output = result.stdout + result.stderr
    assert "dirpath has changed" not in output and not NOISE.search(output), output[-3000:]


def test_the_csv_logger_keeps_a_resumed_runs_rows(tmp_path, recwarn):
    (tmp_path / "config.yaml").write_text("a suite run's directory is never empty\n")
    first = RunCSVLogger(str(tmp_path), name="", version="")
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.save()
    first.log_metrics({"val/loss": 2.0}, step=1)
    first.save()
    resumed = RunCSVLogger(str(tmp_path), name="", version="")  # the process after a kill -9
    resumed.log_metrics({"train/loss": 0.5, "train/new_term": 3.0}, step=2)
    resumed.save()
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["step"] for row in rows] == ["0", "1", "2"]
    assert rows[0]["train/loss"] == "1.0" and rows[1]["val/loss"] == "2.0" and rows[2]["train/new_term"] == "3.0"
    assert not [w for w in recwarn if "not empty" in str(w.message)]


def test_lightning_private_names_the_loggers_rest_on(tmp_path):
    from lightning_fabric.loggers.csv_logs import _ExperimentWriter

    from ae_lightning.suite.run import TolerantWandbLogger

    # If this fails, Lightning renamed the check that warns about (and deletes) an existing metrics.csv:
    # RunCSVLogger's override is then dead and a resumed run loses its earlier rows.
    assert callable(getattr(_ExperimentWriter, "_check_log_dir_exists", None))
    # If this fails, CSVLogger keeps its writer elsewhere: RunCSVLogger falls back to Lightning's writer.
    assert hasattr(CSVLogger(str(tmp_path)), "_experiment")
    # If this fails, WandbLogger no longer passes `anonymous` (or keeps its init arguments elsewhere).
    assert "anonymous" in WandbLogger(project="p", mode="disabled", save_dir=str(tmp_path))._wandb_init
    assert "anonymous" not in TolerantWandbLogger(project="p", mode="disabled", save_dir=str(tmp_path))._wandb_init


def test_a_rerun_replaces_the_wandb_summary_run(tmp_path):
    from ae_lightning.evaluation.report import write_wandb_summary

    suite = {"name": "s", "wandb": {"mode": "offline", "project": "ae-lightning-tests"}}
    for _ in range(2):
        write_wandb_summary(tmp_path, suite, "s-20261203-000000", [])
    assert len(list((tmp_path / "wandb").glob("offline-run-*-s-20261203-000000-summary"))) == 1


def test_setup_installs_once(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    for tool in ("python", "ae-lightning"):  # stand-ins that record how they were called
        stub = venv / "bin" / tool
        stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
        stub.chmod(0o755)
    env = {**os.environ, "VENV": str(venv), "INSTALL_DATASETS": "0"}
    first = subprocess.run(["bash", "scripts/setup.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    installs = calls.read_text()
    assert "pip install -q -e .[dev]" in installs and "torch==2.14.1" in installs
    again = subprocess.run(["bash", "scripts/setup.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "already installed" in again.stdout
    assert calls.read_text() == installs  # nothing ran
    other = subprocess.run(["bash", "scripts/setup.sh"], cwd=REPO, env={**env, "EXTRAS": ""}, capture_output=True)
    assert other.returncode == 0 and calls.read_text() != installs  # other extras: installed again


def synthetic_records(tmp_path: Path, seeds: list[int], shared: bool) -> list[dict]:
    """Three variants whose per-seed scores are set: A clearly best on test/mse, B close to it, C far off."""
    means = {"A": 0.010, "B": 0.0102, "C": 0.030}
    records = []
    for variant, mse in means.items():
        for seed in seeds:
            records.append(
                {
                    "variant": variant,
                    "model": "Autoencoder",
                    "seed": seed,
                    "status": "done",
                    "error": None,
                    "trained_on": "cpu",
                    "run_dir": str(tmp_path / variant / str(seed)),
                    "metrics": {
                        "test/mse": mse + 0.0004 * ((seed * 7 + ord(variant)) % 3 - 1),
                        "probe/accuracy": 0.8 - mse,
                        "fit/seconds": 10.0 + seed,
                        "fit/samples_per_s": 1000.0 - seed,
                        "fit/peak_mem_mb": 1000.0 + seed,
                        "fit/runs_sharing_device": 2.0 if shared else 1.0,
                        "eval/test_images": 200.0,
                    },
                }
            )
    return records


# the suite the synthetic records belong to (three Autoencoder variants A, B, C)
SYNTHETIC_SUITE = {
    "name": "synthetic",
    "data": {"name": "mnist"},
    "trainer": {"max_epochs": 1},
    "evaluation": {"noise": {"kind": "gaussian", "level": 0.3}},
    "variants": [{"name": v, "model": "Autoencoder", "data": {}} for v in "ABC"],
    "wandb": {"mode": "disabled"},
}


def report_of(tmp_path: Path, seeds: list[int], shared: bool) -> tuple[str, dict]:
    from ae_lightning.evaluation.report import write_report

    suite = copy.deepcopy(SYNTHETIC_SUITE)  # write_report may fill in defaults
    baseline = {"probe/accuracy": 0.9, "probe/l2": 0.1, "probe/knn_accuracy": 0.85}
    (tmp_path / "pixel_baseline.json").write_text(json.dumps(baseline))
    write_report(tmp_path, suite, synthetic_records(tmp_path, seeds, shared))
    return (tmp_path / "report.md").read_text(), json.loads((tmp_path / "comparison.json").read_text())


def test_the_report_opens_with_sentences_drawn_from_its_comparison(tmp_path):
    report, compared = report_of(tmp_path, [0, 1, 2, 3, 4], shared=False)
    brief = report.split("## In brief", 1)[1].split("Data: ", 1)[0]
    mse = compared["test/mse"]
    assert mse["best"] == "A" and mse["not_separable"] == ["B"] and mse["separable"] == ["C"]
    # B is not separated from A: A "has the lowest mean", not "reconstructs best"
    assert "A has the lowest mean `test/mse` (0.01" in brief and "reconstructs clean test images best" not in brief
    assert "; B is not separated from it with 5 seeds, and C is worse." in brief
    # the pixel baseline beats every code here, and the opening says so, with both numbers
    assert "No code beats the same linear probe on the raw pixels (0.9; the best code, A's, reaches 0.79" in brief
    assert "With 5 seeds, 'worse' means separated from the best by a paired test on that pair's own spread" in brief
    assert "The test split holds 200 images" in brief and "**Small test split: 200 images.**" in report
    # the cost of the fit: memory on the CPU is the process's RSS — not ranked, and the report says why
    assert "fit/peak_mem_mb" not in compared and "fit/seconds" in compared
    assert "Not ranked: peak memory is the training process's RSS on the CPU" in report
    assert "1 epoch;" in report and "1 epochs" not in report
    # only the columns some variant has: test/mse and probe/accuracy here, none of the others' empty cells
    assert "| variant | test/mse | probe/accuracy |" in report and "test/codebook_usage" not in report


def test_fit_times_of_runs_that_shared_the_machine_are_not_ranked(tmp_path):
    report, compared = report_of(tmp_path, [0, 1, 2], shared=True)
    assert "fit/seconds" not in compared and "fit/samples_per_s" not in compared
    assert "the runs shared the machine (several at once)" in report
    assert "**Cost of the fit.**" not in report  # no sentence ranks what was not measured alone
    cost = report.split("## Cost of the fit", 1)[1]
    assert "**" not in cost.split("Not ranked", 1)[0]  # no bold cell in the cost table
    assert "P(row better than column) on `fit/samples_per_s`" not in report  # nor probabilities of "better"


def test_one_seed_says_first_that_its_bests_are_pointers(tmp_path):
    report, compared = report_of(tmp_path, [0], shared=False)
    brief = report.split("## In brief", 1)[1].split("Data: ", 1)[0].strip()
    assert brief.startswith("One seed: no interval and no test")
    assert f"{compared['test/mse']['best']} has the lowest `test/mse` (0.0" in brief
    assert "not separated" not in brief and "worse" not in brief


def test_a_restarted_run_logs_no_row_twice(tmp_path):
    from ae_lightning.loggers import keep_rows_up_to

    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss\n0,49,1.0\n0,99,0.9\n1,149,0.8\n")
    keep_rows_up_to(path, 99)  # resumed from a checkpoint at step 99: step 149 will be logged again
    assert path.read_text().splitlines() == ["epoch,step,train/loss", "0,49,1.0", "0,99,0.9"]
    keep_rows_up_to(path, None)  # no checkpoint: the run starts afresh, and so does its log
    assert not path.exists()


def test_frechet_distances_too_small_to_mean_anything_are_skipped_and_said(tmp_path):
    from ae_lightning.suite.preflight import count_notes

    sizes = {"train": 500, "val": 100, "test": 200}
    skipped = (
        "Fréchet distances (gen/*) skipped: 200 test images, fewer than evaluation.gen_min_images=500 (below that "
        "their bias swamps the differences between models); evaluation.gen_min_images: 0 computes them anyway"
    )
    assert skipped in count_notes(sizes, {"gen_samples": 5000})
    forced = count_notes(sizes, {"gen_samples": 5000, "gen_min_images": 0})
    assert skipped not in forced and any("the Fréchet distances compare 200" in note for note in forced)
    # no variant that samples, or an anomaly suite: no note about a stage that does not run
    assert not any("Fréchet" in note for note in count_notes(sizes, {"gen_samples": 5000}, generative=False))
    assert not any("skipped" in note for note in count_notes({**sizes, "test": 800}, {"gen_samples": 5000}))
    # the report's header says why there is no generative section
    from ae_lightning.evaluation.report import write_report

    suite = copy.deepcopy(SYNTHETIC_SUITE)  # write_report may fill in defaults
    records = synthetic_records(tmp_path, [0, 1], shared=False)
    for record in records:
        record["metrics"]["eval/gen_skipped_images"] = 200.0
    write_report(tmp_path, suite, records)
    report = (tmp_path / "report.md").read_text()
    assert (
        "No generative quality: Fréchet distances from 200 test images (fewer than evaluation.gen_min_images"
        in (
            report.split("\n## ", 2)[1]  # in the header, before the tables
        )
    )
    assert "## Generative quality" not in report


def test_a_long_epoch_prints_progress_lines_between_its_epoch_lines(data_root, capsys):
    from ae_lightning import Autoencoder, ImageDataModule
    from ae_lightning.callbacks import EpochLine

    from conftest import quiet_trainer

    data = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
    trainer = quiet_trainer(max_epochs=1, callbacks=[EpochLine(progress_every_s=0)])  # every step counts as long
    trainer.fit(Autoencoder(latent_dim=4), datamodule=data)
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if re.match(r"epoch 1/1  step \d+/10  \d+ samples/s  about \d+ s left", line)]
    assert len(progress) == 10 and progress[0].startswith("epoch 1/1  step 1/10  ")
    epoch_line = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/1") and " step " not in line)
    assert lines.index(progress[-1]) < epoch_line  # then the epoch's own line
    quiet = quiet_trainer(max_epochs=1, callbacks=[EpochLine()])  # the default: at most one line every 30 s
    quiet.fit(Autoencoder(latent_dim=4), datamodule=data)
    assert not any(" step " in line for line in capsys.readouterr().out.splitlines())


def test_probes_skipped_for_a_rare_class_are_said_in_the_header(tmp_path):
    from ae_lightning.evaluation.report import write_report

    records = synthetic_records(tmp_path, [0, 1], shared=False)
    for record in records:
        record["metrics"].pop("probe/accuracy")
        record["metrics"]["eval/probe_skipped_min_class"] = 4.0
    write_report(tmp_path, copy.deepcopy(SYNTHETIC_SUITE), records)
    report = (tmp_path / "report.md").read_text()
    assert "Linear and k-NN probes skipped: the rarest class has 4 training images, fewer than" in report
    assert "evaluation.probe_min_per_class=10" in report and "the data has no labels" not in report


def test_results_that_are_not_finite_are_counted_and_listed_never_dropped_silently(tmp_path):
    from ae_lightning.evaluation.report import write_report

    records = synthetic_records(tmp_path, [0, 1, 2], shared=False)
    nan_run = next(r for r in records if r["variant"] == "B" and r["seed"] == 1)
    nan_run["metrics"]["test/mse"] = float("nan")
    inf_run = next(r for r in records if r["variant"] == "C" and r["seed"] == 2)
    inf_run["metrics"]["probe/accuracy"] = float("inf")
    write_report(tmp_path, copy.deepcopy(SYNTHETIC_SUITE), records)
    report = (tmp_path / "report.md").read_text()
    brief = report.split("## In brief", 1)[1].split("Data: ", 1)[0]
    assert "2 results of finished runs are not finite (NaN or infinite) and are left out of the statistics" in brief
    listed = report.split("## Results that are not finite", 1)[1]
    assert "- `probe/accuracy`: C seed 2" in listed and "- `test/mse`: B seed 1" in listed
    compared = json.loads((tmp_path / "comparison.json").read_text())
    assert compared["test/mse"]["pair_seeds"]["B"] == 2  # B's mark rests on the two seeds it has finite
