from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from ae_lightning import DropoutAutoencoder, ImageDataModule
from ae_lightning.data import corruption, sources
from ae_lightning.data.corruption import Noise
from ae_lightning.data.datamodule import Batch, EpochPermutation
from ae_lightning.errors import ConfigError, DataNotFoundError

from conftest import quiet_trainer
from datasets import write_mnist_like


def make_dm(data_root, **kwargs) -> ImageDataModule:
    kwargs = {"name": "mnist", "root": str(data_root), "download": False, "val_size": 100, "batch_size": 64, **kwargs}
    dm = ImageDataModule(**kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.mark.parametrize(
    "name,shape", [("mnist", (1, 28, 28)), ("fashion_mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))]
)
def test_loads_torchvision_layout(data_root, name, shape):
    dm = make_dm(data_root, name=name)
    assert dm.image_shape == shape
    n_train = 600
    assert len(dm.splits["train"].labels) == n_train - 100 and len(dm.splits["val"].labels) == 100
    assert len(dm.splits["test"].labels) == 200
    batch = dm.finish_batch(next(iter(dm.train_dataloader())))
    assert batch.clean.shape == (64, *shape) and batch.clean.dtype == torch.float32
    assert 0.0 <= batch.clean.min() and batch.clean.max() <= 1.0 and batch.clean.max() > 0.5
    assert batch.noisy is batch.clean  # no noise configured: the corrupted view is the clean image
    assert batch.label.dtype == torch.int64


def test_split_is_seeded_and_val_size_zero_allowed(data_root):
    a, b, c = make_dm(data_root, seed=0), make_dm(data_root, seed=0), make_dm(data_root, seed=1)
    assert torch.equal(a.splits["val"].images, b.splits["val"].images)
    assert not torch.equal(a.splits["val"].images, c.splits["val"].images)
    empty = make_dm(data_root, val_size=0)
    assert len(empty.splits["train"].labels) == 600 and empty.val_dataloader() == []


def test_every_sample_once_per_epoch_and_reshuffled(data_root):
    dm = make_dm(data_root)
    loader = dm.train_dataloader()
    first = torch.cat([b.label for b in loader])
    order0 = loader.sampler.indices()
    loader.sampler.set_epoch(1)
    order1 = loader.sampler.indices()
    assert sorted(order0.tolist()) == list(range(500)) and len(first) == 500
    assert not torch.equal(order0, order1)
    loader.sampler.set_epoch(0)
    assert torch.equal(loader.sampler.indices(), order0)  # the order of an epoch is recoverable (resume)


def test_ddp_shares_are_disjoint_and_cover_the_data():
    train = [EpochPermutation(101, True, 0, rank, 2).indices() for rank in (0, 1)]
    assert len(train[0]) == len(train[1]) == 50  # equal shares so no rank waits on another
    assert not set(train[0].tolist()) & set(train[1].tolist())
    evaluation = [EpochPermutation(101, False, 0, rank, 2).indices() for rank in (0, 1)]
    assert sorted(torch.cat(evaluation).tolist()) == list(range(101))  # evaluation: every sample once, no padding


def test_missing_files_without_download_name_files_dir_and_fix(tmp_path):
    dm = ImageDataModule(name="mnist", root=str(tmp_path), download=False)
    with pytest.raises(DataNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert "mnist" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "data.download" in message


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(sources.datasets.CIFAR10, "download", offline)
    with pytest.raises(
        DataNotFoundError, match=r"cifar10: data files not found in .*cifar-10-batches-py.*download failed"
    ):
        ImageDataModule(name="cifar10", root=str(tmp_path), download=True).prepare_data()


def test_setup_never_downloads(tmp_path):
    dm = ImageDataModule(name="mnist", root=str(tmp_path), download=True)
    with pytest.raises(DataNotFoundError, match="prepare_data"):
        dm.setup("fit")


def test_debian_fashion_mnist_is_used_without_download(tmp_path, monkeypatch):
    debian = write_mnist_like(tmp_path / "debian", compress=True)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", debian)
    root = tmp_path / "root"
    dm = ImageDataModule(name="fashion_mnist", root=str(root), download=False, val_size=10)
    dm.prepare_data()
    assert sorted(p.name for p in (root / "FashionMNIST" / "raw").iterdir()) == sorted(sources._idx_files())
    dm.setup("fit")
    assert len(dm.splits["test"].labels) == 200


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian dataset-fashion-mnist absent"
)
def test_real_debian_fashion_mnist(tmp_path):
    dm = ImageDataModule(name="fashion_mnist", root=str(tmp_path), download=False)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.splits["train"].labels) == 55000 and len(dm.splits["test"].labels) == 10000


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_path_gives_the_memory_paths_batches(data_root, num_workers):
    noise = {"kind": "gaussian", "level": 0.3}
    memory = make_dm(data_root, noise=noise)
    workers = make_dm(data_root, noise=noise, loader="dataloader", num_workers=num_workers)
    for epoch in (0, 1):
        loaders = [dm.train_dataloader() for dm in (memory, workers)]
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        expected, got = (list(loader) for loader in loaders)
        assert len(got) == len(expected) == len(loaders[1]) == 8
        for a, b in zip(expected, got):
            assert torch.equal(a.clean, b.clean) and torch.equal(a.label, b.label) and b.noisy is None
    for split in ("val_dataloader", "test_dataloader"):  # with the fixed evaluation corruption
        expected, got = (list(getattr(dm, split)()) for dm in (memory, workers))
        assert len(expected) == len(got)
        assert all(torch.equal(a.noisy, b.noisy) and torch.equal(a.clean, b.clean) for a, b in zip(expected, got))


def test_dataloader_path_resumes_mid_epoch(data_root):
    dm = make_dm(data_root, loader="dataloader", num_workers=2)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    whole_epoch = [batch.label for batch in loader]
    loader.consumed = 3  # three batches reached the model before the run was killed
    state = loader.state_dict()
    resumed = make_dm(data_root, loader="dataloader", num_workers=2).train_dataloader()
    resumed.load_state_dict(state)
    rest = [batch.label for batch in resumed]
    assert len(rest) == len(whole_epoch) - 3
    assert all(torch.equal(a, b) for a, b in zip(rest, whole_epoch[3:]))


def test_dataloader_path_trains_exactly_like_the_memory_path(data_root):
    weights = []
    for loader in ("memory", "dataloader"):
        pl.seed_everything(0, verbose=False)
        model = DropoutAutoencoder(hidden_dims=[32], latent_dim=4)
        noise = {"kind": "masking", "level": 0.25}
        dm = ImageDataModule(
            name="mnist", root=str(data_root), download=False, val_size=100, batch_size=64, noise=noise, loader=loader
        )
        trainer = quiet_trainer(max_epochs=2)
        trainer.fit(model, datamodule=dm)
        assert trainer.global_step == 16
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_unknown_dataset_and_bad_options():
    with pytest.raises(ConfigError, match=r"data.name='svhn'.*allowed.*cifar10.*fashion_mnist.*mnist"):
        ImageDataModule(name="svhn")
    with pytest.raises(ConfigError, match="data.val_size=-1"):
        ImageDataModule(val_size=-1)
    with pytest.raises(ConfigError, match="data.batch_size=0"):
        ImageDataModule(batch_size=0)
    with pytest.raises(ConfigError, match=r"data.loader='workers'.*allowed.*dataloader.*memory"):
        ImageDataModule(loader="workers")
    with pytest.raises(ConfigError, match="data.num_workers=-1 must be >= 0"):
        ImageDataModule(loader="dataloader", num_workers=-1)


# --- corruption ---------------------------------------------------------------------------------------------------
def test_masking_zeroes_the_fraction():
    x = torch.full((64, 1, 28, 28), 0.7)
    masked = corruption.masking(x, 0.25)
    assert abs((masked == 0).float().mean().item() - 0.25) < 0.01
    assert torch.all((masked == 0) | (masked == x))


def test_gaussian_has_the_std_and_stays_in_range():
    x = torch.full((64, 1, 28, 28), 0.5)
    noisy = corruption.gaussian(x, 0.1)
    assert abs((noisy - x).std().item() - 0.1) < 0.003 and abs((noisy - x).mean().item()) < 0.003
    clamped = corruption.gaussian(x, 2.0)
    assert clamped.min() >= 0 and clamped.max() <= 1


def test_salt_pepper_sets_fraction_to_zero_or_one():
    x = torch.full((64, 1, 28, 28), 0.5)
    noisy = corruption.salt_pepper(x, 0.2)
    hit = noisy != 0.5
    assert abs(hit.float().mean().item() - 0.2) < 0.01
    assert abs((noisy[hit] == 1).float().mean().item() - 0.5) < 0.03 and torch.all(
        (noisy[hit] == 0) | (noisy[hit] == 1)
    )


@pytest.mark.parametrize("kind,level", [("gaussian", -0.1), ("masking", 1.5), ("salt_pepper", -0.01)])
def test_noise_level_out_of_range(kind, level):
    with pytest.raises(ConfigError, match=rf"noise.level={level}"):
        Noise(kind, level)


def test_unknown_noise_kind():
    with pytest.raises(ConfigError, match=r"noise.kind='speckle'.*allowed.*gaussian.*masking.*salt_pepper"):
        Noise("speckle", 0.1)


def test_eval_corruption_is_fixed_by_seed_and_training_corruption_is_fresh(data_root):
    noise = {"kind": "masking", "level": 0.3}
    a, b = make_dm(data_root, noise=noise, seed=0), make_dm(data_root, noise=noise, seed=0)
    c = make_dm(data_root, noise=noise, seed=3)
    for split in ("val", "test"):
        assert torch.equal(a.splits[split].noisy, b.splits[split].noisy)
    assert not torch.equal(a.splits["test"].noisy, c.splits["test"].noisy)
    # independent of the batch size: the corrupted test images are the same whatever slices them
    big = make_dm(data_root, noise=noise, seed=0, batch_size=200)
    sliced = torch.cat([a.finish_batch(batch).noisy for batch in a.test_dataloader()])
    assert torch.equal(sliced, torch.cat([big.finish_batch(batch).noisy for batch in big.test_dataloader()]))
    # training: a new draw every step
    raw = next(iter(a.train_dataloader()))
    first, second = a.finish_batch(raw), a.finish_batch(raw)
    assert torch.equal(first.clean, second.clean) and not torch.equal(first.noisy, second.noisy)
    lit = first.clean != 0
    assert abs(((first.noisy == 0) & lit).sum().item() / lit.sum().item() - 0.3) < 0.03


def test_noise_from_plain_dict_and_batch_is_namedtuple(data_root):
    dm = make_dm(data_root, noise={"kind": "gaussian", "level": 0.2})
    assert dm.noise == Noise("gaussian", 0.2)
    assert isinstance(next(iter(dm.val_dataloader())), Batch)


def test_partial_copy_never_left_under_final_name(tmp_path, monkeypatch):
    debian = write_mnist_like(tmp_path / "debian", compress=True)
    (debian / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")  # a broken source file fails mid-copy
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", debian)
    with pytest.raises(Exception):
        sources.ensure_files("fashion_mnist", tmp_path / "root", download=False)
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    assert not (raw / "t10k-labels-idx1-ubyte").exists()
    assert not list(raw.glob("t10k-labels-idx1-ubyte*.partial"))  # the failed write cleaned up after itself
    shutil.rmtree(raw)


def test_binarize_gives_the_data_each_protocol_promises(data_root):
    grey = make_dm(data_root)
    static, again = make_dm(data_root, binarize="static"), make_dm(data_root, binarize="static")
    for split in ("train", "val", "test"):
        images = static.splits[split].images
        assert set(images.unique().tolist()) <= {0, 255}, split
        assert torch.equal(images, again.splits[split].images), split  # one fixed draw, the same every time
        # pixel ~ Bernoulli(x): the binary images' mean is the grey images' mean
        assert abs(images.float().mean() - grey.splits[split].images.float().mean()) / 255 < 0.01
    threshold = make_dm(data_root, binarize="threshold").splits["test"].images
    assert torch.equal(threshold, (grey.splits["test"].images > 127.5).to(torch.uint8) * 255)
    assert not torch.equal(threshold, static.splits["test"].images)
    dynamic = make_dm(data_root, binarize="dynamic")
    assert torch.equal(dynamic.splits["train"].images, grey.splits["train"].images)  # drawn per step instead
    assert torch.equal(dynamic.splits["test"].images, static.splits["test"].images)  # evaluation: a fixed draw
    raw = next(iter(dynamic.train_dataloader()))
    first, second = dynamic.finish_batch(raw, training=True), dynamic.finish_batch(raw, training=True)
    assert set(first.clean.unique().tolist()) <= {0.0, 1.0} and not torch.equal(first.clean, second.clean)
    assert torch.equal(dynamic.finish_batch(raw).clean, raw.clean.float() / 255)  # not training: untouched
    assert torch.equal(grey.splits["train"].images, make_dm(data_root, binarize="none").splits["train"].images)
    with pytest.raises(ConfigError, match=r"data.binarize='yes' is not known; allowed: \['none', 'static'"):
        ImageDataModule(binarize="yes")


def test_validation_images_keep_one_corruption_whatever_the_training_noise(data_root):
    """val_noise: the validation split's fixed corruption is its own (a DAE whose noise level is tuned is judged on
    one corruption), the training noise unchanged; without it the validation corruption follows the noise."""
    from ae_lightning.data import Noise

    def split(**kwargs):
        dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, **kwargs)
        dm.setup()
        return dm

    fixed_low = split(noise=Noise("gaussian", 0.1), val_noise={"kind": "gaussian", "level": 0.3})
    fixed_high = split(noise=Noise("gaussian", 0.6), val_noise={"kind": "gaussian", "level": 0.3})
    plain = split(noise=Noise("gaussian", 0.3))
    assert torch.equal(fixed_low.splits["val"].noisy, fixed_high.splits["val"].noisy)  # the same, whatever noise
    assert torch.equal(fixed_low.splits["val"].noisy, plain.splits["val"].noisy)  # … and what noise 0.3 gives
    low = split(noise=Noise("gaussian", 0.1))
    assert not torch.equal(low.splits["val"].noisy, plain.splits["val"].noisy)  # without it: the noise's own
    assert torch.equal(fixed_low.splits["test"].noisy, low.splits["test"].noisy)  # the test split untouched
    assert fixed_low.hparams["val_noise"] == {"kind": "gaussian", "level": 0.3}  # plain data in checkpoints
