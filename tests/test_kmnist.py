"""The KMNIST dataset on synthetic files in both official formats."""
import gzip

import numpy as np
import pytest
import torch
from easydict import EasyDict

from datasets.kmnist import KMNIST
from datasets.synthetic import kmnist_arrays, write_kmnist_idx, write_kmnist_npz
from datasets.transforms.building import build_transforms
from tests.http_server import http_server
from utils.errors import ConfigError, DataError


def data_cfg(root, md5=None, mirrors=(), download=False):
    return EasyDict(root=str(root), md5=md5, mirrors=list(mirrors), download=download)


def test_idx_files_load_with_labels_and_counts(tmp_path):
    write_kmnist_idx(tmp_path, train_per_class=7, test_per_class=3)
    train, test = KMNIST(data_cfg(tmp_path), "train"), KMNIST(data_cfg(tmp_path), "test")
    images, labels = kmnist_arrays(7, seed=0)
    assert torch.equal(train.images, torch.from_numpy(images)) and train.labels.tolist() == labels.tolist()
    assert len(train) == 70 and len(test) == 30
    assert train.class_counts() == [7] * 10 and test.class_counts() == [3] * 10
    assert train[5]["label"] == int(labels[5]) and train[5]["image"].size == (28, 28)


def test_download_then_reuse(tmp_path):
    md5 = write_kmnist_idx(tmp_path / "mirror")
    with http_server(tmp_path / "mirror") as url:
        dataset = KMNIST(data_cfg(tmp_path / "root", md5, [url], True), "test")
    assert len(dataset) == 50
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["t10k-images-idx3-ubyte.gz",
                                                                      "t10k-labels-idx1-ubyte.gz"]
    assert len(KMNIST(data_cfg(tmp_path / "root", md5), "test")) == 50  # no server now: reused as is


def test_npz_release_loads_the_same_arrays(tmp_path):
    write_kmnist_idx(tmp_path / "idx")
    write_kmnist_npz(tmp_path / "npz")
    for split in ("train", "test"):
        from_idx, from_npz = KMNIST(data_cfg(tmp_path / "idx"), split), KMNIST(data_cfg(tmp_path / "npz"), split)
        assert torch.equal(from_idx.images, from_npz.images) and torch.equal(from_idx.labels, from_npz.labels)


def test_pixel_statistics_match_numpy(tmp_path):
    write_kmnist_idx(tmp_path)
    mean, std = KMNIST(data_cfg(tmp_path), "train").pixel_statistics()
    pixels = kmnist_arrays(20, seed=0)[0].astype(np.float64) / 255
    assert mean[0] == pytest.approx(pixels.mean(), abs=1e-12) and std[0] == pytest.approx(pixels.std(), abs=1e-12)


def test_show_statistic_prints_and_returns(tmp_path, capsys):
    write_kmnist_idx(tmp_path, train_per_class=4)
    stats = KMNIST(data_cfg(tmp_path), "train").show_statistic()
    assert stats["size"] == 40 and stats["class_counts"]["wo"] == 4
    out = capsys.readouterr().out
    assert "40 images" in out and f"{stats['mean'][0]:.4f}" in out


def test_normalised_item_values(tmp_path):
    write_kmnist_idx(tmp_path)
    dataset = KMNIST(data_cfg(tmp_path), "train",
                     build_transforms([("ToTensor", {}), ("Normalize", {})], mean=[0.3], std=[0.2]))
    item = dataset[3]
    expected = (dataset.images[3].double() / 255 - 0.3) / 0.2
    assert item["image"].shape == (1, 28, 28)
    assert torch.allclose(item["image"][0].double(), expected, atol=1e-6)


def test_corrupt_and_truncated_idx_files(tmp_path):
    write_kmnist_idx(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + data[4:]))
    with pytest.raises(DataError, match="bad header"):
        KMNIST(data_cfg(tmp_path), "train")
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(DataError, match="truncated"):
        KMNIST(data_cfg(tmp_path), "train")
    path.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable gzip"):
        KMNIST(data_cfg(tmp_path), "train")


def test_wrong_md5_without_download_is_refused(tmp_path):
    md5 = write_kmnist_idx(tmp_path)
    md5["train-images-idx3-ubyte.gz"] = "0" * 32
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        KMNIST(data_cfg(tmp_path, md5), "train")


def test_transform_names_are_checked():
    with pytest.raises(ConfigError, match="Did you mean: RandomCrop"):
        build_transforms([("RandomCorp", {"size": 28})])
    with pytest.raises(ConfigError, match="Normalize needs mean and std"):
        build_transforms([("Normalize", {})])
    with pytest.raises(ConfigError, match="Pad"):
        build_transforms([("Pad", {"pading": 2})])


def test_download_off_and_nothing_in_place_names_all_four_files_at_once(tmp_path):
    for split in ("train", "test"):
        with pytest.raises(DataError) as error:
            KMNIST(data_cfg(tmp_path / "empty"), split)
        message = str(error.value)
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                     "t10k-labels-idx1-ubyte.gz"):
            assert f"{name} is missing" in message and f"{name} (md5 not checked)" in message


def test_a_split_loads_while_the_other_is_missing(tmp_path):
    """Only the split asked for is required (evaluation needs only the test files)."""
    write_kmnist_idx(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    assert len(KMNIST(data_cfg(tmp_path), "test")) == 50
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is missing"):
        KMNIST(data_cfg(tmp_path), "train")


def test_a_file_with_another_md5_is_reported_as_present_with_the_fix(tmp_path):
    md5 = write_kmnist_idx(tmp_path)
    expected = {**md5, "train-images-idx3-ubyte.gz": "0" * 32, "t10k-labels-idx1-ubyte.gz": "1" * 32}
    with pytest.raises(DataError) as error:
        KMNIST(data_cfg(tmp_path, expected), "train")
    message = str(error.value)
    assert (f"train-images-idx3-ubyte.gz is present but its md5 is {md5['train-images-idx3-ubyte.gz']}, "
            f"expected {'0' * 32}") in message
    assert f"t10k-labels-idx1-ubyte.gz is present but its md5 is {md5['t10k-labels-idx1-ubyte.gz']}" in message
    assert "data.md5=None" in message and "missing" not in message
    assert len(KMNIST(data_cfg(tmp_path, None), "train")) == 200  # the fix the message names
