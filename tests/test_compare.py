"""``ae-lightning compare``: a suite of all six variants on generated data, end to end."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from ae_lightning.devices import usable_cpus
from ae_lightning.evaluation.battery import BATTERY_KEYS

from datasets import write_mnist_like
from test_cli import cli, cli_in_process
from wandb_records import read_run

REPO = Path(__file__).resolve().parents[1]
VAE_ONLY = {"test/elbo", "test/nll_iw", "test/active_units", "gen/fd_domain"}
CODEBOOK_ONLY = {"test/codebook_usage", "test/codebook_perplexity"}  # VQ-VAE: not among these six
# Inception weights cannot be downloaded on the test machines: the battery skips the metric with one warning line.
NEEDS_DOWNLOAD = {"gen/fid_inception"}


def suite_file(tmp_path: Path, data_root: Path, variants: list[dict], **overrides) -> Path:
    suite = {
        "name": "tiny",
        "data": {
            "name": "mnist",
            "root": str(data_root),
            "download": False,
            "val_size": 100,
            "batch_size": 50,
            "noise": {"kind": "gaussian", "level": 0.5},
        },
        "trainer": {"max_epochs": 6, "accelerator": "cpu"},
        "seeds": [0],
        "evaluation": {
            "probe_train_samples": 500,
            "jacobian_samples": 50,
            "iw_samples": 20,
            "iw_images": 50,
            "batch_size": 100,
        },
        "wandb": {"mode": "offline", "project": "ae-lightning-tests"},
        "variants": variants,
        **overrides,
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


ALL_SIX = [
    {"name": "AE", "model": "Autoencoder"},
    {"name": "DAE", "model": "DenoisingAutoencoder"},
    {"name": "SAE", "model": "SparseAutoencoder", "args": {"penalty": "kl", "sparsity_weight": 0.05}},
    {"name": "DropAE", "model": "DropoutAutoencoder"},
    {"name": "CAE", "model": "ContractiveAutoencoder", "args": {"contractive_weight": 0.001}},
    # β = 0.1: at β = 1 this VAE collapses to the prior on the low-contrast generated images (0 active units, KL ≈ 0)
    {"name": "VAE", "model": "VariationalAutoencoder", "args": {"latent_dim": 8, "beta": 0.1}},
]


@pytest.fixture(scope="module")
def finished_suite(tmp_path_factory):
    """The six variants plus one whose loss overflows, run once on 3000 generated MNIST-format images
    (enough steps for the denoising AE to pull ahead of the plain AE on noisy inputs)."""
    tmp_path = tmp_path_factory.mktemp("compare")
    data_root = tmp_path / "data"
    write_mnist_like(data_root / "MNIST" / "raw", n_train=3000)
    # a failure no up-front check can see: the first step's update at this learning rate overflows the next loss
    broken = {"name": "BrokenAE", "model": "Autoencoder", "args": {"learning_rate": 1.0e30}}
    suite = suite_file(tmp_path, data_root, ALL_SIX + [broken], trainer={"max_epochs": 5, "accelerator": "cpu"})
    # the VAE's Fréchet distance from 200 test images: forced (below gen_min_images), its classifier brief
    content = yaml.safe_load(suite.read_text())
    content["evaluation"] |= {"gen_min_images": 0, "classifier_min_steps": 100}
    suite.write_text(yaml.safe_dump(content))
    out = tmp_path / "out"
    result = cli("compare", str(suite), "--out", str(out), "--parallel", "2", cwd=tmp_path, timeout=900)
    return suite, out, result


def test_every_variant_has_finite_battery_metrics(finished_suite):
    _, out, result = finished_suite
    records = {r["variant"]: r for r in json.loads((out / "summary.json").read_text())}
    assert set(records) == {v["name"] for v in ALL_SIX} | {"BrokenAE"}, result.stdout[-3000:]
    for variant in ALL_SIX:
        record = records[variant["name"]]
        assert record["status"] == "done", record
        expected = set(BATTERY_KEYS) - NEEDS_DOWNLOAD - CODEBOOK_ONLY
        expected -= set() if variant["name"] == "VAE" else VAE_ONLY
        expected |= {"fit/seconds", "fit/samples_per_s", "fit/peak_mem_mb"}
        assert expected <= set(record["metrics"]), (variant, set(record["metrics"]))
        assert all(
            isinstance(record["metrics"][k], float) and record["metrics"][k] == record["metrics"][k] for k in expected
        )
        assert record["metrics"]["probe/accuracy"] > 0.5  # codes of learnable data separate the classes
        run_dir = Path(record["run_dir"])
        assert (run_dir / "interpolation.png").is_file() and (run_dir / "codes_2d.png").is_file()
        assert (run_dir / "latent_traversal.png").is_file() == (variant["name"] == "VAE")
        assert ("gen/fd_domain" in record["metrics"]) == (variant["name"] == "VAE")  # only a VAE samples
    vae = records["VAE"]["metrics"]
    assert vae["test/nll_iw"] > 0 and vae["test/nll_iw"] <= -vae["test/elbo"] + 1.0  # the IW bound is tighter
    # a collapsed or broken encoder has 0 active units. This one (β = 0.1) measured 1 of 8 on the low-contrast test
    # images it trained on (4 on binarised copies of them, which are not what it trained on)
    assert 1 <= vae["test/active_units"] <= 8
    # no healthy variant is flagged; the VAE is flagged exactly when it keeps fewer than 2 active units
    for name in ("AE", "DAE", "SAE", "DropAE", "CAE"):
        assert records[name]["metrics"]["code/collapsed"] == 0.0, (name, records[name]["metrics"]["code/dead_units"])
    assert vae["code/collapsed"] == float(vae["test/active_units"] < 2)
    # the sigmoid KL-sparse codes are mostly below 0.05; the plain AE's linear codes are not
    assert records["SAE"]["metrics"]["test/code_sparsity"] > records["AE"]["metrics"]["test/code_sparsity"]


def test_denoising_beats_plain_ae_on_noisy_inputs(finished_suite):
    _, out, _ = finished_suite
    metrics = {r["variant"]: r["metrics"] for r in json.loads((out / "summary.json").read_text())}
    assert metrics["DAE"]["test/noisy_psnr"] > metrics["AE"]["test/noisy_psnr"] + 1.0


def test_failing_run_is_reported_and_the_others_finish(finished_suite):
    _, out, result = finished_suite
    assert result.returncode == 1  # the suite went on, but says that a run failed
    broken = next(r for r in json.loads((out / "summary.json").read_text()) if r["variant"] == "BrokenAE")
    assert broken["status"] == "failed" and broken["error"].startswith("NonFiniteLossError: "), broken
    assert "BrokenAE seed 0] FAILED" in result.stdout
    assert "BrokenAE seed 0: failed" in (out / "report.md").read_text()


def test_report_files(finished_suite):
    _, out, _ = finished_suite
    report = (out / "report.md").read_text()
    records = {r["variant"]: r for r in json.loads((out / "summary.json").read_text())}
    for name in ("AE", "DAE", "SAE", "DropAE", "CAE", "VAE"):
        # a collapsed variant's row carries its mark (this VAE keeps < 2 active units on these images)
        assert f"| {name}{' †' if records[name].get('collapse') else ''} |" in report
    assert "**" in report  # best per column is marked
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("variant,model,seed,status,error,test/mse") and len(csv_lines) == 8
    for png in ("reconstructions.png", "denoising.png", "vae_samples.png", "curves.png", "metrics.png"):
        with Image.open(out / png) as image:
            image.verify()
        assert f"]({png})" in report
    with Image.open(out / "reconstructions.png") as image:
        assert image.size[0] > 500 and image.size[1] > 300


def test_one_seed_report_says_it_cannot_separate_variants(finished_suite):
    _, out, _ = finished_suite  # the suite has one seed
    report = (out / "report.md").read_text()
    assert "One seed: no intervals and no significance tests — a single seed cannot separate variants" in report
    assert " ± " not in report
    # the header gives the same probes on raw pixels, to read the codes' probe accuracies against
    baseline = json.loads((out / "pixel_baseline.json").read_text())
    assert set(baseline) == {"probe/accuracy", "probe/l2", "probe/knn_accuracy"}
    header = "Probes on raw pixels, for comparison with the codes' (same probes, same images): linear"
    assert f"{header} {baseline['probe/accuracy']:.4g}" in report
    assert json.loads((out / "aggregate.json").read_text())["AE"]["test/mse"]["ci_low"] is None


def test_wandb_offline_runs_hold_metrics_summary_and_media(finished_suite):
    _, out, _ = finished_suite
    suite_id = json.loads((out / "suite.json").read_text())["suite_id"]
    (run_dir,) = (out / "runs" / "VAE" / "seed0" / "wandb").glob("offline-run-*")
    run = read_run(run_dir)
    assert run["run"]["group"] == suite_id and run["run"]["job_type"] == "train" and run["run"]["name"] == "VAE-seed0"
    logged = set().union(*run["history"])
    assert {"train/loss", "train/recon", "train/kl", "val/loss", "val/mse"} <= logged
    assert run["summary"]["test/nll_iw"] > 0 and "probe/accuracy" in run["summary"]
    # the collapse flag travels with the battery (the run's result.json and its W&B summary agree)
    result = json.loads((out / "runs" / "VAE" / "seed0" / "result.json").read_text())
    assert run["summary"]["code/collapsed"] == result["metrics"]["code/collapsed"]
    assert (result["metrics"]["code/collapsed"] == 1.0) == (result["collapse"] is not None)
    assert run["config"]["model"] == "VariationalAutoencoder" and run["config"]["suite_id"] == suite_id
    media = [f for f in run["files"] if f.startswith("media/images/")]
    assert any("reconstruction" in f for f in media) and any("prior_samples" in f for f in media)
    assert any("codes_2d" in f for f in media) and any("interpolation" in f for f in media)
    (summary_dir,) = (out / "wandb").glob("offline-run-*")
    summary = read_run(summary_dir)
    assert summary["run"]["job_type"] == "summary" and summary["run"]["group"] == suite_id
    assert any(f.startswith("media/table/") for f in summary["files"])


def test_rerun_skips_finished_runs_and_redoes_the_rest(finished_suite, tmp_path):
    suite, out, _ = finished_suite
    ae_result = out / "runs" / "AE" / "seed0" / "result.json"
    before = ae_result.stat().st_mtime_ns
    (out / "runs" / "DropAE" / "seed0" / "result.json").unlink()  # as if the runner died during this run
    result = cli("compare", str(suite), "--out", str(out), "--only", "AE", "DropAE", "CAE", cwd=tmp_path, timeout=600)
    assert "[1/3 AE seed 0] already done, skipped" in result.stdout, result.stdout
    assert "[3/3 CAE seed 0] already done, skipped" in result.stdout
    # after the suite's header line, which says what the command is about to do
    assert result.stdout.index("suite tiny") < result.stdout.index("[1/3 AE seed 0] already done")
    assert "[2/3 DropAE seed 0] started" in result.stdout and "2 to do" not in result.stdout
    assert ae_result.stat().st_mtime_ns == before
    assert json.loads((out / "runs" / "DropAE" / "seed0" / "result.json").read_text())["status"] == "done"
    assert result.returncode == 0


@pytest.mark.parametrize(
    "change,message",
    [
        ({"variants": []}, "has no variants"),
        (
            {"variantz": []},
            "unknown key 'variantz'; allowed: ['checkpoint_every_n_steps', 'data', 'description', 'evaluation', "
            "'name', 'one_class', 'seeds', 'trainer', 'tuning', 'variants', 'wandb']",
        ),
        ({"variants": [{"model": "Autoencoderr"}]}, "model='Autoencoderr' is not a variant; allowed:"),
        ({"variants": [{"model": "Autoencoder", "argz": {}}]}, "variants[0]: unknown key 'argz'"),
        (
            {
                "variants": [
                    {"model": "Autoencoder", "objective": {"metric": "val/probe_accuracy", "direction": "minimize"}}
                ]
            },
            "objective val/probe_accuracy with direction 'minimize': higher is better there; use direction: maximize",
        ),
        ({"variants": [{"model": "SparseAutoencoder", "args": {"k": 0, "penalty": "topk"}}]}, "model.k=0 must be in"),
        (  # a typo in an argument: named, with the arguments the variant takes
            {"variants": [{"model": "Autoencoder", "args": {"learning_rat": 0.1}}]},
            "(Autoencoder): 'learning_rat' is not an argument of Autoencoder; allowed: ['activation', ",
        ),
        ({"trainer": {"max_epoch": 1}}, "trainer: unknown key 'max_epoch'"),
        ({"trainer": {"max_epochs": -1}}, "trainer.max_epochs=-1: allowed: a whole number >= 1 (Lightning reads -1"),
        (
            {"variants": [{"model": "Autoencoder", "trainer": {"max_steps": 0}}]},
            "variants[0] (Autoencoder): trainer.max_steps=0: allowed: a whole number >= 1, or -1 (no limit)",
        ),
        ({"trainer": {"max_time": {"hours": 0}}}, "trainer.max_time={'hours': 0}: allowed: a positive time"),
        ({"seeds": []}, "seeds=[] must be a non-empty list of integers"),
        ({"variants": [{"model": "Autoencoder"}, {"model": "Autoencoder"}]}, "name 'Autoencoder' is used twice"),
        (
            {"variants": [{"model": "Autoencoder", "class_path": "ae_lightning.Autoencoder"}]},
            "give exactly one of 'model', 'class_path' or 'config' (got ['model', 'class_path'])",
        ),
        ({"variants": [{"class_path": "ae_lightning.Nope"}]}, "class_path='ae_lightning.Nope' is not a variant"),
        ({"variants": [{"config": "no/such.yaml"}]}, "config='no/such.yaml': no such file"),
        ({"variants": [{"class_path": "ae_lightning.Autoencoder", "args": {}}]}, "'args' goes with 'model'"),
    ],
)
def test_bad_suites_are_one_clear_error(tmp_path, data_root, change, message):
    suite = suite_file(tmp_path, data_root, [{"model": "Autoencoder"}])
    content = yaml.safe_load(suite.read_text())
    content.update(change)
    suite.write_text(yaml.safe_dump(content))
    result = cli_in_process("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "runs").exists()  # nothing started


def test_shipped_suites_are_valid(tmp_path):
    from argparse import Namespace

    from ae_lightning.data.inspection import write_inspection_folder
    from ae_lightning.suite.config import load_suite

    overrides = Namespace(epochs=None, data_root=None, seeds=None, wandb=None, only=None)
    assert {s.stem for s in SHIPPED_SUITES} >= {"quick", "mnist", "fashion_mnist", "cifar10", "smoke_bf16"}
    inspection = None
    for path in SHIPPED_SUITES:
        own = overrides
        if yaml.safe_load(path.read_text())["data"].get("name") == "mvtec":  # its folder is generated, not shipped
            inspection = inspection or write_inspection_folder(
                tmp_path / "inspection", n_train=60, n_good=2, n_per_defect=1
            )
            own = Namespace(**{**vars(overrides), "data_root": str(inspection)})
        suite = load_suite(path, own)
        assert suite["variants"], path


SHIPPED_SUITES = sorted(
    [
        *(REPO / "experiments").glob("*.yaml"),
        *(REPO / "experiments").glob("smoke/*.yaml"),
        *(REPO / "experiments").glob("reproduce/*.yaml"),
    ]
)


@pytest.mark.parametrize(
    "suite_path",
    # torch.compile's first compilation takes ~30 s by nature: with the slow tests (CI runs both)
    [pytest.param(p, marks=pytest.mark.slow) if "compile" in p.stem else p for p in SHIPPED_SUITES],
    ids=lambda p: p.stem,
)
def test_every_variant_of_every_shipped_suite_runs_a_step(suite_path, data_root, tmp_path):
    """As the runner would build them (plan_runs), on generated data of the suite's dataset."""
    from argparse import Namespace

    import pytorch_lightning as pl

    from ae_lightning import VARIANTS, ImageDataModule
    from ae_lightning.suite.compare import plan_runs
    from ae_lightning.suite.config import load_suite
    from ae_lightning.suite.search import load_tuning

    root = data_root
    if yaml.safe_load(suite_path.read_text())["data"].get("name") == "mvtec":  # an inspection folder, generated small
        from ae_lightning.data.inspection import write_inspection_folder

        root = write_inspection_folder(tmp_path / "inspection", n_train=80, n_good=4, n_per_defect=2)
    overrides = Namespace(epochs=None, data_root=str(root), seeds=[0], wandb="disabled", only=None)
    suite = load_suite(suite_path, overrides)
    if "tuning" in suite:  # its search spaces too: both ends of every range build a valid variant
        assert load_tuning(suite, suite_path)["spaces"], suite_path
    runs = plan_runs(suite, "test", tmp_path, ddp=False)
    classes = suite.get("one_class") or [None]
    assert len(runs) == len(suite["variants"]) * len(classes)
    for run in runs:
        if run.normal_class != classes[0]:
            continue  # the one-class protocol: the other classes' runs differ only in the normal class
        spec = run.spec
        small = {"val_size": 50} | ({"calibration_size": 10} if "calibration_size" in spec["data"] else {})
        dm = ImageDataModule(**{**spec["data"], **small, "download": False})
        model = VARIANTS[spec["model"]](input_shape=dm.image_shape, **spec["model_args"])
        trainer = pl.Trainer(
            **{**spec["trainer"], "accelerator": "cpu"},
            fast_dev_run=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, datamodule=dm)
        # one batch: one step, two for the adversarial AE (its two optimizers each count one)
        assert trainer.global_step == (2 if spec["model"] == "AdversarialAutoencoder" else 1), run.variant


def test_wandb_failures_never_fail_a_run(tmp_path, capsys, monkeypatch):
    from pytorch_lightning.loggers import WandbLogger

    from ae_lightning.suite.run import TolerantWandbLogger

    def broken(*args, **kwargs):
        raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setattr(WandbLogger, "log_metrics", broken)
    monkeypatch.setattr(WandbLogger, "log_hyperparams", broken)
    logger = TolerantWandbLogger(project="p", mode="disabled", save_dir=str(tmp_path))
    logger.log_hyperparams({"a": 1})
    logger.log_metrics({"train/loss": 1.0}, step=1)  # switched off after the first failure: no second warning
    assert logger.failed
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: W&B")]
    assert warnings == [
        "warning: W&B disabled for this run after an error in log_hyperparams: api.wandb.ai unreachable"
    ]


def test_placement_one_run_per_gpu_or_ddp_or_parallel_cpu(tmp_path, data_root):
    from argparse import Namespace

    from ae_lightning.suite.compare import plan_runs
    from ae_lightning.suite.config import load_suite
    from ae_lightning.suite.launch import Slots

    assert [e["CUDA_VISIBLE_DEVICES"] for e in Slots(["0", "1", "2"], ddp=False, parallel=1).envs] == ["0", "1", "2"]
    assert len(Slots(["0", "1", "2", "3"], ddp=True, parallel=1).envs) == 1  # one run at a time, on every GPU
    assert len(Slots([], ddp=False, parallel=2).envs) == 2
    overrides = Namespace(epochs=3, data_root=str(data_root), seeds=[0, 1], wandb="disabled", only=None)
    suite = load_suite(suite_file(tmp_path, data_root, ALL_SIX[:2]), overrides)
    runs = plan_runs(suite, "sid", tmp_path, ddp=True)
    assert [(r.variant, r.seed) for r in runs] == [("AE", 0), ("AE", 1), ("DAE", 0), ("DAE", 1)]
    assert all(r.spec["trainer"]["devices"] == -1 and r.spec["trainer"]["strategy"] == "ddp" for r in runs)
    assert all(r.spec["trainer"]["max_epochs"] == 3 and r.spec["suite_id"] == "sid" for r in runs)
    single = plan_runs(suite, "sid", tmp_path, ddp=False)[0].spec["trainer"]
    assert single["devices"] == 1 and "strategy" not in single


def test_wandb_mode_auto(monkeypatch, capfd):
    from ae_lightning.suite.compare import resolve_wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", "/nonexistent")
    monkeypatch.setenv("NETRC", "/nonexistent")
    assert resolve_wandb_mode("disabled") == "disabled"
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    assert resolve_wandb_mode("auto") == "offline"  # no key anywhere
    assert "deprecated" not in "".join(capfd.readouterr())  # W&B's notice on its deprecated wandb.api
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode("auto") == "offline"


def test_every_seed_of_a_suite_trains_and_is_judged_on_the_same_split(tmp_path, data_root):
    from argparse import Namespace

    from ae_lightning.suite.compare import plan_runs
    from ae_lightning.suite.config import load_suite
    from ae_lightning.suite.run import datamodule_of

    overrides = Namespace(epochs=1, data_root=str(data_root), seeds=[0, 1], wandb="disabled", only=None)
    suite = load_suite(suite_file(tmp_path, data_root, ALL_SIX[:1]), overrides)
    first, second = (datamodule_of(run.spec) for run in plan_runs(suite, "sid", tmp_path, ddp=False))
    for dm in (first, second):
        dm.setup("fit")
    for split in ("train", "val", "test"):  # the data.seed split and evaluation corruption: one for the suite
        assert torch.equal(first.splits[split].images, second.splits[split].images), split
    for split in ("val", "test"):
        assert torch.equal(first.splits[split].noisy, second.splits[split].noisy), split
    # the run seed drives the shuffling (and initialisation and training noise: seed_everything)
    assert (first.shuffle_seed, second.shuffle_seed) == (0, 1)
    first_batch, second_batch = (next(iter(dm.train_dataloader())).label for dm in (first, second))
    assert not torch.equal(first_batch, second_batch)


def test_a_runs_config_yaml_refits_it_bitwise(finished_suite, tmp_path):
    # The module suite's VAE: it draws ε every step, and with W&B on its image panels draw prior samples — the refit
    # (W&B off, its own process) must match anyway.
    _, out, _ = finished_suite
    run_dir = out / "runs" / "VAE" / "seed0"
    threads = json.loads((run_dir / "result.json").read_text())["cpu_threads"]
    assert threads == max(1, usable_cpus(os.environ) // 2)  # two runs at a time: half the cores each
    refit = cli(
        "fit",
        "--config",
        str(run_dir / "config.yaml"),
        "--trainer.default_root_dir",
        str(tmp_path / "refit"),
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": str(threads)},  # the sum's order, as the run added
    )
    assert refit.returncode == 0, refit.stderr[-3000:]
    original = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    (again,) = (tmp_path / "refit").glob("lightning_logs/version_0/checkpoints/last.ckpt")
    again = torch.load(again, weights_only=True)
    assert original["global_step"] == again["global_step"] == 5 * (3000 - 100) // 50  # 5 epochs, 100 held out
    for name, tensor in original["state_dict"].items():
        assert torch.equal(tensor, again["state_dict"][name]), name


def test_variants_written_as_lightningcli_writes_models_and_dotted_overrides(tmp_path, data_root):
    suite = suite_file(
        tmp_path,
        data_root,
        [
            {"name": "VAE", "config": str(REPO / "experiments/configs/model/vae.yaml"), "init_args": {"latent_dim": 4}},
            {"name": "SAE", "class_path": "ae_lightning.SparseAutoencoder", "init_args": {"penalty": "topk", "k": 4}},
        ],
    )
    result = cli_in_process(
        "compare",
        str(suite),
        "--out",
        str(tmp_path / "out"),
        "--trainer.max_epochs",
        "1",
        "--data.noise.level=0.2",
        "--evaluation.iw_samples",
        "3",
        "--wandb",  # W&B is tested on the module's suite; here it would only cost its start-up
        "disabled",
        "--parallel",
        "2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    resolved = json.loads((tmp_path / "out" / "suite.json").read_text())["suite"]
    assert resolved["trainer"]["max_epochs"] == 1 and resolved["data"]["noise"]["level"] == 0.2
    assert resolved["evaluation"]["iw_samples"] == 3
    vae, sae = resolved["variants"]
    # the config file's init_args, with the suite's on top
    assert (
        vae["model"] == "VariationalAutoencoder"
        and vae["args"]["latent_dim"] == 4
        and vae["args"]["kl_warmup_steps"] == 1000
    )
    assert sae["model"] == "SparseAutoencoder" and sae["args"] == {"penalty": "topk", "k": 4}
    records = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["status"] for r in records] == ["done", "done"]
    bad = cli_in_process("compare", str(suite), "--model.latent_dim", "3", cwd=tmp_path)
    assert bad.returncode == 2 and "unrecognized argument '--model.latent_dim'" in bad.stderr


def test_trainer_limits_that_end_and_train_are_accepted():
    from datetime import timedelta

    from ae_lightning.limits import check_trainer_limits

    for trainer in (
        {"max_epochs": 5, "max_steps": -1, "limit_val_batches": 0, "val_check_interval": 0.5},
        {"max_steps": 100, "limit_train_batches": 0.25, "val_check_interval": 10, "log_every_n_steps": 1},
        {"max_time": "00:01:00:00"},
        {"max_time": {"hours": 1}},
        {"max_time": timedelta(minutes=5), "check_val_every_n_epoch": None, "min_epochs": 0},
    ):
        check_trainer_limits(trainer)  # no error


def test_after_the_last_run_each_stage_says_when_it_starts(finished_suite):
    _, _, result = finished_suite
    lines = result.stdout.splitlines()
    last_run = max(i for i, line in enumerate(lines) if line.startswith("["))  # runs print under their prefix
    stages = [line for line in lines[last_run:] if line.startswith("writing ")]
    assert stages == [
        "writing the pixel baseline (probes, k-NN and PCA on the raw pixels) …",
        "writing the report, its statistics and figures …",
        "writing the W&B summary run …",
    ]
    timed = r"^report: .*report\.md; 6 of 7 runs done, 1 failed \(baseline [\d.]+ s, report [\d.]+ s, W&B [\d.]+ s\)$"
    assert re.search(timed, result.stdout, re.M), result.stdout[-1500:]


def test_a_variant_judged_on_its_validation_probe_keeps_the_checkpoint_it_chose(tmp_path, data_root):
    """A suite variant whose objective is val/probe_accuracy: its run logs the probe every epoch, its checkpoint is
    chosen on it (config.yaml says so, so a refit does the same) and the battery judges that checkpoint."""
    variants = [{"name": "CAE", "model": "ContractiveAutoencoder", "objective": "val/probe_accuracy"}]
    suite = suite_file(tmp_path, data_root, variants, trainer={"max_epochs": 3, "accelerator": "cpu"})
    content = yaml.safe_load(suite.read_text())
    content["wandb"]["mode"] = "disabled"
    suite.write_text(yaml.safe_dump(content))
    result = cli_in_process("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = tmp_path / "out" / "runs" / "CAE" / "seed0"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["checkpoint"] == {"monitor": "val/probe_accuracy", "mode": "max"}
    with open(run_dir / "metrics.csv") as f:
        values = [float(r["val/probe_accuracy"]) for r in csv.DictReader(f) if r.get("val/probe_accuracy")]
    assert len(values) == 3
    judged = json.loads((run_dir / "result.json").read_text())["checkpoint"]
    best_epoch = values.index(max(values))
    assert f"epoch={best_epoch}" in judged, (judged, values)


def test_a_runs_wandb_directory_is_absolute_whatever_the_working_directory(tmp_path, monkeypatch):
    """A W&B service shared with a parent process (under pytest, under a SLURM job started from it) resolves a
    relative directory against its own working directory: the run's W&B files then landed beside the repository
    (seen after a CI run: ``out/runs/AE/seed0/wandb`` in the clone). The logger gets the absolute run directory."""
    from ae_lightning.suite.run import make_wandb_logger

    monkeypatch.chdir(tmp_path)
    info = {
        "wandb": {"mode": "offline", "project": "p"}, "suite_id": "s", "variant": "AE", "seed": 0,
        "suite_name": "s", "model": "Autoencoder", "dataset": "mnist",
    }  # fmt: skip
    logger = make_wandb_logger(info, Path("out/runs/AE/seed0"))
    assert logger.save_dir == str(tmp_path / "out" / "runs" / "AE" / "seed0")
