"""Statistics across seeds: intervals, significance against the best variant, probability of improvement, and the
report, aggregate.json and summary.csv of a real 3-seed suite."""

from __future__ import annotations

import csv
import json
import math

import pytest

from ae_lightning.evaluation.statistics import p_value_against, probability_of_improvement, summarize

from conftest import write_small_suite
from test_cli import cli


def test_summary_has_the_student_t_interval():
    summary = summarize([1.0, 2.0, 3.0])
    # mean 2, s = 1, t(0.975, 2) = 4.3027 (tables): 2 ± 4.3027/√3
    assert summary["mean"] == 2.0 and summary["std"] == 1.0 and summary["n"] == 3
    assert summary["ci_low"] == pytest.approx(2 - 4.3027 / math.sqrt(3), abs=1e-4)
    assert summary["ci_high"] == pytest.approx(2 + 4.3027 / math.sqrt(3), abs=1e-4)
    assert summarize([5.0]) == {"mean": 5.0, "std": 0.0, "ci_low": None, "ci_high": None, "n": 1}


def test_pairing_by_seed_is_used_where_seeds_match():
    best = {0: 1.0, 1: 2.0, 2: 3.0}
    # the same shift on every seed: paired, a clear difference; unpaired, lost in the spread between seeds
    assert p_value_against(best, {0: 1.1, 1: 2.1, 2: 3.1}) == 0.0
    assert p_value_against(best, {3: 1.1, 4: 2.1, 5: 3.1}) > 0.8  # other seeds: Welch's test
    # differences 0.1, 0.2, 0.3: t = 0.2 / (0.1/√3) = 3.464 on 2 df; F(t) = ½ + t / (2√(2 + t²)) for 2 df
    t = 0.2 / (0.1 / math.sqrt(3))
    expected = 2 * (1 - (0.5 + t / (2 * math.sqrt(2 + t * t))))
    assert p_value_against({0: 1.1, 1: 2.2, 2: 3.3}, best) == pytest.approx(expected, rel=1e-6)  # 0.0742
    assert p_value_against({0: 1.0}, {0: 2.0}) is None  # one seed: no test


def test_probability_of_improvement():
    assert probability_of_improvement([1.0, 2.0, 3.0], [2.0, 2.0, 2.0], higher_is_better=True) == 0.5
    assert probability_of_improvement([3.0, 4.0], [1.0, 2.0], higher_is_better=True) == 1.0
    assert probability_of_improvement([3.0, 4.0], [1.0, 2.0], higher_is_better=False) == 0.0


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory, data_root):
    tmp_path = tmp_path_factory.mktemp("seeds")
    variants = [{"name": "AE", "model": "Autoencoder"}, {"name": "DAE", "model": "DenoisingAutoencoder"}]
    suite = write_small_suite(
        tmp_path / "s.yaml",
        data_root,
        "seeds",
        variants,
        2,
        "disabled",
        seeds=[0, 1, 2],
        data={
            "name": "mnist",
            "root": str(data_root),
            "download": False,
            "val_size": 100,
            "batch_size": 50,
            "noise": {"kind": "gaussian", "level": 0.3},
        },
    )
    result = cli("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return tmp_path / "out"


def test_aggregate_json_and_summary_csv_hold_the_intervals(three_seeds):
    aggregate = json.loads((three_seeds / "aggregate.json").read_text())
    records = json.loads((three_seeds / "summary.json").read_text())
    values = [r["metrics"]["test/mse"] for r in records if r["variant"] == "AE"]
    assert aggregate["AE"]["test/mse"] == pytest.approx(summarize(values))
    assert aggregate["AE"]["test/mse"]["n"] == 3
    assert (
        aggregate["AE"]["test/mse"]["ci_low"]
        < aggregate["AE"]["test/mse"]["mean"]
        < aggregate["AE"]["test/mse"]["ci_high"]
    )
    with open(three_seeds / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    for row in rows:
        assert float(row["test/mse:ci_high"]) == pytest.approx(aggregate[row["variant"]]["test/mse"]["ci_high"])
        assert row["test/mse:n"] == "3"


def test_report_marks_intervals_significance_and_improvement(three_seeds):
    report = (three_seeds / "report.md").read_text()
    assert "confidence interval over seeds (Student's t)" in report
    assert "P(row better than column) on `test/noisy_psnr` (higher is better):" in report
    aggregate = json.loads((three_seeds / "aggregate.json").read_text())
    dae = aggregate["DAE"]["test/noisy_psnr"]
    half = dae["ci_high"] - dae["mean"]
    assert f"{dae['mean']:.4g} ± {half:.2g}" in report  # the cell is the mean ± the interval's half-width


def test_one_seed_report_says_it_cannot_separate_variants(tmp_path, data_root):
    suite = write_small_suite(tmp_path / "s.yaml", data_root, "one", [{"model": "Autoencoder"}], 1, "disabled")
    result = cli("compare", str(suite), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "One seed: no intervals and no significance tests — a single seed cannot separate variants" in report
    assert " ± " not in report
    # the header gives the same probes on raw pixels, to read the codes' probe accuracies against
    baseline = json.loads((tmp_path / "out" / "pixel_baseline.json").read_text())
    assert set(baseline) == {"probe/accuracy", "probe/l2", "probe/knn_accuracy"}
    header = "Probes on raw pixels, for comparison with the codes' (same probes, same images): linear"
    assert f"{header} {baseline['probe/accuracy']:.4g}" in report
    assert json.loads((tmp_path / "out" / "aggregate.json").read_text())["Autoencoder"]["test/mse"]["ci_low"] is None


def test_report_states_the_likelihood_protocol_next_to_the_nats():
    from ae_lightning.evaluation.report import likelihood_protocol

    suite = {
        "data": {"binarize": "static"},
        "evaluation": {"iw_samples": 5000},
        "variants": [
            {"name": "AE", "model": "Autoencoder"},
            {"name": "VAE", "model": "VariationalAutoencoder"},
            {"name": "VAE-grey", "model": "VariationalAutoencoder", "data": {"binarize": "none"}},
            {"name": "VAE-gauss", "model": "VariationalAutoencoder", "args": {"likelihood": "gaussian"}},
        ],
    }
    text = likelihood_protocol(suite)
    assert text.startswith("VAE ELBO and IW-NLL (k = 5000) in nats per test image")
    assert "VAE: Bernoulli likelihood on static-binarised images" in text
    assert "VAE-grey: Bernoulli likelihood on grey-level images (not binarised: not comparable" in text
    assert "VAE-gauss: Gaussian likelihood on grey-level images" in text and " AE:" not in text
    assert likelihood_protocol({**suite, "variants": suite["variants"][:1]}) == ""  # no VAE, nothing claimed
