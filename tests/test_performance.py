"""The fast paths are the same maths: the fused Jacobian-vector product, GPU options, and the benchmark script runs.
(Speed itself is measured by scripts/benchmark.py, not asserted in tests.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch

from ae_lightning import Autoencoder, ContractiveAutoencoder, ImageDataModule
from ae_lightning.data.datamodule import as_words
from ae_lightning.nets.dropout import Dropout
from ae_lightning.variants.contractive import encode_with_jvp, supports_fused_jvp

from conftest import REPO, quiet_trainer


@pytest.mark.parametrize(
    "kwargs", [{}, {"input_shape": (3, 32, 32)}, {"hidden_dims": []}], ids=["mlp", "conv", "rifai"]
)
def test_fused_jvp_equals_torch_func(kwargs):
    torch.manual_seed(0)
    model = ContractiveAutoencoder(**kwargs)
    assert supports_fused_jvp(model.encoder)
    x = torch.rand(5, *model.input_shape)
    v = torch.randn_like(x)
    z, jv = encode_with_jvp(model.encoder, x, v)
    z_ref, jv_ref = torch.func.jvp(model.encoder, (x,), (v,))
    assert torch.allclose(z, z_ref, atol=1e-6) and torch.allclose(jv, jv_ref, rtol=1e-4, atol=1e-5)
    # and its gradient with respect to the weights is the same as through torch.func
    grads = []
    for compute in (
        lambda: encode_with_jvp(model.encoder, x, v)[1],
        lambda: torch.func.jvp(model.encoder, (x,), (v,))[1],
    ):
        model.zero_grad()
        compute().pow(2).sum().backward()
        grads.append(
            torch.cat(
                [
                    torch.zeros_like(p).flatten() if p.grad is None else p.grad.flatten()
                    for p in model.encoder.parameters()
                ]
            )
        )
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_estimate_shares_the_encoder_pass_and_works_under_inference_mode():
    torch.manual_seed(0)
    model = ContractiveAutoencoder(jacobian="estimate", contractive_weight=1.0)
    x = torch.rand(8, 1, 28, 28)
    z, penalty = model.code_and_jacobian_frobenius(x)
    # the same code up to float rounding (a fused addmm against a separate add)
    assert torch.allclose(z, model.encode(x), atol=1e-6) and penalty.shape == (8,)
    model.eval()
    with torch.inference_mode():
        z, penalty = model.code_and_jacobian_frobenius(x)
    assert (penalty > 0).all()


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.9])
def test_word_mask_dropout_is_inverted_dropout(rate):
    torch.manual_seed(0)
    dropout = Dropout(rate)
    x = torch.ones(2000, 999, requires_grad=True)  # 999: the unit count need not divide by four
    y = dropout(x)
    kept = y != 0
    assert abs((~kept).float().mean().item() - rate) < 0.003  # each unit dropped with probability p
    # every one of the four 16-bit lanes of a random word drops at the same rate (no lane is biased)
    lanes = (~kept).flatten()[: 2000 * 996].view(-1, 4).float().mean(0)
    assert (lanes - rate).abs().max() < 0.005
    assert torch.allclose(y[kept], torch.tensor(1 / dropout.keep_probability))  # survivors scaled: E[y] = x
    assert abs(dropout.keep_probability - (1 - rate)) <= 1 / 65536
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient passes through the same mask and scale
    torch.manual_seed(1)
    first = dropout(x)
    torch.manual_seed(1)
    assert torch.equal(dropout(x), first)  # seeded: repeatable, and resumable with the saved RNG state
    dropout.eval()
    assert dropout(x) is x


def test_word_gather_equals_indexing():
    generator = torch.Generator().manual_seed(0)
    for shape in [(50, 1, 28, 28), (50, 3, 32, 32), (50, 1, 5, 5)]:  # 25 bytes per image: gathered byte-wise
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        rows = as_words(images)
        assert rows.dtype == (torch.int64 if images[0].numel() % 8 == 0 else torch.uint8)
        index = torch.randperm(50, generator=generator)[:17]
        gathered = rows.index_select(0, index).view(torch.uint8).view(17, *shape[1:])
        assert torch.equal(gathered, images[index])


def test_channels_last_conv_networks(data_root):
    model = Autoencoder(input_shape=(3, 32, 32), channels_last=True)
    dm = ImageDataModule(name="cifar10", root=str(data_root), download=False, val_size=50, batch_size=25)
    trainer = pl.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    conv = model.encoder[1]  # [0] is the input standardisation
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert trainer.global_step == 1


@pytest.mark.slow
def test_compiled_networks_train_and_keep_checkpoint_keys(data_root):
    torch.manual_seed(0)
    model = Autoencoder(compile_networks=True, hidden_dims=[64], latent_dim=8)
    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
    trainer = quiet_trainer(max_steps=3, limit_val_batches=1)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3
    assert torch.isfinite(torch.tensor(trainer.validate(model, datamodule=dm, verbose=False)[0]["val/mse"]))
    assert set(model.state_dict()) == set(Autoencoder(hidden_dims=[64], latent_dim=8).state_dict())


@pytest.mark.slow
def test_benchmark_script_reports_every_number(data_root, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "benchmark.py"),
            "--root",
            str(data_root),
            "--rounds",
            "2",
            "--variant-steps",
            "4",
            "--variant-rounds",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    ratio = report["framework_vs_loop"]["ratio"]
    assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
    assert {
        "Autoencoder",
        "ContractiveAutoencoder (estimate)",
        "ContractiveAutoencoder (closed form)",
        "VariationalAutoencoder",
        "DropoutAutoencoder",
    } <= set(report["variants"])
    assert report["peak_rss_mb"]["framework"] > 0 and report["peak_rss_mb"]["loop"] > 0
    assert 0 < report["framework_vs_loop"]["minimal_lightning_ratio"]["median"]
    assert all(t > 0 for t in report["per_step_overhead"]["step_ms"].values())
    assert "Autoencoder (data.loader=dataloader, 2 workers)" in report["variants"]
    assert "framework / hand-written loop:" in result.stdout
