"""Anomaly detection: the detection metrics against brute force, the normal-classes split, the scores through the
capability contract, and a suite to a finished report with its anomaly section, figures and baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ae_lightning import Autoencoder, ImageDataModule, VariationalAutoencoder
from ae_lightning.distances import knn_distance
from ae_lightning.errors import ConfigError
from ae_lightning.evaluation.anomaly import anomaly_scores, detection_metrics, fpr_at_tpr

from conftest import write_small_suite
from datasets import write_image_folder
from test_cli import cli


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


@pytest.fixture(scope="module")
def anomaly_suite(tmp_path_factory, data_root):
    tmp_path = tmp_path_factory.mktemp("anomaly")
    variants = [{"name": "AE", "model": "Autoencoder"}, {"name": "VAE", "model": "VariationalAutoencoder"}]
    data = {"name": "mnist", "root": str(data_root), "download": False, "val_size": 100, "batch_size": 50}
    suite = write_small_suite(
        tmp_path / "a.yaml", data_root, "anomaly", variants, 1, "disabled", seeds=[0, 1],
        data={**data, "normal_classes": [1]},
    )  # fmt: skip
    result = cli("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return tmp_path / "out"


def test_a_suite_measures_detection_and_reports_it(anomaly_suite):
    records = json.loads((anomaly_suite / "summary.json").read_text())
    ae = next(r for r in records if r["variant"] == "AE")
    vae = next(r for r in records if r["variant"] == "VAE")
    assert 0 <= ae["metrics"]["anomaly/reconstruction/auroc"] <= 1 and "anomaly/knn_code/auprc" in ae["metrics"]
    assert "anomaly/elbo/auroc" not in ae["metrics"] and "anomaly/iw_nll/fpr_at_95tpr" in vae["metrics"]
    assert "probe/accuracy" not in ae["metrics"]  # one-class training data: no class probes
    assert "gen/fd_domain" not in vae["metrics"]  # nor a domain classifier that knows the normal classes only
    saved = torch.load(ae["run_dir"] + "/anomaly_scores.pt", weights_only=True)
    assert torch.equal(saved["is_anomaly"], saved["labels"] != 1)
    aggregate = json.loads((anomaly_suite / "aggregate.json").read_text())
    assert aggregate["AE"]["anomaly/reconstruction/auroc"]["n"] == 2
    comparison = json.loads((anomaly_suite / "comparison.json").read_text())
    assert comparison["anomaly/reconstruction/auroc"]["best"] in ("AE", "VAE")
    assert comparison["anomaly/elbo/auroc"]["best"] == "VAE"  # the only variant with the score
    baseline = json.loads((anomaly_suite / "pixel_baseline.json").read_text())
    assert 0 <= baseline["anomaly/pca/auroc"] <= 1 and "anomaly/pixel_knn/fpr_at_95tpr" in baseline
    report = (anomaly_suite / "report.md").read_text()
    assert "## Anomaly detection" in report and "Anomaly detection: normal classes [1]" in report
    assert f"PCA (32 components) reconstruction error AUROC {baseline['anomaly/pca/auroc']:.4g}" in report
    assert "anomaly_roc.png" in report and (anomaly_suite / "anomaly_histograms.png").is_file()


def test_an_unknown_anomaly_score_is_refused_before_anything_runs(tmp_path, data_root):
    suite = write_small_suite(
        tmp_path / "s.yaml", data_root, "bad", [{"model": "Autoencoder"}], 1, "disabled",
        evaluation={"anomaly_scores": ["reconstruction", "mahalanobis"]},
    )  # fmt: skip
    result = cli("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path)
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

    run_dir = anomaly_suite / "runs" / "VAE" / "seed0"
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
        ae_lightning.load(anomaly_suite / "runs" / "AE" / "seed0").anomaly_score(x, "elbo")
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
    run_dir = anomaly_suite / "runs" / "AE" / "seed0"
    out = tmp_path / "scores.csv"
    result = cli("score", str(run_dir), "--images", str(tmp_path / "new.npz"), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30 and list(rows[0]) == ["path", "reconstruction", "knn_code", "rank"]
    assert rows[0]["path"] == f"{tmp_path / 'new.npz'}#0"
    expected = ae_lightning.load(run_dir).anomaly_score(images, "reconstruction")
    assert [float(r["reconstruction"]) for r in rows] == pytest.approx(expected.tolist(), rel=1e-5)
    ranks = sorted(rows, key=lambda r: int(r["rank"]))
    assert [int(r["rank"]) for r in ranks] == list(range(1, 31))
    assert float(ranks[0]["reconstruction"]) == max(float(r["reconstruction"]) for r in rows)
    bad = cli("score", str(run_dir), "--images", str(tmp_path / "new.npz"), "--scores", "elbo", cwd=tmp_path)
    assert bad.returncode == 2 and "--scores elbo: not a score of Autoencoder; allowed: ['reconstruction'" in bad.stderr
