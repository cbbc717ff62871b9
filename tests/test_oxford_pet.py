"""Oxford-IIIT Pet on synthetic data in the official layout, downloaded from 127.0.0.1."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from easydict import EasyDict

from datasets.files.folder_layout import Layout
from datasets.oxford_pet import OxfordIIITPet, find_layout
from datasets.synthetic import add_quirky_images, pack_archives, pack_evil_images_archive, write_pets
from tests.http_server import http_server
from utils.errors import DataError

REPO = Path(__file__).resolve().parents[1]


# The official 37 breeds in CLASS-ID order, as annotations/list.txt of the release names them.
OFFICIAL_CLASSES = [
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal", "Birman",
    "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau", "english_cocker_spaniel",
    "english_setter", "german_shorthaired", "great_pyrenees", "havanese", "japanese_chin", "keeshond",
    "leonberger", "Maine_Coon", "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll",
    "Russian_Blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu", "Siamese", "Sphynx",
    "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier"]


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
    assert train.classes == OFFICIAL_CLASSES
    assert len(train) == 12 and train.class_counts() == [4, 4, 0, 0, 0, 4] + [0] * 31  # class ids 1, 2, 6
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


def test_archives_with_another_md5_are_reported_as_present_with_the_fix(served, tmp_path):
    url, md5 = served
    OxfordIIITPet(data_cfg(tmp_path / "first", md5, [url], True), "train")
    root = tmp_path / "root"
    root.mkdir()
    for name in md5:
        (root / name).write_bytes((tmp_path / "first" / name).read_bytes())
    wrong = {name: "0" * 32 for name in md5}
    with pytest.raises(DataError) as error:
        OxfordIIITPet(data_cfg(root, wrong), "train")
    message = str(error.value)
    for name in md5:
        assert f"{name} is present but its md5 is {md5[name]}, expected {'0' * 32}" in message
    assert "data.md5=None" in message and "missing" not in message
    assert len(OxfordIIITPet(data_cfg(root, None), "train")) == 12  # the fix the message names


def test_no_archives_and_downloads_off_names_both_and_the_folders(tmp_path):
    with pytest.raises(DataError) as error:
        OxfordIIITPet(data_cfg(tmp_path), "test")
    message = str(error.value)
    assert "images.tar.gz is missing; annotations.tar.gz is missing" in message
    assert "images/ and annotations/" in message and "data.download=False" in message


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


def nest(root, images="images/images", lists="annotations/annotations"):
    """Write the synthetic pets at `root`, then move its folders to `root/images` and `root/lists`
    (paths relative to root), as Kaggle copies nest them; returns (images folder, lists folder)."""
    flat = write_pets(root.parent / (root.name + "-flat"))
    for source, target in (("images", images), ("annotations", lists)):
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        (flat / source).rename(root / target)
    flat.rmdir()
    return root / images, root / lists


@pytest.mark.parametrize("images, lists", [("images/images", "annotations/annotations"),
                                           ("copy/v2/images/images", "copy/v2/annotations/annotations"),
                                           ("images", "annotations/annotations")])
def test_nested_layouts_are_found_and_read(tmp_path, images, lists):
    images_dir, lists_dir = nest(tmp_path / "pets", images, lists)
    assert find_layout(tmp_path / "pets") == Layout(images_dir, lists_dir)
    dataset = OxfordIIITPet(data_cfg(tmp_path / "pets"), "train")
    assert len(dataset) == 12 and dataset.samples[0][0].parent == images_dir


def test_find_layout_pairs_the_closest_folders_and_searches_only_as_deep_as_asked(tmp_path):
    one = write_pets(tmp_path / "input" / "a-copy" / "oxford-iiit-pet")
    two_images, two_lists = nest(tmp_path / "input" / "b-copy")
    # one's images are not paired with two's lists (farther apart), nor the other way round
    assert find_layout(tmp_path / "input") == Layout(one / "images", one / "annotations")
    (one / "annotations" / "test.txt").unlink()
    assert find_layout(tmp_path / "input") == Layout(two_images, two_lists)
    assert find_layout(tmp_path / "input", depth=2) is None  # b-copy/annotations/annotations is level 3
    assert find_layout(tmp_path / "missing") is None
    sample = write_pets(tmp_path / "input" / "a-notebook-output" / "synthetic-pets", train_per_class=1,
                        test_per_class=1)  # nearer and shallower, but a sample: the full copy wins
    assert find_layout(tmp_path / "input") == Layout(two_images, two_lists)
    assert find_layout(sample) == Layout(sample / "images", sample / "annotations")


def test_without_a_layout_it_says_what_it_looked_for_and_what_it_saw(tmp_path):
    write_pets(tmp_path / "pets" / "copy")
    (tmp_path / "pets" / "copy" / "annotations" / "trainval.txt").unlink()
    with pytest.raises(DataError) as error:
        OxfordIIITPet(data_cfg(tmp_path / "pets"), "train")
    message = str(error.value)
    assert "looked up to 4 levels down for a folder of .jpg images" in message
    assert "trainval.txt and test.txt" in message
    assert "copy/images/ (18 .jpg files)" in message and "copy/annotations/ (test.txt)" in message
    assert "images.tar.gz" in message  # and which files to place there by hand


@pytest.mark.parametrize("nested", [True, False])
def test_cli_data_root_finds_a_nested_copy_or_says_what_it_saw(tmp_path, nested):
    if nested:
        nest(tmp_path / "pets", "extra/images/images", "extra/annotations/annotations")
    else:
        (tmp_path / "pets" / "empty").mkdir(parents=True)
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "dataset_stats.py"), "--cfg", "vgg16", "--set",
                             f"data.root={str(tmp_path / 'pets')!r}", "data.download=False"],
                            capture_output=True, text=True, cwd=REPO)
    if nested:
        assert result.returncode == 0, result.stderr
        assert "Oxford-IIIT Pet train: 12 images" in result.stdout
    else:
        assert result.returncode == 2
        assert "No Oxford-IIIT Pet found under" in result.stderr and "saw: ./; empty/" in result.stderr
        assert "Traceback" not in result.stderr


def test_the_decoded_cache_goes_to_kaggles_scratch_folder_only_on_kaggle(tmp_path):
    from configs.oxford_pet_data import data_cfg as pets_data
    from configs.paths import kaggle_scratch_dir
    kaggle = {"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}
    assert kaggle_scratch_dir(kaggle, isdir=lambda path: path == "/kaggle/temp") == "/kaggle/temp"
    assert kaggle_scratch_dir(kaggle, isdir=lambda path: False) == "/tmp"
    assert kaggle_scratch_dir({}, isdir=lambda path: True) is None
    assert pets_data.cache_dir is None  # this machine is not Kaggle: <repo>/data/cache as before
    script = ("import configs.oxford_pet_data as c; print(c.data_cfg.cache_dir)")
    on_kaggle = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                               env={**os.environ, **kaggle}, check=True)
    assert on_kaggle.stdout.strip() in ("/kaggle/temp/cache", "/tmp/cache")


def test_statistics(tmp_path, capsys):
    write_pets(tmp_path)
    dataset = OxfordIIITPet(data_cfg(tmp_path), "train")
    stats = dataset.show_statistic()
    assert stats["species"] == {"cat": 8, "dog": 4}
    assert {name: count for name, count in stats["class_counts"].items() if count} == \
        {"Abyssinian": 4, "american_bulldog": 4, "Bengal": 4}
    # Every image is one of three colours plus noise: the red-channel mean is near their mean.
    assert stats["mean"][0] == pytest.approx((200 + 40 + 50) / 3 / 255, abs=0.02)
    assert "12 images, 37 classes, 8 cats, 4 dogs" in capsys.readouterr().out
    assert torch.equal(dataset.labels, torch.tensor([0] * 4 + [1] * 4 + [5] * 4))


def rewrite_list(root, file, edit):
    """Apply `edit` (lines -> lines) to annotations/`file`."""
    path = root / "annotations" / file
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


@pytest.mark.parametrize("absent", ["american_bulldog", "Abyssinian"])
def test_labels_are_class_id_minus_one_whatever_breeds_are_listed(tmp_path, absent):
    write_pets(tmp_path)
    for file in ("trainval.txt", "test.txt"):
        rewrite_list(tmp_path, file, lambda lines: [line for line in lines if not line.startswith(absent + "_")])
    for split in ("train", "test"):
        dataset = OxfordIIITPet(data_cfg(tmp_path), split)
        assert dataset.classes == OFFICIAL_CLASSES
        for path, label, _ in dataset.samples:
            assert OFFICIAL_CLASSES[label] == path.stem.rsplit("_", 1)[0]
        assert sorted(set(dataset.labels.tolist())) == sorted({0, 1, 5} - {OFFICIAL_CLASSES.index(absent)})


def test_a_split_holding_one_breed_keeps_its_official_label(tmp_path):
    write_pets(tmp_path)
    rewrite_list(tmp_path, "test.txt", lambda lines: [line for line in lines if line.startswith("Bengal_")])
    test = OxfordIIITPet(data_cfg(tmp_path), "test")
    assert set(test.labels.tolist()) == {5} and test.class_counts()[5] == 2 and len(test.classes) == 37


@pytest.mark.parametrize("line, expected", [
    ("Bengal_5 0 1 2", "CLASS-ID 0 of Bengal_5 is outside 1-37"),
    ("Bengal_5 38 1 2", "CLASS-ID 38 of Bengal_5 is outside 1-37"),
    ("Bengal_5 -6 1 2", "CLASS-ID -6"),
    ("Bengal_5 7 1 3", "named 'Bengal_5', but CLASS-ID 7 is Birman"),
    ("Bengal_5 2 2 1", "named 'Bengal_5', but CLASS-ID 2 is american_bulldog"),
    ("bengal_5 6 1 2", "named 'bengal_5', but CLASS-ID 6 is Bengal"),
    ("Bengal 6 1 2", "named 'Bengal', but CLASS-ID 6 is Bengal"),
    ("Bengal_5 6 2 2", "SPECIES is 2, but Bengal is a cat"),
    ("Bengal_5 6 1 1", "BREED-ID is 1, but Bengal is breed 2"),
    ("Bengal_5 6 1", "expected 'Image CLASS-ID SPECIES BREED-ID'"),
    ("Bengal_5 six 1 2", "expected 'Image CLASS-ID SPECIES BREED-ID'"),
    ("Bengal_5 6 1 2 extra", "expected 'Image CLASS-ID SPECIES BREED-ID'"),
    ("Bengal_6 6 1 2", "Bengal_6 is listed again \\(first on line 6\\)"),
])
@pytest.mark.parametrize("split", ["train", "test"])
def test_a_line_against_the_official_table_is_a_data_error_naming_file_and_line(tmp_path, line, expected, split):
    """Bengal_5 is the 5th line of test.txt; the bad line replaces it or (a duplicate) follows the list."""
    write_pets(tmp_path)
    number = 5
    if "listed again" in expected:
        rewrite_list(tmp_path, "test.txt", lambda lines: lines + [line])
        number = 7
    else:
        rewrite_list(tmp_path, "test.txt", lambda lines: [line if row.startswith("Bengal_5 ") else row
                                                          for row in lines])
    with pytest.raises(DataError, match=rf"test\.txt, line {number}: .*{expected}"):
        OxfordIIITPet(data_cfg(tmp_path), split)  # both lists are checked, whichever split is asked for


def test_an_unreadable_list_is_a_data_error(tmp_path):
    write_pets(tmp_path)
    (tmp_path / "annotations" / "test.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="Cannot read the split list .*test.txt"):
        OxfordIIITPet(data_cfg(tmp_path), "train")


def test_an_image_in_both_lists_is_a_data_error(tmp_path):
    write_pets(tmp_path)
    rewrite_list(tmp_path, "test.txt", lambda lines: lines + ["Abyssinian_1 1 1 1"])
    with pytest.raises(DataError, match="1 images are listed in both .*trainval.txt and .*test.txt: Abyssinian_1"):
        OxfordIIITPet(data_cfg(tmp_path), "train")


def test_a_bad_line_exits_2_with_one_paragraph(tmp_path):
    write_pets(tmp_path)
    rewrite_list(tmp_path, "trainval.txt", lambda lines: ["Bengal_1 40 1 2"] + lines[1:])
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "dataset_stats.py"), "--cfg", "resnet50",
                             "--set", f"data.root='{tmp_path}'", "data.download=False"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "trainval.txt, line 1: CLASS-ID 40 of Bengal_1 is outside 1-37" in result.stderr

