"""Generative quality: the domain classifier's Fréchet distance, its cache, and the Inception FID's skip."""

from __future__ import annotations

import json

import pytest
import torch

from ae_lightning import Autoencoder, ImageDataModule, VariationalAutoencoder
from ae_lightning.evaluation.battery import EvaluationSettings, evaluate
from ae_lightning.evaluation.generative import ClassifierSettings, domain_classifier, frechet_distance, inception_fid

# One classifier for the module, at a third of the default steps on these 500 images (accuracy 0.93 against 0.97;
# 5.6 s against 18.8 s): what these tests check needs features of the domain, not the best classifier.
STEPS = {"epochs": 1, "min_steps": 200}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("classifiers")  # one classifier per training set for the whole module


@pytest.fixture(scope="module")
def data(data_root):
    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=0, batch_size=50)
    dm.setup("fit")
    return dm.splits["train"], dm.splits["test"]


def test_fd_domain_is_near_zero_for_real_images_and_large_for_noise(data, cache):
    train, test = data
    classifier, accuracy = domain_classifier(
        train.images, train.labels, test.images, test.labels, cache, ClassifierSettings(**STEPS)
    )
    assert accuracy > 0.8  # it learned the classes: its features describe this domain
    test_x, train_x = test.images.float() / 255, train.images[:200].float() / 255
    same_domain = frechet_distance(test_x, train_x, classifier)
    noise = frechet_distance(test_x, torch.rand(200, 1, 28, 28), classifier)
    # two samples of one domain are apart, by far less than noise is (measured 18 against 15 925)
    assert 0 < same_domain < noise / 20, (same_domain, noise)
    assert frechet_distance(test_x, test_x, classifier) == pytest.approx(0.0, abs=1e-2)


def test_the_classifier_is_cached_by_content_with_its_accuracy(data, tmp_path):
    """Its own cache and a brief classifier (what is cached, not how well it classifies, is the point here)."""
    from ae_lightning.evaluation.generative import ClassifierSettings

    train, test = data
    brief = ClassifierSettings(epochs=1, min_steps=5)
    _, accuracy = domain_classifier(train.images, train.labels, test.images, test.labels, tmp_path, brief)
    (info,) = tmp_path.glob("classifier-*.json")
    assert json.loads(info.read_text())["test_accuracy"] == accuracy
    assert info.with_suffix(".pt").is_file()  # the weights beside it
    info.write_text(json.dumps({"test_accuracy": 0.123}))  # what the cache says is what is returned: no retraining
    assert domain_classifier(train.images, train.labels, test.images, test.labels, tmp_path, brief)[1] == 0.123
    info.write_text(json.dumps({"test_accuracy": accuracy}))
    other = train.images[:300]  # other training data: another classifier, another entry
    domain_classifier(other, train.labels[:300], test.images, test.labels, tmp_path, brief)
    assert len(list(tmp_path.glob("classifier-*.pt"))) == 2
    # other settings: another entry too (the settings are part of the key)
    domain_classifier(
        train.images, train.labels, test.images, test.labels, tmp_path, ClassifierSettings(epochs=1, min_steps=6)
    )
    assert len(list(tmp_path.glob("classifier-*.pt"))) == 3


def test_only_models_that_sample_get_generative_metrics(data, cache):
    train, test = data
    small = dict(gen_samples=100, iw_samples=2, iw_images=10, jacobian_samples=10, fid_inception=False)
    small |= {f"classifier_{key}": value for key, value in STEPS.items()}  # the module's classifier, from its cache
    settings = EvaluationSettings(**small, gen_min_images=0)  # forced: 100 images are below the default floor
    vae = evaluate(
        VariationalAutoencoder(latent_dim=4), train.images, train.labels, test.images, test.labels, settings, cache
    )
    assert vae["gen/fd_domain"] > 0 and 0 < vae["gen/classifier_accuracy"] <= 1
    assert "eval/gen_skipped_images" not in vae and vae["eval/gen_samples"] == 100
    # at the default floor (500) 100 images are too few: no Fréchet distance, and the number recorded for the report
    unforced = evaluate(
        VariationalAutoencoder(latent_dim=4), train.images, train.labels, test.images, test.labels,
        EvaluationSettings(**small), cache,
    )  # fmt: skip
    assert not any(key.startswith("gen/") for key in unforced) and "eval/generative_seconds" not in unforced
    assert unforced["eval/gen_skipped_images"] == 100
    ae = evaluate(Autoencoder(latent_dim=4), train.images, train.labels, test.images, test.labels, settings, cache)
    assert "gen/fd_domain" not in ae


def test_inception_fid_is_skipped_with_one_line_without_its_weights(capsys):
    try:
        import torch_fidelity  # noqa: F401

        pytest.skip("torch-fidelity is installed here: the Inception FID can run")
    except ImportError:
        pass
    assert inception_fid(torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)) is None
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line]
    assert len(lines) == 1 and not captured.err  # a line in the run's log, not a warning on every run
    assert lines[0].startswith("gen/fid_inception skipped, its weights are not available: ModuleNotFound")


def test_inception_fid_offline_is_a_warning_and_a_real_error_is_raised(monkeypatch, capsys):
    from urllib.error import URLError

    from ae_lightning.evaluation import generative

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(generative, "FrechetInceptionDistance", offline)
    assert inception_fid(torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)) is None
    assert "weights are not available: URLError" in capsys.readouterr().out

    def broken(*args, **kwargs):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(generative, "FrechetInceptionDistance", broken)
    with pytest.raises(RuntimeError, match="a real bug"):
        inception_fid(torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28))
