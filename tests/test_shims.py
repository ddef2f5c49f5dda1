"""The speed shims of ae_lightning/variants/shims.py rest on Lightning internals. These tests fail loudly when
Lightning changes them (the fallbacks keep training correct; only the speed-up would be lost), and test the
fallbacks themselves."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytorch_lightning as pl
from pytorch_lightning.utilities.signature_utils import is_param_in_hook_signature

from ae_lightning import Autoencoder, ImageDataModule, VariationalAutoencoder
from ae_lightning.variants.base import HasPosterior, Samples
from ae_lightning.variants.shims import PLAIN_ATTRIBUTES, should_log_step

from conftest import quiet_trainer


def small_fit(model: pl.LightningModule, data_root, **trainer) -> pl.Trainer:
    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
    fit = quiet_trainer(max_steps=5, limit_val_batches=1, **trainer)
    fit.fit(model, datamodule=dm)
    return fit


def test_lightning_still_sets_current_fx_name_around_hooks(data_root):
    seen = []

    class Counting(Autoencoder):
        def __setattr__(self, name, value):
            if name == "_current_fx_name":
                seen.append(value)
            super().__setattr__(name, value)

    small_fit(Counting(latent_dim=4), data_root)
    assert "_current_fx_name" in PLAIN_ATTRIBUTES
    # If this fails, Lightning no longer sets _current_fx_name: FastAttributes saves nothing and can go.
    assert len(seen) > 5 * 10 and "training_step" in seen


def test_lightning_still_reads_training_steps_signature():
    # If this import or call fails, Lightning changed how it asks whether training_step takes batch_idx.
    assert is_param_in_hook_signature(Autoencoder.training_step, "batch_idx")
    stored = Autoencoder.training_step.__signature__
    assert stored == inspect.signature(inspect.unwrap(Autoencoder.training_step), follow_wrapped=False)


def test_should_update_logs_is_still_where_the_shim_reads_it(data_root):
    answers = []

    class Watching(Autoencoder):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            # If this fails, Lightning renamed _logger_connector.should_update_logs: step terms would be logged
            # every step (correct, ~1 ms a key slower).
            answers.append(self.trainer._logger_connector.should_update_logs)
            super().on_train_batch_end(outputs, batch, batch_idx)

    small_fit(Watching(latent_dim=4), data_root, log_every_n_steps=2)
    assert answers == [False, True, False, True, False]  # steps 1..5 with log_every_n_steps=2


def test_should_log_step_falls_back_to_every_step():
    assert should_log_step(None)
    assert should_log_step(SimpleNamespace())  # a trainer without the connector
    assert should_log_step(SimpleNamespace(_logger_connector=SimpleNamespace()))  # without the attribute
    assert not should_log_step(SimpleNamespace(_logger_connector=SimpleNamespace(should_update_logs=False)))


def test_capabilities_not_classes():
    assert isinstance(VariationalAutoencoder(), Samples) and isinstance(VariationalAutoencoder(), HasPosterior)
    assert not isinstance(Autoencoder(), Samples) and not isinstance(Autoencoder(), HasPosterior)


def test_tracing_a_lightning_module_still_needs_jit_is_scripting():
    """export.traceable sets LightningModule._jit_is_scripting so that tracing (which reads every attribute) does not
    hit ``trainer``'s RuntimeError. If this fails, Lightning renamed it: TorchScript export then refuses with one
    message (ONNX export is unaffected) until export.py follows."""
    import pytest
    import torch

    from ae_lightning.export import traceable

    model = Autoencoder(latent_dim=4).eval()
    assert model._jit_is_scripting is False
    with pytest.raises(RuntimeError, match="is not attached to a `Trainer`"):
        torch.jit.trace(model, torch.zeros(2, 1, 28, 28), check_trace=False)
    with traceable(model):
        traced = torch.jit.trace(model, torch.zeros(2, 1, 28, 28), check_trace=False)
    assert model._jit_is_scripting is False  # restored
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(traced(x), model(x))
