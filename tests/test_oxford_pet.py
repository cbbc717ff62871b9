"""Oxford-IIIT Pet on synthetic data in the official layout, downloaded from 127.0.0.1."""
import os

import pytest
import torch
from easydict import EasyDict

from datasets.oxford_pet import OxfordIIITPet, find_layout
from tests.synthetic_kmnist import http_server
from tests.synthetic_pets import add_quirky_images, pack_archives, pack_evil_images_archive, write_pets
from utils.errors import DataError


def data_cfg(root, md5=None, mirrors=(), download=False):
    return EasyDict(root=str(root), md5=md5, mirrors=list(mirrors), download=download)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL of a server holding good archives, their md5s)."""
    base = tmp_path_factory.mktemp("pets")
    md5 = pack_archives(write_pets(base / "source"), base / "mirror")
    with http_server(base / "mirror") as url:
        yield url, md5


def test_download_extract_and_items(served, tmp_path):
    url, md5 = served
    train = OxfordIIITPet(data_cfg(tmp_path, md5, [url], True), "train")
    assert sorted(os.listdir(tmp_path)) == ["annotations", "annotations.tar.gz", "images", "images.tar.gz"]
    assert train.classes == ["Abyssinian", "american_bulldog", "Bengal"]  # class ids 1, 2, 6
    assert len(train) == 12 and train.class_counts() == [4, 4, 4]
    item = train[5]
    assert item["label"] == 1 and item["category"] == "dog" and item["image"].mode == "RGB"
    test = OxfordIIITPet(data_cfg(tmp_path, md5), "test")  # reused, no server needed
    assert len(test) == 6 and test.classes == train.classes
    assert [test[i]["category"] for i in (0, 2, 4)] == ["cat", "dog", "cat"]


def test_md5_mismatch_is_refused_and_nothing_kept(served, tmp_path):
    url, md5 = served
    wrong = {**md5, "images.tar.gz": "0" * 32}
    with pytest.raises(DataError, match="images.tar.gz"):
        OxfordIIITPet(data_cfg(tmp_path, wrong, [url], True), "train")
    assert "images" not in os.listdir(tmp_path) and "images.tar.gz" not in os.listdir(tmp_path)


@pytest.mark.parametrize("member", ["../evil.jpg", "/tmp/evil_pets.jpg"])
def test_archive_member_escaping_the_root_is_refused(tmp_path, member):
    md5 = pack_evil_images_archive(tmp_path / "mirror", member)
    root = tmp_path / "root"
    pack_archives(write_pets(tmp_path / "src"), tmp_path / "good")
    root.mkdir()
    (root / "annotations.tar.gz").write_bytes((tmp_path / "good" / "annotations.tar.gz").read_bytes())
    (root / "images.tar.gz").write_bytes((tmp_path / "mirror" / "images.tar.gz").read_bytes())
    with pytest.raises(DataError, match="leaves the target directory"):
        OxfordIIITPet(data_cfg(root, {"images.tar.gz": md5, "annotations.tar.gz": None}), "train")
    assert not (tmp_path / "evil.jpg").exists() and not os.path.exists("/tmp/evil_pets.jpg")
    assert "images" not in os.listdir(root)


def test_quirky_files_decode_to_rgb(tmp_path):
    add_quirky_images(write_pets(tmp_path))
    dataset = OxfordIIITPet(data_cfg(tmp_path), "train")
    for index in (0, 1):  # Abyssinian_1 is a GIF, Abyssinian_2 an RGBA PNG
        image = dataset[index]["image"]
        assert image.mode == "RGB" and image.size == (40, 32)


def test_corrupt_jpeg_names_the_file(tmp_path):
    write_pets(tmp_path)
    path = tmp_path / "images" / "Bengal_3.jpg"
    path.write_bytes(path.read_bytes()[:30])
    dataset = OxfordIIITPet(data_cfg(tmp_path), "train")
    with pytest.raises(DataError, match="Bengal_3.jpg"):
        dataset[10]


def test_missing_images_are_counted_and_named_before_training(tmp_path):
    write_pets(tmp_path)
    (tmp_path / "images" / "Bengal_2.jpg").unlink()
    (tmp_path / "images" / "Abyssinian_4.jpg").unlink()
    with pytest.raises(DataError, match=r"2 of the 12 train images .*Abyssinian_4.jpg, Bengal_2.jpg"):
        OxfordIIITPet(data_cfg(tmp_path), "train")


def test_nested_read_only_kaggle_layout_is_used_as_is(tmp_path):
    write_pets(tmp_path / "oxford-iiit-pet" / "oxford-iiit-pet")
    outer = tmp_path / "oxford-iiit-pet"
    os.chmod(outer, 0o555)
    try:
        dataset = OxfordIIITPet(data_cfg(outer, download=True), "test")
    finally:
        os.chmod(outer, 0o755)
    assert len(dataset) == 6 and sorted(os.listdir(outer)) == ["oxford-iiit-pet"]


def test_find_layout_searches_only_as_deep_as_asked(tmp_path):
    deep = write_pets(tmp_path / "input" / "datasets" / "owner" / "oxford-iiit-pet")
    write_pets(tmp_path / "input" / "z-later")  # found first at depth 1: name order, shallow before deep
    assert find_layout(tmp_path / "input", depth=1) == tmp_path / "input" / "z-later"
    (tmp_path / "input" / "z-later" / "annotations" / "test.txt").unlink()
    assert find_layout(tmp_path / "input", depth=2) is None
    assert find_layout(tmp_path / "input", depth=3) == deep
    assert find_layout(tmp_path / "missing", depth=4) is None


def test_statistics(tmp_path, capsys):
    write_pets(tmp_path)
    dataset = OxfordIIITPet(data_cfg(tmp_path), "train")
    stats = dataset.show_statistic()
    assert stats["species"] == {"cat": 8, "dog": 4}
    assert stats["class_counts"] == {"Abyssinian": 4, "american_bulldog": 4, "Bengal": 4}
    # Every image is one of three colours plus noise: the red-channel mean is near their mean.
    assert stats["mean"][0] == pytest.approx((200 + 40 + 50) / 3 / 255, abs=0.02)
    assert "12 images, 3 classes, 8 cats, 4 dogs" in capsys.readouterr().out
    assert torch.equal(dataset.labels, torch.tensor([0] * 4 + [1] * 4 + [2] * 4))
