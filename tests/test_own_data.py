"""Users' own data: an image folder, a tensors file and CelebA's layout, through the data module, the networks and
whole suites; and every bad input with one clear message."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from ae_lightning import Autoencoder, ImageDataModule
from ae_lightning.errors import ConfigError, DataNotFoundError

from conftest import write_small_suite
from datasets import make_images, write_celeba_like, write_image_folder
from test_cli import cli_in_process


def datamodule(name: str, root, **kwargs) -> ImageDataModule:
    dm = ImageDataModule(name=name, root=str(root), download=False, val_size=10, batch_size=16, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_image_folder_with_classes_resized_cached_and_invalidated(tmp_path):
    root = write_image_folder(tmp_path / "pngs", 60, (1, 20, 24))
    dm = datamodule("folder", root, image_size=16)
    assert dm.image_shape == (1, 16, 16) and dm.num_classes == 3
    total = sum(len(dm.splits[s].labels) for s in ("train", "val", "test"))
    assert total == 60 and len(dm.splits["test"].labels) == 6  # a tenth held out by default
    assert sorted(set(dm.splits["train"].labels.tolist())) == [0, 1, 2]  # class_0, class_1, class_2
    caches = set((root / ".ae_lightning_cache").glob("*.pt"))
    assert len(caches) == 2  # the training part and the test part, each decoded (and cached) on its own
    again = datamodule("folder", root, image_size=16)
    assert torch.equal(again.splits["train"].images, dm.splits["train"].images)
    # a changed folder is decoded again: a new cache entry
    victim = next((root / "class_0").glob("*.png"))
    victim.write_bytes(victim.read_bytes())
    os.utime(victim, ns=(1, 1))
    datamodule("folder", root, image_size=16)
    # the part holding the changed file is decoded again (a new cache entry); the other part is not
    assert len(list((root / ".ae_lightning_cache").glob("*.pt"))) == 3 and all(c.is_file() for c in caches)


def test_flat_folder_has_no_labels_and_rgb_conversion(tmp_path):
    root = write_image_folder(tmp_path / "flat", 30, (1, 16, 16), classes=False)
    dm = datamodule("folder", root, channels=3, test_size=5)
    assert dm.image_shape == (3, 16, 16) and dm.num_classes == 0
    assert (dm.splits["train"].labels == -1).all() and len(dm.splits["test"].labels) == 5


def test_tensors_npz_and_pt_in_every_layout(tmp_path):
    images, labels = make_images(40, (3, 12, 12), seed=1)
    np.savez(tmp_path / "nhwc.npz", images=images.transpose(0, 2, 3, 1), labels=labels)
    dm = datamodule("tensors", tmp_path / "nhwc.npz")
    assert dm.image_shape == (3, 12, 12) and dm.num_classes == int(labels.max()) + 1
    torch.save({"images": torch.from_numpy(images)}, tmp_path / "nchw.pt")
    assert datamodule("tensors", tmp_path / "nchw.pt").num_classes == 0
    np.savez(tmp_path / "grey.npz", images=images[:, 0])
    np.savez(tmp_path / "test.npz", images=images[:8, 0])
    dm = datamodule("tensors", tmp_path / "grey.npz", test_root=str(tmp_path / "test.npz"), image_size=8)
    assert dm.image_shape == (1, 8, 8) and len(dm.splits["test"].labels) == 8


def test_celeba_layout_is_cropped_to_64_faces(tmp_path):
    root = write_celeba_like(tmp_path / "data", n=60)
    dm = datamodule("celeba", root)
    assert dm.image_shape == (3, 64, 64) and dm.splits["train"].images.shape[1:] == (3, 64, 64)
    assert len(dm.splits["train"].labels) + len(dm.splits["val"].labels) == 48  # partitions 0 and 1
    assert len(dm.splits["test"].labels) == 12 and dm.num_classes == 0
    model = Autoencoder(input_shape=dm.image_shape)
    assert model(dm.splits["test"].images[:2].float() / 255).shape == (2, 3, 64, 64)  # the conv net takes 64 × 64


def bad(tmp_path, content):
    path = tmp_path / "bad.npz"
    np.savez(path, **content)
    return path


def mixed_sizes(folder):
    from torchvision.io import write_png

    write_image_folder(folder, 3, (1, 8, 8), classes=False)
    write_png(torch.zeros(1, 9, 9, dtype=torch.uint8), str(folder / "zz.png"))
    return folder


@pytest.mark.parametrize(
    "make, kwargs, error, message",
    [
        (lambda p: p.mkdir() or p, {}, ConfigError, "folder: no images in"),
        (
            lambda p: write_image_folder(p, 4, (1, 8, 8)) and (p / "class_0" / "x.png").write_bytes(b"no png") and p,
            {},
            ConfigError,
            "cannot read image",
        ),
        (mixed_sizes, {}, ConfigError, "images of different sizes .* and no data.image_size: set data.image_size"),
        (
            lambda p: write_image_folder(p, 3, (1, 8, 8)),
            {"channels": 2},
            ConfigError,
            "data.channels=2 is not supported",
        ),
        (lambda p: p, {}, DataNotFoundError, "folder: data.root=.* does not exist"),
    ],
    ids=["empty", "unreadable", "mixed-sizes", "channels", "missing"],
)
def test_bad_folders(tmp_path, make, kwargs, error, message):
    root = make(tmp_path / "folder")
    with pytest.raises(error, match=message):
        datamodule("folder", root, **kwargs)


def test_bad_tensor_files_and_options(tmp_path):
    images = np.zeros((5, 8, 8), dtype=np.uint8)
    with pytest.raises(ConfigError, match=r"has no 'images' \(it holds \['pictures'\]\)"):
        datamodule("tensors", bad(tmp_path, {"pictures": images}))
    with pytest.raises(ConfigError, match="has 5 images but 4 labels"):
        datamodule("tensors", bad(tmp_path, {"images": images, "labels": np.zeros(4)}))
    with pytest.raises(ConfigError, match="images must be uint8"):
        datamodule("tensors", bad(tmp_path, {"images": images.astype(np.float32)}))
    with pytest.raises(ConfigError, match="data.image_size applies to data.name folder or tensors, not 'mnist'"):
        ImageDataModule(name="mnist", image_size=32)
    with pytest.raises(ConfigError, match="allowed: .*'celeba'.*'folder'.*'tensors'"):
        ImageDataModule(name="svhn")
    # an image size the conv net cannot take: 3 stride-2 stages need 8 pixels a side
    with pytest.raises(
        ConfigError, match="need images of at least 8 pixels a side; these are 4×4: set data.image_size"
    ):
        Autoencoder(input_shape=(3, 4, 4))


def own_data_suite(tmp_path, data: dict, variants: list[dict], name: str):
    suite = write_small_suite(tmp_path / f"{name}.yaml", tmp_path, name, variants, 1, "disabled", data=data)
    # two runs at once: most of a run's time here is its process starting up, which overlaps on 2 cores
    out = ["--out", str(tmp_path / name), "--parallel", "2"]
    result = cli_in_process("compare", str(suite), *out, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = json.loads((tmp_path / name / "summary.json").read_text())
    assert all(r["status"] == "done" for r in records), records
    return records, (tmp_path / name / "report.md").read_text()


def test_a_folder_of_pngs_through_a_suite(tmp_path):
    root = write_image_folder(tmp_path / "pngs", 120, (1, 28, 28))
    data = {
        "name": "folder",
        "root": str(root),
        "val_size": 20,
        "batch_size": 20,
        "noise": {"kind": "masking", "level": 0.2},
    }
    records, report = own_data_suite(tmp_path, data, [{"model": "Autoencoder"}, {"model": "DenoisingAutoencoder"}], "f")
    assert all("probe/accuracy" in r["metrics"] for r in records)  # class folders are labels


EVERY_VARIANT = [
    {"model": "Autoencoder"},
    {"model": "DenoisingAutoencoder"},
    {"model": "SparseAutoencoder"},
    {"model": "DropoutAutoencoder"},
    {"model": "ContractiveAutoencoder"},
    {"model": "VariationalAutoencoder"},
    {"model": "ImportanceWeightedAutoencoder", "args": {"samples": 3}},
    {"model": "BetaTCVAE"},
    {"model": "WassersteinAutoencoder"},
    {"model": "VectorQuantizedAutoencoder"},
    {"model": "AdversarialAutoencoder"},
]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "tensors", "celeba"])
def test_every_variant_through_a_suite_on_own_data(kind, tmp_path):
    if kind == "folder":
        data = {"name": "folder", "root": str(write_image_folder(tmp_path / "pngs", 120, (1, 28, 28)))}
    elif kind == "tensors":
        images, _ = make_images(120, (1, 28, 28), seed=2)
        np.savez(tmp_path / "images.npz", images=images[:, 0])  # no labels
        data = {"name": "tensors", "root": str(tmp_path / "images.npz")}
    else:
        data = {"name": "celeba", "root": str(write_celeba_like(tmp_path / "data", n=100))}
    data |= {"val_size": 10, "batch_size": 20, "download": False, "noise": {"kind": "gaussian", "level": 0.2}}
    records, report = own_data_suite(tmp_path, data, EVERY_VARIANT, kind)
    assert len(records) == len(EVERY_VARIANT)
    for record in records:
        assert all(np.isfinite(v) for v in record["metrics"].values())
    if kind != "folder":  # no labels: no probes, one line in the report, no failure
        assert all("probe/accuracy" not in r["metrics"] for r in records)
        assert "Linear and k-NN probes skipped: the data has no labels." in report


def test_read_test_false_never_decodes_the_test_split(tmp_path):
    """The test part's files replaced by bytes no decoder reads: a data module built with read_test=False (as
    tuning trials are) still sets up — it never decoded them — and one that reads the test split fails."""
    from ae_lightning import seeding

    root = write_image_folder(tmp_path / "pngs", 40, (1, 16, 16))
    files = sorted(f for f in root.rglob("*.png"))
    order = torch.randperm(len(files), generator=seeding.generator(0, "test_split"))
    for index in order[:5].tolist():  # the held-out test part of the folder (test_size 5)
        files[index].write_bytes(b"not a PNG")
    dm = datamodule("folder", root, test_size=5, read_test=False)
    assert "test" not in dm.splits and len(dm.splits["train"].labels) + len(dm.splits["val"].labels) == 35
    with pytest.raises(Exception):
        datamodule("folder", root, test_size=5)
    # CelebA: its test partition (the last 12 of 60 images) unreadable
    celeba = write_celeba_like(tmp_path / "celeba", n=60)
    for path in sorted((celeba / "celeba" / "img_align_celeba").glob("*.jpg"))[48:]:
        path.write_bytes(b"not a JPEG")
    assert "test" not in datamodule("celeba", celeba, read_test=False).splits
    with pytest.raises(Exception):
        datamodule("celeba", celeba)
    # tensors: the same train and validation images either way, and no test split
    images, labels = make_images(40, (1, 12, 12), seed=2)
    np.savez(tmp_path / "t.npz", images=images, labels=labels)
    without, with_test = (
        datamodule("tensors", tmp_path / "t.npz", read_test=False),
        datamodule("tensors", tmp_path / "t.npz"),
    )
    assert "test" not in without.splits and len(with_test.splits["test"].labels) == 4
    assert torch.equal(without.splits["train"].images, with_test.splits["train"].images)


def test_folder_classes_are_named_in_label_order_in_the_figures(tmp_path):
    from ae_lightning.evaluation.views import codes_figure

    root = write_image_folder(tmp_path / "shapes", 30, (1, 16, 16))
    (root / "class_1").rename(root / "b_circles")  # labels follow the sorted folder names, not the numbers in them
    (root / "class_0").rename(root / "c_squares")
    (root / "class_2").rename(root / "a_triangles")
    data = ImageDataModule(name="folder", root=str(root), val_size=3, test_size=6)
    assert data.class_names == ["a_triangles", "b_circles", "c_squares"]
    data.setup("fit")
    assert data.splits["train"].labels.max() == 2
    flat = write_image_folder(tmp_path / "flat", 12, (1, 16, 16), classes=False)
    assert ImageDataModule(name="folder", root=str(flat), val_size=2, test_size=2).class_names is None
    assert ImageDataModule(name="fashion_mnist").class_names[0] == "T-shirt/top"
    figure = codes_figure(torch.randn(9, 4), torch.tensor([0, 1, 2] * 3), "codes", data.class_names)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == data.class_names


def readme_suite(marker: str) -> dict:
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text[text.index(f"<!-- example: {marker} -->") :]
    block = block[block.index("```yaml\n") + len("```yaml\n") :]
    return yaml.safe_load(block[: block.index("```")])


@pytest.mark.slow
@pytest.mark.parametrize("marker", ["folder suite", "folder anomaly suite"])
def test_the_readmes_folder_recipes_run_on_a_300_image_folder(tmp_path, marker):
    """The README's two suites as written (their root pointed at a generated folder; 2 seeds, 3 epochs for time)."""
    import yaml

    root = write_image_folder(tmp_path / "pictures", 300, (1, 32, 32))
    suite = readme_suite(marker)
    suite["data"]["root"] = str(root)
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    args = ["--out", str(out), "--seeds", "0", "1", "--epochs", "3", "--wandb", "disabled", "--parallel", "2"]
    result = cli_in_process("compare", str(tmp_path / "suite.yaml"), *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (out / "report.md").read_text()
    assert "**Small test split: 60 images.**" in report
    for log in out.glob("runs/*/seed*/log.txt"):
        text = log.read_text()
        assert "evaluating Fréchet" not in text  # nothing that means nothing at 60 test images
        assert [f"epoch {e}/3  train/loss" in text for e in (1, 2, 3)] == [True] * 3, text[-2000:]
    if marker == "folder suite":
        assert "No generative quality: Fréchet distances from 60 test images" in report


def test_folder_class_names_head_the_one_class_tables(tmp_path):
    from ae_lightning.evaluation.report import class_label

    folder = write_image_folder(tmp_path / "pictures", 12, (1, 8, 8))
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    data = {"name": "folder", "root": str(folder)}
    assert [class_label(data, c) for c in range(len(names))] == [f"{c} ({name})" for c, name in enumerate(names)]
    assert class_label({"name": "fashion_mnist"}, 0) == "0 (T-shirt/top)"
    assert class_label({"name": "folder", "root": str(tmp_path / "gone")}, 1) == "1"  # no folder: the number
