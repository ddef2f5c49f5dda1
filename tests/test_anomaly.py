"""Anomaly detection: the detection metrics against brute force, the normal-classes split, the scores through the
capability contract, and a suite to a finished report with its anomaly section, figures and baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from ae_lightning import Autoencoder, ImageDataModule, VariationalAutoencoder
from ae_lightning.distances import knn_distance
from ae_lightning.errors import ConfigError, DataNotFoundError
from ae_lightning.evaluation.anomaly import (
    anomaly_scores,
    calibrated_threshold,
    detection_metrics,
    fpr_at_tpr,
    threshold_metrics,
)
from ae_lightning.suite.run import wandb_run_id

from conftest import has_row, write_small_suite
from datasets import write_image_folder, write_mvtec_like
from test_cli import cli, cli_in_process


def brute_auroc(scores: torch.Tensor, is_anomaly: torch.Tensor) -> float:
    positive, negative = scores[is_anomaly], scores[~is_anomaly]
    wins = (positive[:, None] > negative[None, :]).float() + 0.5 * (positive[:, None] == negative[None, :]).float()
    return wins.mean().item()


def brute_fpr_at_95tpr(scores: torch.Tensor, is_anomaly: torch.Tensor) -> float:
    best = 1.0
    for threshold in scores.unique():
        flagged = scores >= threshold
        if flagged[is_anomaly].float().mean() >= 0.95:
            best = min(best, flagged[~is_anomaly].float().mean().item())
    return best


def test_detection_metrics_have_their_known_answers():
    is_anomaly = torch.tensor([False] * 50 + [True] * 50)
    perfect = torch.arange(100.0)
    assert detection_metrics(perfect, is_anomaly) == {"auroc": 1.0, "auprc": 1.0, "fpr_at_95tpr": 0.0}
    reversed_ = detection_metrics(-perfect, is_anomaly)
    assert reversed_["auroc"] == 0.0 and reversed_["fpr_at_95tpr"] == 1.0
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        scores = torch.randn(300, generator=generator)
        labels = torch.rand(300, generator=generator) < 0.3
        scores = scores + labels.float() * 0.8
        metrics = detection_metrics(scores, labels)
        assert metrics["auroc"] == pytest.approx(brute_auroc(scores, labels), abs=1e-6)
        assert metrics["fpr_at_95tpr"] == pytest.approx(brute_fpr_at_95tpr(scores, labels), abs=1e-6)
        assert fpr_at_tpr(scores, labels, 1.0) == pytest.approx(
            (scores[~labels] >= scores[labels].min()).float().mean().item()
        )
        assert labels.float().mean() < metrics["auprc"] <= 1


def test_knn_distance_is_the_mean_distance_to_the_nearest_standardised_neighbours():
    generator = torch.Generator().manual_seed(1)
    train, test = torch.randn(50, 4, generator=generator) * 3 + 1, torch.randn(7, 4, generator=generator)
    mean, std = train.mean(0), train.std(0)
    distances = torch.cdist((test - mean) / std, (train - mean) / std)
    expected = distances.sort(1).values[:, :3].mean(1)
    assert torch.allclose(knn_distance(train, test, 3), expected, atol=1e-5)


def test_edge_cases_give_nan_or_count_plainly():
    is_anomaly = torch.tensor([False, True, False, True])
    nan = detection_metrics(torch.tensor([0.1, float("nan"), 0.2, 0.3]), is_anomaly)  # a diverged model's scores
    assert all(v != v for v in nan.values())
    # one overflowed (infinite) score ranks as the most anomalous, as it is: the metrics stay defined
    infinite = detection_metrics(torch.tensor([0.1, float("inf"), 0.2, 0.3]), is_anomaly)
    assert infinite == detection_metrics(torch.tensor([0.1, 9.0, 0.2, 0.3]), is_anomaly)
    assert detection_metrics(torch.tensor([0.1, 0.4, float("-inf"), 0.3]), is_anomaly)["auroc"] == pytest.approx(
        detection_metrics(torch.tensor([0.1, 0.4, -9.0, 0.3]), is_anomaly)["auroc"]
    )
    one_kind = detection_metrics(torch.rand(4), torch.zeros(4, dtype=torch.bool))
    assert all(v != v for v in one_kind.values())
    # a feature constant on train is centred, not scaled: a test value there counts as it is (not × 1e6)
    train = torch.cat([torch.randn(20, 1), torch.zeros(20, 1)], dim=1)
    test = torch.tensor([[train[0, 0].item(), 0.5]])
    assert knn_distance(train, test, 1).item() == pytest.approx(0.5, abs=1e-5)


def test_prepare_makes_images_what_the_model_was_trained_on():
    from ae_lightning.loading import Prepare

    grey = Prepare({"binarize": "none"}, (1, 8, 8))
    rgb = torch.full((2, 3, 8, 8), 0.4)
    assert torch.allclose(grey(rgb), torch.full((2, 1, 8, 8), 0.4))  # float RGB to grey, not rounded to 0/1
    assert torch.equal(grey(torch.full((1, 1, 8, 8), 255, dtype=torch.uint8)), torch.ones(1, 1, 8, 8))
    with pytest.raises(ConfigError, match=r"float images must lie in \[0, 1\]"):
        grey(torch.full((1, 1, 8, 8), 200.0))
    binary = Prepare({"binarize": "threshold"}, (1, 8, 8))
    assert set(binary(torch.full((1, 1, 8, 8), 0.7)).unique().tolist()) == {1.0}  # floats are binarised too
    resized = Prepare({"image_size": 8}, (1, 8, 8))(torch.zeros(1, 1, 16, 12, dtype=torch.uint8))
    assert resized.shape == (1, 1, 8, 8)


def test_dynamic_binarisation_evaluates_one_fixed_draw_of_the_training_images(data_root):
    dm = datamodule(data_root, binarize="dynamic")
    first, again = dm.evaluated_train_images(), datamodule(data_root, binarize="dynamic").evaluated_train_images()
    assert set(first.unique().tolist()) == {0, 255} and torch.equal(first, again)
    assert len(set(dm.splits["train"].images.unique().tolist())) > 2  # training itself draws afresh each step


def datamodule(root, **kwargs) -> ImageDataModule:
    dm = ImageDataModule(name="mnist", root=str(root), download=False, val_size=100, batch_size=50, **kwargs)
    dm.setup("fit")
    return dm


def test_normal_classes_keep_train_and_validation_normal_and_mark_the_test_split(data_root):
    dm = datamodule(data_root, normal_classes=[3, 5])
    for split in ("train", "val"):
        assert set(dm.splits[split].labels.tolist()) <= {3, 5} and len(dm.splits[split].labels) > 0
    test_labels = dm.splits["test"].labels
    assert len(test_labels) == 200  # every test image stays
    assert torch.equal(dm.test_is_anomaly, ~torch.isin(test_labels, torch.tensor([3, 5])))
    plain = datamodule(data_root)
    assert plain.test_is_anomaly is None and len(plain.splits["train"].labels) > len(dm.splits["train"].labels)


def test_calibration_images_are_normal_validation_images_never_trained_or_tested_on(tmp_path):
    import numpy as np

    # every image unique (its first pixel is its index), so a shared image would be the same index in two splits
    count = 2000
    images = np.zeros((count, 1, 8, 8), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = np.arange(count) % 256, np.arange(count) // 256
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(count) % 4)

    def index(split: str) -> set[int]:
        pixels = dm.splits[split].images[:, 0, 0].long()
        return set((pixels[:, 0] + 256 * pixels[:, 1]).tolist())

    dm = ImageDataModule(name="tensors", root=str(tmp_path / "d.npz"), val_size=500, test_size=200, normal_classes=[1])
    dm.setup()
    train, val, calibration, test = (index(split) for split in ("train", "val", "calibration", "test"))
    assert not (calibration & train) and not (calibration & val) and not (calibration & test)
    assert set(dm.splits["calibration"].labels.tolist()) == {1}  # normal images only
    normal_val = len(dm.splits["val"].labels) + len(calibration)
    assert len(calibration) == normal_val // 5 and normal_val > 100  # default: a fifth of the normal validation
    fixed = ImageDataModule(
        name="tensors", root=str(tmp_path / "d.npz"), val_size=500, test_size=200, normal_classes=[1],
        calibration_size=40,
    )  # fmt: skip
    fixed.setup()
    assert len(fixed.splits["calibration"].labels) == 40 and len(fixed.splits["val"].labels) == normal_val - 40
    none = ImageDataModule(
        name="tensors", root=str(tmp_path / "d.npz"), val_size=500, test_size=200, normal_classes=[1],
        calibration_size=0,
    )  # fmt: skip
    none.setup()
    assert len(none.splits["calibration"].labels) == 0 and len(none.splits["val"].labels) == normal_val
    plain = ImageDataModule(name="tensors", root=str(tmp_path / "d.npz"), val_size=500, test_size=200)
    plain.setup()
    assert "calibration" not in plain.splits
    with pytest.raises(ConfigError, match="calibration_size=5 applies to anomaly detection"):
        ImageDataModule(name="tensors", root=str(tmp_path / "d.npz"), calibration_size=5)
    with pytest.raises(ConfigError, match=r"calibration_size=-1 must be an int >= 0"):
        ImageDataModule(name="tensors", root=str(tmp_path / "d.npz"), normal_classes=[1], calibration_size=-1)
    with pytest.raises(ConfigError, match=r"calibration_size=900 must be smaller than the \d+ normal validation"):
        ImageDataModule(
            name="tensors", root=str(tmp_path / "d.npz"), val_size=500, normal_classes=[1], calibration_size=900
        ).setup()


def test_a_calibrated_threshold_holds_its_false_positive_rate():
    """Normal scores ~ N(0, 1), so a threshold t's false-positive rate on new normal images is exactly 1 − Φ(t):
    over 4000 calibration sets of 199 images the mean realised rate is the conformal promise 1 − ⌈200 · 0.95⌉ / 200
    = 0.05 (within 3 Monte Carlo s.e.; the empirical 95 % quantile ⌊199 · 0.95⌋ = 189 would give 0.055, 14 s.e.
    off), and one threshold's rate on 20 000 fresh normal draws lies in the binomial interval around 1 − Φ(t)."""
    normal = torch.distributions.Normal(0.0, 1.0)
    generator = torch.Generator().manual_seed(0)
    realised = []
    for _ in range(4000):
        threshold, promised = calibrated_threshold(torch.randn(199, generator=generator), 0.05)
        realised.append(1 - float(normal.cdf(torch.tensor(threshold))))
    realised = torch.tensor(realised)
    assert promised == pytest.approx(0.05)
    standard_error = float(realised.std()) / len(realised) ** 0.5
    assert abs(float(realised.mean()) - 0.05) < 3 * standard_error, (float(realised.mean()), standard_error)
    fresh = torch.randn(20_000, generator=generator)
    rate = 1 - float(normal.cdf(torch.tensor(threshold)))
    measured = threshold_metrics(torch.cat([fresh, torch.full((10,), 99.0)]), torch.arange(20_010) >= 20_000, threshold)
    assert abs(measured["at_threshold/fpr"] - rate) < 3 * (rate * (1 - rate) / 20_000) ** 0.5
    # too few calibration images for the target: the largest score, which promises 1/(n + 1)
    assert calibrated_threshold(torch.arange(20.0), 0.01) == (19.0, pytest.approx(1 / 21))
    assert calibrated_threshold(torch.arange(99.0), 0.01) == (98.0, pytest.approx(0.01))  # n = 1/α − 1 suffices
    nan_threshold, _ = calibrated_threshold(torch.tensor([1.0, float("nan")]), 0.1)
    assert nan_threshold != nan_threshold  # NaN: no threshold from a diverged model
    with pytest.raises(ValueError, match="fpr=1.5 must be in"):
        calibrated_threshold(torch.arange(10.0), 1.5)


def test_too_few_calibration_images_for_the_target_rate_are_said_before_the_runs():
    from ae_lightning.suite.preflight import count_notes

    sizes = {"train": 500, "val": 40, "calibration": 10, "test": 2000}
    (note,) = count_notes(sizes, {"anomaly_fpr": 0.05}, generative=False)
    assert "the calibration split has 10 normal images, too few for evaluation.anomaly_fpr=0.05 (that needs 19)" in note
    assert "promises a false-positive rate of 1/11 only" in note
    assert count_notes({**sizes, "calibration": 19}, {"anomaly_fpr": 0.05}, generative=False) == []


def test_rates_at_a_threshold_have_their_known_answers():
    scores = torch.tensor([0.1, 0.2, 0.3, 0.9, 0.4, 0.8, 0.7, 0.05])
    is_anomaly = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]).bool()
    # above 0.35: normal 0.9 (1 of 4 normal), anomalies 0.4, 0.8, 0.7 (3 of 4): precision 3/4
    assert threshold_metrics(scores, is_anomaly, 0.35) == {
        "at_threshold/fpr": 0.25, "at_threshold/tpr": 0.75, "at_threshold/precision": 0.75,
    }  # fmt: skip
    nothing = threshold_metrics(scores, is_anomaly, 1.0)
    assert nothing["at_threshold/fpr"] == 0 and nothing["at_threshold/tpr"] == 0
    assert nothing["at_threshold/precision"] != nothing["at_threshold/precision"]  # NaN: nothing flagged
    with_inf = threshold_metrics(torch.tensor([0.1, float("inf"), 0.2, 0.3]), torch.tensor([0, 1, 0, 1]).bool(), 0.25)
    assert with_inf["at_threshold/tpr"] == 1.0 and with_inf["at_threshold/fpr"] == 0.0  # +inf is flagged


def test_bad_normal_classes_get_one_message_each(data_root, tmp_path):
    with pytest.raises(ConfigError, match=r"class 12 is not in the data; its classes are \[0, 1, 2"):
        datamodule(data_root, normal_classes=[12])
    with pytest.raises(ConfigError, match="the test split has no anomaly"):
        datamodule(data_root, normal_classes=list(range(10)))
    with pytest.raises(ConfigError, match="must be a non-empty list of distinct class labels"):
        ImageDataModule(name="mnist", root=str(data_root), normal_classes=[])
    with pytest.raises(ConfigError, match="must be a non-empty list of distinct class labels"):
        ImageDataModule(name="mnist", root=str(data_root), normal_classes=[1, 1])
    flat = write_image_folder(tmp_path / "flat", 30, (1, 16, 16), classes=False)
    with pytest.raises(ConfigError, match="needs labelled data"):
        ImageDataModule(name="folder", root=str(flat), val_size=5, normal_classes=[0]).setup("fit")


def test_scores_come_through_the_capability_contract(data_root):
    dm = datamodule(data_root, normal_classes=[0])
    images, train = dm.splits["test"].images[:40], dm.splits["train"].images[:60]
    torch.manual_seed(0)
    ae, vae = Autoencoder(input_shape=(1, 28, 28)).eval(), VariationalAutoencoder(input_shape=(1, 28, 28)).eval()
    wanted = ("reconstruction", "elbo", "iw_nll", "knn_code")
    ae_codes = ae.encode(train.float() / 255).detach()
    ae_scores = anomaly_scores(ae, ae_codes, images, wanted, knn=5, iw_samples=4)
    assert set(ae_scores) == {"reconstruction", "knn_code"}  # no posterior: no ELBO or IW-NLL
    x = images.float() / 255
    with torch.no_grad():
        expected = (ae(x) - x).pow(2).flatten(1).mean(1)
    assert torch.allclose(ae_scores["reconstruction"], expected, atol=1e-6)
    assert torch.allclose(ae_scores["knn_code"], knn_distance(ae_codes, ae.encode(x).detach(), 5), atol=1e-5)
    vae_codes = vae.encode(train.float() / 255).detach()
    vae_scores = anomaly_scores(vae, vae_codes, images, wanted, knn=5, iw_samples=4)
    assert set(vae_scores) == set(wanted) and all(len(v) == 40 for v in vae_scores.values())
    assert (vae_scores["elbo"] > 0).all() and (vae_scores["iw_nll"] > 0).all()  # nats of a Bernoulli model


PROTOCOL_CLASSES = [1, 2]


@pytest.fixture(scope="module")
def anomaly_suite(tmp_path_factory, data_root):
    """The one-class protocol over classes 1 and 2: AE and VAE, two seeds, one epoch (8 runs)."""
    tmp_path = tmp_path_factory.mktemp("anomaly")
    variants = [{"name": "AE", "model": "Autoencoder"}, {"name": "VAE", "model": "VariationalAutoencoder"}]
    suite = write_small_suite(
        tmp_path / "a.yaml", data_root, "anomaly", variants, 1, "offline", seeds=[0, 1],
        one_class=PROTOCOL_CLASSES,
    )  # fmt: skip
    count = cli_in_process("compare", str(suite), "--count", cwd=tmp_path)
    assert count.stdout.strip() == "8"  # variants × classes × seeds: the size of a SLURM array
    # two runs at once: each run's process spends most of its ~10 s starting up, which overlaps well on 2 cores
    result = cli("compare", str(suite), "--out", str(tmp_path / "out"), "--parallel", "2", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[8/8 VAE class 2 seed 1] done" in result.stdout
    return tmp_path / "out"


def run_of(out: Path, variant: str, normal_class: int = 1, seed: int = 0) -> Path:
    return out / "runs" / variant / f"class{normal_class}" / f"seed{seed}"


def test_a_suite_measures_detection_and_reports_it(anomaly_suite):
    records = json.loads((anomaly_suite / "summary.json").read_text())
    assert sorted((r["variant"], r["normal_class"], r["seed"]) for r in records) == [
        (v, c, s) for v in ("AE", "VAE") for c in PROTOCOL_CLASSES for s in (0, 1)
    ]
    ae = next(r for r in records if r["variant"] == "AE")
    vae = next(r for r in records if r["variant"] == "VAE")
    assert 0 <= ae["metrics"]["anomaly/reconstruction/auroc"] <= 1 and "anomaly/knn_code/auprc" in ae["metrics"]
    assert "anomaly/elbo/auroc" not in ae["metrics"] and "anomaly/iw_nll/fpr_at_95tpr" in vae["metrics"]
    assert "probe/accuracy" not in ae["metrics"]  # one-class training data: no class probes
    assert "gen/fd_domain" not in vae["metrics"]  # nor a domain classifier that knows the normal classes only
    for record in records:  # each run's own normal class
        saved = torch.load(record["run_dir"] + "/anomaly_scores.pt", weights_only=True)
        assert torch.equal(saved["is_anomaly"], saved["labels"] != record["normal_class"])
        config = yaml.safe_load((Path(record["run_dir"]) / "config.yaml").read_text())
        assert config["data"]["normal_classes"] == [record["normal_class"]]
        info = json.loads((Path(record["run_dir"]) / "run.json").read_text())
        assert info["normal_class"] == record["normal_class"]
        # thresholds from the calibration images alone, and the test split's rates at them
        thresholds = json.loads((Path(record["run_dir"]) / "thresholds.json").read_text())
        metrics = record["metrics"]
        assert thresholds["fpr"] == 0.01 and thresholds["calibration_images"] == metrics["eval/calibration_images"] > 0
        for score, values in saved["scores"].items():
            calibration = torch.tensor(thresholds["scores"][score]["calibration_scores"])
            threshold, _ = calibrated_threshold(calibration, 0.01)
            assert thresholds["scores"][score]["threshold"] == threshold == metrics[f"anomaly/{score}/threshold"]
            flagged, normal = (values.double() > threshold).double(), ~saved["is_anomaly"]
            assert metrics[f"anomaly/{score}/at_threshold/fpr"] == pytest.approx(float(flagged[normal].mean()))
            assert metrics[f"anomaly/{score}/at_threshold/tpr"] == pytest.approx(float(flagged[~normal].mean()))
        (wandb_run,) = (Path(record["run_dir"]) / "wandb").glob("offline-run-*")  # its own W&B run, not shared
        assert wandb_run.name.endswith(
            wandb_run_id(info["suite_id"], record["variant"], record["seed"], info["normal_class"])
        )
    # overall: each seed's mean over the classes, then statistics over seeds
    key = "anomaly/reconstruction/auroc"
    per_seed = [
        sum(r["metrics"][key] for r in records if r["variant"] == "AE" and r["seed"] == seed) / 2 for seed in (0, 1)
    ]
    aggregate = json.loads((anomaly_suite / "aggregate.json").read_text())
    assert aggregate["AE"][key]["n"] == 2 and aggregate["AE"][key]["mean"] == pytest.approx(sum(per_seed) / 2)
    comparison = json.loads((anomaly_suite / "comparison.json").read_text())
    assert comparison[key]["best"] in ("AE", "VAE") and comparison[key]["n_seeds"] == 2
    assert comparison["anomaly/elbo/auroc"]["best"] == "VAE"  # the only variant with the score
    # per class: that class's runs only, compared within the class
    per_class = json.loads((anomaly_suite / "per_class.json").read_text())
    assert sorted(per_class) == ["1", "2"]
    class2 = [r["metrics"][key] for r in records if r["variant"] == "VAE" and r["normal_class"] == 2]
    assert per_class["2"]["aggregate"]["VAE"][key]["mean"] == pytest.approx(sum(class2) / 2)
    assert per_class["1"]["comparison"][key]["best"] in ("AE", "VAE")
    baseline = json.loads((anomaly_suite / "pixel_baseline.json").read_text())
    assert sorted(baseline["per_class"]) == ["1", "2"]
    assert baseline["anomaly/pca/auroc"] == pytest.approx(
        sum(b["anomaly/pca/auroc"] for b in baseline["per_class"].values()) / 2
    )
    report = (anomaly_suite / "report.md").read_text()
    assert "## Anomaly detection, over the 2 normal classes" in report
    assert "the one-class protocol (Ruff et al. 2018) over classes [1, 2]" in report
    assert "## Anomaly detection per normal class" in report and "| variant | 1 | 2 |" in report
    assert report.index("## Anomaly detection") < report.index("## Reconstruction")  # the suite's task first
    assert f"PCA (32 components) reconstruction error AUROC {baseline['anomaly/pca/auroc']:.4g}" in report
    assert (
        "Realised false-positive rate on the test split at the threshold set on the normal calibration images for"
        " a target of 0.01"
        in report
        and "(`anomaly/<score>/at_threshold/precision`)" in report
    )
    calibration = min(r["metrics"]["eval/calibration_images"] for r in records)  # ~2 normal images of 100: too few
    assert f"set on its {int(calibration)}" in report and f"which promises only 1/{int(calibration) + 1}" in report
    for figure in ("anomaly_roc.png", "anomaly_histograms.png", "anomaly_worst.png"):
        assert figure in report and (anomaly_suite / figure).is_file()
    with open(anomaly_suite / "summary.csv") as f:
        header = f.readline().strip().split(",")
    assert header[:4] == ["variant", "model", "normal_class", "seed"]
    # the W&B summary run's table: a row per run, with its class
    (table_file,) = (anomaly_suite / "wandb").glob("offline-run-*/files/media/table/battery_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:4] == ["variant", "model", "normal_class", "seed"] and len(table["data"]) == 8


def test_protocol_records_average_over_classes_and_need_every_class():
    from ae_lightning.evaluation.report_tables import protocol_records

    def run(variant, normal_class, seed, value, status="done"):
        metrics = {"anomaly/reconstruction/auroc": value} if status == "done" else {}
        return {
            "variant": variant, "model": "Autoencoder", "seed": seed, "normal_class": normal_class,
            "status": status, "error": None, "metrics": metrics, "run_dir": f"{variant}/{normal_class}/{seed}",
        }  # fmt: skip

    merged = protocol_records(
        [run("AE", 0, 0, 0.6), run("AE", 1, 0, 0.8), run("AE", 0, 1, 0.7), run("AE", 1, 1, 0.5, "failed")]
    )
    assert [(r["seed"], r["status"]) for r in merged] == [(0, "done"), (1, "failed")]
    assert merged[0]["metrics"]["anomaly/reconstruction/auroc"] == pytest.approx(0.7)
    assert merged[1]["metrics"] == {} and "normal class(es) [1] did not finish" in merged[1]["error"]


def test_worst_cases_are_the_normal_images_scored_highest_and_the_anomalies_scored_lowest():
    from ae_lightning.suite.run import worst_cases

    scores = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.8, 0.05])
    is_anomaly = torch.tensor([False, False, False, True, True, True])
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1)
    worst = worst_cases(scores, is_anomaly, images, count=2)
    assert worst["false_positive_index"].tolist() == [1, 2] and worst["false_negative_index"].tolist() == [5, 3]
    assert worst["false_positives"].flatten().tolist() == [1, 2]
    assert worst["false_negative_scores"].tolist() == pytest.approx([0.05, 0.2])


def test_bad_one_class_settings_are_refused_before_anything_runs(tmp_path, data_root):
    variants = [{"name": "AE", "model": "Autoencoder"}]
    flat = write_image_folder(tmp_path / "flat", 30, (1, 16, 16), classes=False)
    cases = [
        ({"one_class": [1, 12]}, "one_class: class 12 is not in the data; its classes are 0 to 9"),
        ({"one_class": []}, "one_class=[] must be a non-empty list of distinct class labels"),
        ({"one_class": [1, 1]}, "one_class=[1, 1] must be a non-empty list of distinct class labels"),
        (
            {"one_class": [1], "variants": [{"name": "AE", "model": "Autoencoder", "data": {"normal_classes": [2]}}]},
            "AE also has data.normal_classes=[2]: remove one of them",
        ),
        (
            {"one_class": [0], "data": {"name": "folder", "root": str(flat), "val_size": 5}},
            "needs labelled data; folder at",
        ),
        ({"one_class": [1], "evaluation": {"anomaly_fpr": 1.5}}, "evaluation.anomaly_fpr=1.5 is the target false-"),
        (
            {
                "one_class": [1],
                "data": {"name": "mnist", "root": str(data_root), "val_size": 100, "calibration_size": 50},
            },
            "data.calibration_size=50 must be smaller than the",
        ),
        (
            {"data": {"name": "mnist", "root": str(data_root), "val_size": 100, "calibration_size": 5}},
            "data.calibration_size=5 applies to anomaly detection",
        ),
    ]
    for extra, message in cases:
        own = extra.pop("variants", variants)
        suite = write_small_suite(tmp_path / "s.yaml", data_root, "bad", own, 1, "disabled", **extra)
        result = cli_in_process("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert message in result.stderr, (message, result.stderr[-2000:])
        assert not (tmp_path / "out").exists()
    suite = write_small_suite(tmp_path / "s.yaml", data_root, "bad", variants, 1, "disabled", one_class=[1])
    result = cli_in_process("tune", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2 and "runs the one-class protocol (one_class=[1]); tune a suite" in result.stderr


def test_an_unknown_anomaly_score_is_refused_before_anything_runs(tmp_path, data_root):
    suite = write_small_suite(
        tmp_path / "s.yaml", data_root, "bad", [{"model": "Autoencoder"}], 1, "disabled",
        evaluation={"anomaly_scores": ["reconstruction", "mahalanobis"]},
    )  # fmt: skip
    result = cli_in_process("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "evaluation.anomaly_scores: 'mahalanobis' is not a score; allowed: ['reconstruction'" in result.stderr
    assert not (tmp_path / "out" / "runs").exists()


def readme_example() -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("<!-- example: load -->")
    block = text[text.index("```python\n", start) + len("```python\n") :]
    return block[: block.index("```")]


def test_load_gives_the_judged_model_and_the_readme_example_runs(anomaly_suite, data_root, monkeypatch):
    import ae_lightning

    run_dir = run_of(anomaly_suite, "VAE")
    model = ae_lightning.load(run_dir)
    assert isinstance(model, VariationalAutoencoder) and not model.training
    assert model.data_config["normal_classes"] == [1] and model.checkpoint_path.parent.name == "checkpoints"
    saved = torch.load(run_dir / "anomaly_scores.pt", weights_only=True)
    test_images = datamodule(data_root, normal_classes=[1]).splits["test"].images
    x = model.prepare(test_images)
    assert x.dtype == torch.float32 and float(x.max()) <= 1
    # the battery's scores again, from the loaded model: the same checkpoint, the same images
    assert torch.allclose(model.anomaly_score(x, "reconstruction"), saved["scores"]["reconstruction"], atol=1e-6)
    with pytest.raises(ConfigError, match="score='knn_code' needs reference_codes"):
        model.anomaly_score(x, "knn_code")
    with pytest.raises(ConfigError, match="'elbo' needs a posterior; Autoencoder has none"):
        ae_lightning.load(run_of(anomaly_suite, "AE")).anomaly_score(x, "elbo")
    with pytest.raises(ConfigError, match="does not exist"):
        ae_lightning.load(anomaly_suite / "runs" / "nothing")
    # the README's example, as written, on this run and these images
    namespace = {"run_dir": str(run_dir), "images": test_images}
    exec(readme_example(), namespace)
    assert torch.equal(namespace["scores"], model.anomaly_score(x, "reconstruction"))


def test_the_score_command_writes_one_row_per_image(anomaly_suite, data_root, tmp_path):
    import csv

    import numpy as np

    import ae_lightning

    images = datamodule(data_root, normal_classes=[1]).splits["test"].images[:30]
    np.savez(tmp_path / "new.npz", images=images.numpy())
    run_dir = run_of(anomaly_suite, "AE")
    out = tmp_path / "scores.csv"
    result = cli_in_process(
        "score", str(run_dir), "--images", str(tmp_path / "new.npz"), "--out", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30 and list(rows[0]) == ["path", "reconstruction", "knn_code", "is_anomaly", "rank"]
    threshold = json.loads((run_dir / "thresholds.json").read_text())["scores"]["reconstruction"]["threshold"]
    assert [int(r["is_anomaly"]) for r in rows] == [int(float(r["reconstruction"]) > threshold) for r in rows]
    assert (
        f"flagged as anomalies (reconstruction > {threshold:.6g}, the threshold for a false-positive rate of 0.01"
        in result.stdout
    )
    assert rows[0]["path"] == f"{tmp_path / 'new.npz'}#0"
    expected = ae_lightning.load(run_dir).anomaly_score(images, "reconstruction")
    assert [float(r["reconstruction"]) for r in rows] == pytest.approx(expected.tolist(), rel=1e-5)
    ranks = sorted(rows, key=lambda r: int(r["rank"]))
    assert [int(r["rank"]) for r in ranks] == list(range(1, 31))
    assert float(ranks[0]["reconstruction"]) == max(float(r["reconstruction"]) for r in rows)
    bad = cli_in_process("score", str(run_dir), "--images", str(tmp_path / "new.npz"), "--scores", "elbo", cwd=tmp_path)
    assert bad.returncode == 2 and "--scores elbo: not a score of Autoencoder; allowed: ['reconstruction'" in bad.stderr


def test_score_decides_at_another_rate_and_keeps_what_it_could_read(anomaly_suite, data_root, tmp_path):
    import csv

    from ae_lightning.scoring import main as score_main

    run_dir = run_of(anomaly_suite, "AE")
    thresholds = json.loads((run_dir / "thresholds.json").read_text())["scores"]["reconstruction"]
    folder = write_image_folder(tmp_path / "new", 12, (1, 28, 28), classes=False)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "scores.csv"
    argv = [str(run_dir), "--images", str(folder), "--out", str(out), "--scores", "reconstruction", "--batch-size", "5"]
    assert score_main([*argv, "--fpr", "0.5"]) == 1  # one unreadable file: rows written, then exit 1
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and not any("broken" in r["path"] for r in rows)
    half, _ = calibrated_threshold(torch.tensor(thresholds["calibration_scores"]), 0.5)
    assert [int(r["is_anomaly"]) for r in rows] == [int(float(r["reconstruction"]) > half) for r in rows]
    out.unlink()
    for bad, message in [
        (["--fpr", "1.5"], "--fpr 1.5: a false-positive rate must be in (0, 1)"),
        (["--fpr", "0"], "--fpr 0.0: a false-positive rate must be in (0, 1)"),
        (["--batch-size", "0"], "--batch-size 0 must be >= 1"),
    ]:
        result = cli_in_process("score", *argv, *bad, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert not out.exists()  # refused before anything was written
    bare = tmp_path / "bare"  # a run without calibration: no is_anomaly column, and --fpr is refused
    bare.mkdir()
    (bare / "checkpoints").mkdir()
    import shutil

    for name in ("config.yaml", "run.json", "result.json"):
        shutil.copy(run_dir / name, bare / name)
    for checkpoint in (run_dir / "checkpoints").glob("*.ckpt"):
        shutil.copy(checkpoint, bare / "checkpoints" / checkpoint.name)
    result = cli_in_process("score", str(bare), *argv[1:], "--fpr", "0.1", cwd=tmp_path)
    assert result.returncode == 2 and "has no calibration scores for 'reconstruction'" in result.stderr
    assert score_main([str(bare), *argv[1:]]) == 1
    with open(out) as f:
        assert "is_anomaly" not in f.readline()


def test_pixel_auroc_pools_every_pixel_of_every_image():
    from ae_lightning.evaluation.anomaly import pixel_auroc

    generator = torch.Generator().manual_seed(3)
    masks = torch.rand(4, 6, 6, generator=generator) < 0.2
    maps = torch.rand(4, 6, 6, generator=generator) + masks.float() * 0.5
    assert pixel_auroc(maps, masks) == pytest.approx(brute_auroc(maps.flatten(), masks.flatten()), abs=1e-6)
    assert pixel_auroc(masks.float(), masks) == 1.0
    assert pixel_auroc(maps, torch.zeros_like(masks)) != pixel_auroc(maps, torch.zeros_like(masks))  # NaN
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_auroc(maps[:2], masks)


def brute_regions(mask: torch.Tensor) -> list[set[tuple[int, int]]]:
    """8-connected regions of one bool mask by flood fill (independent of scipy)."""
    seen, regions = set(), []
    height, width = mask.shape
    for start in zip(*torch.nonzero(mask, as_tuple=True)):
        start = (int(start[0]), int(start[1]))
        if start in seen:
            continue
        region, stack = set(), [start]
        while stack:
            i, j = stack.pop()
            if (i, j) in seen or not (0 <= i < height and 0 <= j < width) or not mask[i, j]:
                continue
            seen.add((i, j))
            region.add((i, j))
            stack += [(i + di, j + dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]
        regions.append(region)
    return regions


def brute_aupro(maps: torch.Tensor, masks: torch.Tensor, limit: float = 0.3) -> float:
    """One threshold at a time: every distinct value, flag the pixels at or above it; PRO = mean over regions of the
    share flagged, FPR = share of defect-free pixels flagged; trapezoids up to ``limit``, interpolated there."""
    import numpy as np

    regions = [(index, region) for index, mask in enumerate(masks) for region in brute_regions(mask)]
    points = [(0.0, 0.0)]
    for threshold in sorted(set(maps.flatten().tolist()), reverse=True):
        flagged = maps >= threshold
        fpr = float((flagged & ~masks).sum()) / float((~masks).sum())
        pro = sum(sum(bool(flagged[i][p]) for p in region) / len(region) for i, region in regions) / len(regions)
        points.append((fpr, pro))
    fpr, pro = np.array(points).T
    keep = fpr <= limit
    x, y = list(fpr[keep]), list(pro[keep])
    if x[-1] < limit:
        x.append(limit)
        y.append(float(np.interp(limit, fpr, pro)))
    return float(np.trapezoid(y, x)) / limit


def test_aupro_matches_brute_force_and_weighs_every_region_alike():
    from ae_lightning.evaluation.anomaly import pixel_aupro

    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(5, 9, 9, dtype=torch.bool)
    masks[0, 1:4, 1:4] = True  # a 3×3 region
    masks[0, 6, 6] = masks[0, 7, 7] = True  # two diagonal pixels: one 8-connected region
    masks[1, 0:2, 5:9] = True
    masks[3, 4, 0:9] = True
    for trial in range(3):
        maps = torch.rand(5, 9, 9, generator=generator) + 0.6 * masks * trial  # from useless to good
        maps = (maps * 20).round() / 20  # ties, as real maps have
        assert pixel_aupro(maps, masks) == pytest.approx(brute_aupro(maps, masks), abs=1e-12)
    assert pixel_aupro(masks.float(), masks) == pytest.approx(1.0)  # every defect pixel above every normal one
    big = torch.rand(20, 64, 64, generator=generator)
    big_masks = torch.zeros_like(big, dtype=torch.bool)
    big_masks[:10, 10:30, 10:30] = True
    assert pixel_aupro(big, big_masks) == pytest.approx(0.15, abs=0.01)  # random maps: PRO ≈ FPR, area 0.3²/2/0.3
    # a large defect found and a small one missed: half the regions, whatever their pixel counts
    masks = torch.zeros(2, 20, 20, dtype=torch.bool)
    masks[0, :10, :10], masks[1, 0, 0] = True, True
    maps = masks.float().clone()
    maps += torch.rand(2, 20, 20, generator=generator) * 0.01
    maps[1, 0, 0] = -1.0  # the one-pixel defect scores below every defect-free pixel
    assert pixel_aupro(maps, masks) == pytest.approx(brute_aupro(maps, masks), abs=1e-12)
    assert pixel_aupro(maps, masks) == pytest.approx(0.5)  # pixel-weighted it would be 100/101


def test_auroc_is_exact_on_many_pixels():
    """CI once read 1.0000001 for an MVTec pixel AUROC: torchmetrics accumulates its curve in float32 (this very
    set reads 1.0000001 there)."""
    from ae_lightning.evaluation.anomaly import auroc, pixel_auroc

    generator = torch.Generator().manual_seed(7)
    masks = torch.rand(61, 64, 64, generator=generator) < 0.24  # 250 k pixels
    separated = torch.rand(masks.shape, generator=generator) * 0.5 + masks.float() * 0.5
    assert pixel_auroc(separated, masks) == 1.0
    assert pixel_auroc(-separated, masks) == 0.0
    assert pixel_auroc(torch.zeros(masks.shape), masks) == 0.5  # all tied: a coin flip, not 0 or 1
    is_anomaly = torch.tensor([False, False, True, True])
    assert auroc(torch.tensor([0.0, 1.0, 1.0, 2.0]), is_anomaly) == 0.875  # one tie counts half


def test_the_anomaly_map_is_where_reconstruction_fails_and_its_mean_is_the_score():
    torch.manual_seed(0)
    model = Autoencoder(input_shape=(3, 8, 8)).eval()
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    maps = model.anomaly_map(images)
    x = images.float() / 255
    with torch.no_grad():
        expected = (model(x) - x).pow(2).mean(1)
    assert maps.shape == (5, 8, 8) and torch.allclose(maps, expected, atol=1e-6)
    assert torch.allclose(model.anomaly_score(images, "reconstruction"), expected.flatten(1).mean(1), atol=1e-6)


def mvtec(root: Path, **kwargs) -> ImageDataModule:
    dm = ImageDataModule(name="mvtec", root=str(root), download=False, val_size=10, batch_size=16, **kwargs)
    dm.setup("fit")
    return dm


def test_an_mvtec_folder_reads_as_a_detection_split_with_masks(tmp_path):
    root = write_mvtec_like(tmp_path / "bottle")
    dm = mvtec(root)
    # train/good, split for validation and calibration (a fifth of the validation images)
    assert len(dm.splits["calibration"].images) == 2
    assert sum(len(dm.splits[split].images) for split in ("train", "val", "calibration")) == 80
    assert set(dm.splits["train"].labels.tolist()) == {0}
    test = dm.splits["test"]
    assert test.labels.tolist() == [0] * 20 + [1] * 10 + [2] * 10  # good, then scratch and spot (sorted)
    assert torch.equal(dm.test_is_anomaly, test.labels != 0)
    assert dm.test_masks.shape == (40, 24, 24) and dm.test_masks.dtype == torch.bool
    assert not dm.test_masks[:20].any() and all(dm.test_masks[i].sum() == 36 for i in range(20, 40))
    # each mask marks its image's defect: the bright square
    bright = (test.images[20:] == 255).all(1)
    assert torch.equal(bright & dm.test_masks[20:], dm.test_masks[20:])
    smaller = mvtec(root, image_size=12)
    assert smaller.splits["test"].images.shape[-2:] == (12, 12) and smaller.test_masks.shape == (40, 12, 12)
    assert set(smaller.test_masks[20:].flatten(1).sum(1).tolist()) == {9}  # nearest neighbour: still a mask
    without = mvtec(write_mvtec_like(tmp_path / "plain", masks=False))
    assert without.test_masks is None and without.test_is_anomaly.sum() == 20


def test_mvtec_folders_that_cannot_be_read_get_one_message_each(tmp_path):
    from torchvision.io import write_png

    missing = write_mvtec_like(tmp_path / "missing")
    (missing / "ground_truth" / "spot" / "003_mask.png").unlink()
    with pytest.raises(ConfigError, match=r"masks do not match images: no mask for test/spot/003.png"):
        mvtec(missing)
    orphan = write_mvtec_like(tmp_path / "orphan")
    write_png(torch.zeros(1, 24, 24, dtype=torch.uint8), str(orphan / "ground_truth" / "spot" / "099_mask.png"))
    with pytest.raises(ConfigError, match=r"ground_truth/spot/099_mask.png is the mask of no test image"):
        mvtec(orphan)
    sized = write_mvtec_like(tmp_path / "sized")
    write_png(torch.zeros(1, 12, 12, dtype=torch.uint8), str(sized / "ground_truth" / "scratch" / "000_mask.png"))
    with pytest.raises(ConfigError, match=r"000_mask.png is \[12, 12\] pixels, its image test/scratch/000.png"):
        mvtec(sized)
    good_only = write_mvtec_like(tmp_path / "good_only", defects=())
    with pytest.raises(ConfigError, match="the test split has no anomaly"):
        mvtec(good_only)
    extra = write_mvtec_like(tmp_path / "extra")
    (extra / "train" / "crack").mkdir()
    with pytest.raises(ConfigError, match=r"holds \['crack'\]; MVTec's training split is train/good/ only"):
        mvtec(extra)
    with pytest.raises(DataNotFoundError, match="is not in the MVTec AD layout"):
        mvtec(write_image_folder(tmp_path / "folder", 10, (1, 8, 8)))
    with pytest.raises(ConfigError, match="the normal class is train/good"):
        ImageDataModule(name="mvtec", root=str(extra), normal_classes=[1])
    with pytest.raises(ConfigError, match="data.test_size applies to data.name folder or tensors"):
        ImageDataModule(name="mvtec", root=str(extra), test_size=5)


@pytest.mark.slow
def test_an_mvtec_folder_runs_to_a_report_with_pixel_scores(tmp_path, data_root):
    root = write_mvtec_like(tmp_path / "bottle", n_train=120)
    variants = [{"name": "AE", "model": "Autoencoder"}, {"name": "DAE", "model": "DenoisingAutoencoder"}]
    suite = write_small_suite(
        tmp_path / "mvtec.yaml", data_root, "mvtec", variants, 3, "disabled", seeds=[0, 1],
        data={"name": "mvtec", "root": str(root), "val_size": 20, "batch_size": 20,
              "noise": {"kind": "gaussian", "level": 0.2}},
    )  # fmt: skip
    result = cli_in_process("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    records = json.loads((out / "summary.json").read_text())
    assert len(records) == 4 and all(r["status"] == "done" for r in records)
    for record in records:
        metrics = record["metrics"]
        assert 0 <= metrics["anomaly/reconstruction/pixel_auroc"] <= 1 and 0 <= metrics["anomaly/knn_code/auroc"] <= 1
    assert json.loads((out / "comparison.json").read_text())["anomaly/reconstruction/pixel_auroc"]["n_seeds"] == 2
    report = (out / "report.md").read_text()
    assert "Anomaly detection on an MVTec AD folder" in report and "Pixel AUROC, per-pixel reconstruction" in report
    pixel_table = report.split("Pixel AUROC, per-pixel")[1].split("\n\n")[1]
    assert has_row(pixel_table, "AE") and has_row(pixel_table, "DAE")  # a row per variant
    for figure in ("anomaly_roc.png", "anomaly_histograms.png", "anomaly_worst.png", "anomaly_maps_AE.png"):
        assert f"]({figure})" in report and (out / figure).is_file()
    assert "Pixel AUPRO: the mean overlap with each defect region" in report
    for record in records:  # the pixel threshold from calibration images; AUPRO as the maps give it
        metrics = record["metrics"]
        assert 0 <= metrics["anomaly/reconstruction/pixel_aupro"] <= 1
        thresholds = json.loads((Path(record["run_dir"]) / "thresholds.json").read_text())
        assert thresholds["pixel_threshold"] == metrics["anomaly/reconstruction/pixel_threshold"]
        shown = torch.load(Path(record["run_dir"]) / "anomaly_scores.pt", weights_only=True)["maps"]
        assert shown["kind"][:8] == ["false positive"] * 4 + ["false negative"] * 4
        assert shown["kind"][8:] == ["scratch", "scratch", "spot", "spot"]  # the first two of each defect type


def test_inspection_data_has_its_defects_where_its_masks_say(tmp_path):
    from ae_lightning.data.inspection import main as make_inspection
    from ae_lightning.data.inspection import write_inspection_folder

    root = write_inspection_folder(tmp_path / "cloth", n_train=20, n_good=4, n_per_defect=3, size=32, seed=1)
    dm = mvtec(root)
    test = dm.splits["test"]
    assert test.labels.tolist() == [0] * 4 + [1] * 3 + [2] * 3 + [3] * 3  # good, hole, scratch, stain
    assert dm.class_names == ["good", "hole", "scratch", "stain"]
    assert not dm.test_masks[:4].any() and all(dm.test_masks[i].any() for i in range(4, 13))
    # a defect changes the cloth inside its mask, and outside it by no more than the mask's level (a stain's edge)
    from ae_lightning.data.inspection import DEFECTS, MASK_LEVEL, draw_defect, texture

    generator = torch.Generator().manual_seed(3)
    for kind in DEFECTS:
        for _ in range(5):
            clean = texture(32, generator)
            defective, mask = draw_defect(clean, kind, generator)
            assert mask.any() and (defective[~mask] - clean[~mask]).abs().max() <= MASK_LEVEL + 1, kind
            assert (defective[mask] - clean[mask]).abs().mean() > 8, kind
    again = write_inspection_folder(tmp_path / "again", n_train=20, n_good=4, n_per_defect=3, size=32, seed=1)
    assert (again / "test/scratch/001.png").read_bytes() == (root / "test/scratch/001.png").read_bytes()
    with pytest.raises(SystemExit):  # a non-empty folder is never written into
        make_inspection([str(root)])


def test_anomaly_map_figures_show_image_map_mask_and_flags(tmp_path):
    from ae_lightning.evaluation.report_figures import anomaly_map_figures

    run = tmp_path / "run"
    run.mkdir()
    images = (torch.rand(6, 1, 16, 16) * 255).to(torch.uint8)
    masks = torch.zeros(6, 16, 16, dtype=torch.bool)
    masks[3:, 4:8, 4:8] = True
    shown = {
        "index": torch.arange(6), "kind": ["false positive"] * 2 + ["false negative"] * 2 + ["hole", "stain"],
        "images": images, "maps": torch.rand(6, 16, 16) + masks, "masks": masks, "scores": torch.rand(6),
        "pixel_threshold": 0.9,
    }  # fmt: skip
    torch.save({"maps": shown}, run / "anomaly_scores.pt")
    written = anomaly_map_figures({"AE (conv)": {"run_dir": str(run), "seed": 0}}, tmp_path)
    assert written == ["anomaly_maps_AE__conv_.png"] and (tmp_path / written[0]).stat().st_size > 10_000
    torch.save({}, run / "anomaly_scores.pt")  # no masks, no maps: no figure
    assert anomaly_map_figures({"AE": {"run_dir": str(run), "seed": 0}}, tmp_path) == []


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_an_exported_scorer_gives_the_batterys_scores_and_flags(format, anomaly_suite, data_root, tmp_path):
    """Each exportable score of a run, exported and run on the test split (TorchScript in torch, ONNX in
    onnxruntime), matches the battery's saved scores and ``load()`` to 1e-5; its flags are the scores above the
    run's threshold."""
    import numpy as np

    import ae_lightning
    from ae_lightning.export import export

    images = datamodule(data_root, normal_classes=[1]).splits["test"].images
    for variant, scores in (("AE", ["reconstruction", "knn_code"]), ("VAE", ["reconstruction"])):
        run_dir = run_of(anomaly_suite, variant)
        saved = torch.load(run_dir / "anomaly_scores.pt", weights_only=True)["scores"]
        thresholds = json.loads((run_dir / "thresholds.json").read_text())["scores"]
        for score in scores:
            out = tmp_path / f"{variant}_{score}.{'pt' if format == 'torchscript' else 'onnx'}"
            about = export(run_dir, format, out, score=score)
            assert about["threshold"] == thresholds[score]["threshold"] and about["score"] == score
            if format == "torchscript":
                files = {"ae_lightning.json": ""}
                exported_scores, flags = torch.jit.load(str(out), _extra_files=files)(images)
                recorded = json.loads(files["ae_lightning.json"])
            else:
                import onnx
                import onnxruntime

                session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
                outputs = session.run(None, {"images": images.numpy()})
                exported_scores, flags = (torch.from_numpy(np.asarray(output)) for output in outputs)
                recorded = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["ae_lightning"])
            assert recorded["score"] == score and recorded["input"]["shape"] == ["N", 1, 28, 28]
            assert torch.allclose(exported_scores, saved[score], rtol=1e-5, atol=1e-6), (variant, score)
            if score == "reconstruction":
                loaded = ae_lightning.load(run_dir).anomaly_score(images, score)
                assert torch.allclose(exported_scores, loaded, rtol=1e-5, atol=1e-6)
            assert torch.equal(flags.bool(), exported_scores.double() > thresholds[score]["threshold"])


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_an_exported_scorer_resizes_camera_sized_images_as_the_run_did(format, anomaly_suite, data_root, tmp_path):
    """``--input-size H W``: the scorer takes images at that size and resizes and centre-crops them as the run's data
    (``load().prepare``) do; its scores match ``load()``'s on the prepared images. The case where a resize is
    not a no-op: the test split upscaled to 45 × 37 (not square, not a multiple of 28)."""
    import numpy as np
    import torchvision.transforms.functional as TF

    import ae_lightning
    from ae_lightning.export import export

    run_dir = run_of(anomaly_suite, "AE")
    images = datamodule(data_root, normal_classes=[1]).splits["test"].images
    camera = TF.resize(images, [45, 37], antialias=True)
    out = tmp_path / f"AE.{'pt' if format == 'torchscript' else 'onnx'}"
    about = export(run_dir, format, out, score="reconstruction", input_size=(45, 37))
    assert about["input"]["shape"] == ["N", 1, 45, 37] and about["resized_to"] == [28, 28]
    if format == "torchscript":
        exported_scores, flags = torch.jit.load(str(out))(camera)
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        exported_scores = torch.from_numpy(session.run(None, {"images": camera.numpy()})[0])
    model = ae_lightning.load(run_dir)
    prepared = model.prepare(camera)
    assert not torch.equal(prepared, images.float() / 255)  # the round trip changed pixels: a real resize
    assert torch.allclose(exported_scores, model.anomaly_score(prepared, "reconstruction"), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_less(0, exported_scores.numpy())


@pytest.mark.parametrize("size", [(45, 37), (64, 80), (300, 200), (29, 29), (20, 33)])
def test_the_exported_resize_is_the_datas_resize_to_the_grey_level(size, tmp_path):
    """``export.Resize`` (fixed-point matrix products) against ``data.custom.fit_size`` (torch's uint8 kernel), pixel
    for pixel, grey and colour, down and up, in torch and through ONNX. If torch changes its uint8 kernel, this
    fails: the exported scorer's resize must then follow it."""
    import onnxruntime

    from ae_lightning.data.custom import fit_size
    from ae_lightning.export import Resize

    images = torch.randint(0, 256, (4, 3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = torch.stack([fit_size(image, 28) for image in images]).float()
    resize = Resize(size, 28)
    assert torch.equal(resize(images), expected) and torch.equal(resize(images[:, :1]), expected[:, :1])
    torch.onnx.export(resize, (images,), str(tmp_path / "r.onnx"), input_names=["images"], dynamo=False)
    session = onnxruntime.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    assert torch.equal(torch.from_numpy(session.run(None, {"images": images.numpy()})[0]), expected)


def test_what_cannot_be_exported_is_one_message_before_anything_is_written(anomaly_suite, tmp_path):
    import shutil

    out = tmp_path / "d.onnx"
    vae, ae = run_of(anomaly_suite, "VAE"), run_of(anomaly_suite, "AE")
    uncalibrated = tmp_path / "uncalibrated"
    shutil.copytree(ae, uncalibrated, ignore=shutil.ignore_patterns("thresholds.json", "wandb"))
    cases = [
        ([str(uncalibrated)], "has no calibration scores for 'reconstruction' (thresholds.json), so the exported"),
        ([str(vae), "--score", "elbo"], "--score elbo: it draws random samples from the posterior"),
        ([str(ae), "--score", "center_distance"], "--score center_distance: not a score of Autoencoder; exportable"),
        ([str(ae), "--fpr", "2"], "--fpr 2.0: a false-positive rate must be in (0, 1)"),
        ([str(ae), "--input-size", "0", "64"], "--input-size 0 64: give two positive integers, H W"),
        ([str(tmp_path / "nothing")], "is not a run directory"),
        ([str(ae), "--format", "tflite"], "--format 'tflite' is not known; allowed: ['torchscript', 'onnx']"),
    ]
    for argv, message in cases:
        format = [] if "--format" in argv else ["--format", "onnx"]
        result = cli_in_process("export", *argv, *format, "--out", str(out), cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, (argv, result.stderr[-1500:])
        assert not out.exists()
