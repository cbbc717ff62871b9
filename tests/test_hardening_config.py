"""Values that pass validation and then crash (issue 20, items 9, 10 and 16): the pre-flight
builds the transforms, model and optimizer before any run folder exists; an empty split, a
last batch of one image under BatchNorm and odd annotation files; worker processes capped
at the machine's CPUs."""
import os
import random
import signal

import numpy as np
import pytest
import torch

from datasets.kmnist import NPZ_FILES
from datasets.loading.device_loader import DeviceLoader
from datasets.loading.item_seeds import EpochItems
from datasets.loading.loaders import build_loaders, worker_count
from datasets.oxford_pet import read_split
from datasets.synthetic import kmnist_arrays, write_kmnist_npz
from datasets.synthetic import write_pets
from executors.launch import overfit_experiment, train_experiment
from executors.preflight import preflight
from models.registry import has_batch_norm
from utils.cli import run
from utils.config import available_configs, load_config
from utils.errors import ConfigError

TINY = {"mlp": [], "resnet50": ["model={'variant':'A','zero_gamma':False,'width':4,'layers':[1,1,1,1]}"],
        "vgg16": ["model.conv_blocks=[(4,1),(4,1),(4,1),(4,1),(4,1)]", "model.classifier_width=8"]}
PETS = ["data.num_workers=0", "data.loader='workers'", "train.batch_size=4"]
PETS_TRAIN = ("data.transforms.train=[('Resize',{'size':48}),('CenterCrop',{'size':32}),('ToTensor',{}),"
              "('Normalize',{})]")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """{"KMNIST": root, "OxfordIIITPet": root} of tiny synthetic copies in the official formats."""
    folder = tmp_path_factory.mktemp("data")
    write_kmnist_npz(folder / "kmnist", train_per_class=2, test_per_class=1)
    write_pets(folder / "pets", train_per_class=2, test_per_class=1)
    return {"KMNIST": folder / "kmnist", "OxfordIIITPet": folder / "pets"}


def overrides(roots, exp_dir, name):
    data = "KMNIST" if name.startswith("mlp") else "OxfordIIITPet"
    return ["device='cpu'", "threads=1", "logger.backend='none'", "train.epochs=1", "data.md5=None",
            "data.download=False", f"data.root='{roots[data]}'", f"exp_dir='{exp_dir}'",
            *TINY[name.partition("_")[0]], *(PETS if data == "OxfordIIITPet" else [])]


def train_status(name, settings, capsys):
    """(exit status, stderr) of scripts/train.py --cfg name --set settings, run in this process."""
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_:
            run(lambda: train_experiment(load_config(name, settings)))
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    return exit_.value.code, capsys.readouterr().err


# (config, --set values, the key the message must name and fix)
CRASHED_AFTER_THE_RUN_FOLDER = {  # the cases of the issue
    "3 means on grey KMNIST": ("mlp", ["data.mean=[0.5,0.5,0.5]", "data.std=[0.2,0.2,0.2]"], "data.mean"),
    "layers that do not chain": ("mlp", ["model.layers=[('Flatten',{}),('Linear',{'in_features':100,"
                                         "'out_features':10})]"], "model.layers"),
    "Linear of negative size": ("mlp", ["model.layers=[('Flatten',{}),('Linear',{'in_features':784,"
                                        "'out_features':-3}),('Linear',{'in_features':-3,'out_features':10})]"],
                                "model.layers[1]"),
    "Dropout(p=2)": ("mlp", ["model.layers=[('Flatten',{}),('Dropout',{'p':2}),('Linear',{'in_features':784,"
                             "'out_features':10})]"], "model.layers[1]"),
    "normal init, negative std": ("mlp", ["model.init_type.weight=('normal_',{'std':-1.0})"],
                                  "model.init_type.weight"),
    "RandomCrop(-3)": ("mlp", ["data.transforms.train=[('RandomCrop',{'size':-3}),('ToTensor',{}),('Normalize',{})]"],
                       "data.transforms.train[0]"),
    "RandomCrop larger than KMNIST": ("mlp", ["data.transforms.train=[('RandomCrop',{'size':40}),('ToTensor',{}),"
                                              "('Normalize',{})]"], "data.transforms.train[0]"),
    "LBFGS (needs a closure)": ("mlp", ["train.optimizer='LBFGS'", "train.optimizer_args=None"], "train.optimizer"),
    "LBFGS with SGD's arguments": ("mlp", ["train.optimizer='LBFGS'"], "train.optimizer_args"),
    "NUL byte in exp_dir": ("mlp", ["exp_dir='runs\\x00x'"], "exp_dir"),
}
SAME_CLASS = {  # new cases of the same classes
    "unknown layer class": ("mlp", ["model.layers=[('Flatten',{}),('Linaer',{'in_features':784,'out_features':10})]"],
                            "model.layers[1]"),
    "a function, not a layer": ("mlp", ["model.layers=[('Flatten',{}),('Parameter',{'data':None}),"
                                        "('Linear',{'in_features':784,'out_features':10})]"], "model.layers[1]"),
    "uniform init with a > b": ("mlp", ["model.init_type.bias=('uniform_',{'a':1.0,'b':0.0})"],
                                "model.init_type.bias"),
    "3 grey channels into a 784 MLP": ("mlp", ["data.transforms.train=[('Grayscale',{'num_output_channels':3}),"
                                               "('ToTensor',{}),('Normalize',{})]"], "model.layers"),
    "std 0 in a Normalize of the list": ("mlp", ["data.transforms.test=[('ToTensor',{}),('Normalize',{'mean':[0.5],"
                                                 "'std':[0.0]})]"], "data.transforms.test[1]"),
    "data.std with a 0": ("mlp", ["data.mean=[0.5]", "data.std=[0.0]"], "data.std"),
    "no ToTensor": ("mlp", ["data.transforms.train=[('RandomHorizontalFlip',{})]"], "data.transforms.train"),
    "RandomResizedCrop scale (max, min)": ("mlp", ["data.transforms.train=[('RandomResizedCrop',{'size':28,"
                                                   "'scale':(0.9,0.1)}),('ToTensor',{}),('Normalize',{})]"],
                                           "data.transforms.train[0]"),
    "SparseAdam (sparse gradients only)": ("mlp", ["train.optimizer='SparseAdam'", "train.optimizer_args=None"],
                                           "train.optimizer"),
    "negative lr": ("mlp", ["train.lr=-1"], "train.lr"),
    "ResNet-50 of 0 blocks": ("resnet50", ["model.layers=[0,1,1,1]"], "model.layers"),
    "ResNet-50 taking grey images": ("resnet50", ["data.transforms.train=[('RandomResizedCrop',{'size':32}),"
                                                  "('Grayscale',{}),('ToTensor',{}),"
                                                  "('Normalize',{'mean':[0.5],'std':[0.2]})]"], "model"),
    "pets: crop larger than the Resize before it": (
        "resnet50", ["data.transforms.train=[('Resize',{'size':48}),('RandomCrop',{'size':64}),('ToTensor',{}),"
                     "('Normalize',{})]"], "data.transforms.train[1]"),
    "pets: crop larger than the smallest pets": (
        "resnet50", ["data.transforms.train=[('RandomCrop',{'size':128}),('ToTensor',{}),('Normalize',{})]"],
        "data.transforms.train[0]"),
    "pets: test images of several sizes": (
        "resnet50", [PETS_TRAIN, "data.transforms.test=[('Resize',{'size':48}),('ToTensor',{}),('Normalize',{})]"],
        "data.transforms.test"),
    "VGG-16 block of 0 channels": ("vgg16", ["model.conv_blocks=[(0,1)]"], "model.conv_blocks"),
}


@pytest.mark.parametrize("name, settings, key", list({**CRASHED_AFTER_THE_RUN_FOLDER, **SAME_CLASS}.values()),
                         ids=list({**CRASHED_AFTER_THE_RUN_FOLDER, **SAME_CLASS}))
def test_values_that_cannot_run_exit_2_naming_the_key_before_any_run_folder(roots, tmp_path, capsys, name,
                                                                             settings, key):
    exp_dir = tmp_path / "runs"
    status, stderr = train_status(name, overrides(roots, exp_dir, name) + settings, capsys)
    assert status == 2 and "Traceback" not in stderr, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr  # one paragraph
    assert key in stderr, stderr
    assert not exp_dir.exists()  # no run folder, nothing at all


def test_overfit_batch_checks_the_same_before_loading_data(tmp_path, monkeypatch):
    monkeypatch.setattr("executors.launch.prepare_trainer", lambda cfg: pytest.fail("data loaded"))
    cfg = load_config("mlp", ["device='cpu'", f"data.root='{tmp_path / 'none'}'", "data.download=False",
                              "train.optimizer='LBFGS'", "train.optimizer_args=None"])
    with pytest.raises(ConfigError, match=r"^train\.optimizer: a training step of LBFGS .*closure"):
        overfit_experiment(cfg)


def test_messages_name_the_value_and_what_to_do(roots, tmp_path):
    def message(name, *settings):
        with pytest.raises(ConfigError) as error:
            preflight(load_config(name, overrides(roots, tmp_path, name) + list(settings)))
        return str(error.value)

    assert message("mlp", "data.mean=[0.5,0.5,0.5]", "data.std=[0.2,0.2,0.2]") == (
        "data.mean=[0.5, 0.5, 0.5] has 3 values, but the images reaching Normalize (data.transforms.train[1]) "
        "have 1 channel (KMNIST images are grey): give one value per channel, or None to compute them from the "
        "training images.")
    assert message("mlp", "model.layers=[('Flatten',{}),('Linear',{'in_features':784,'out_features':-3})]") == (
        "model.layers[1]: Linear({'in_features': 784, 'out_features': -3}) cannot be built: Trying to create "
        "tensor with negative dimension -3: [-3, 784]. Fix model.layers[1].")
    assert message("mlp", "model.layers=[('Flatten',{}),('Linear',{'in_features':100,'out_features':10})]") == (
        "model.layers: MLP on a batch of train images [2, 1, 28, 28] (what data.transforms.train makes of KMNIST "
        "images) fails: RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x784 and 100x10). "
        "Fix model.layers.")
    assert message("resnet50", "data.transforms.train=[('RandomCrop',{'size':128}),('ToTensor',{})]") == (
        "data.transforms.train[0]: RandomCrop({'size': 128}) on a 150x116 image of mode RGB (OxfordIIITPet "
        "images come in sizes like 150x116) fails: ValueError: Required crop size (128, 128) is larger than input "
        "image size (116, 150). Fix data.transforms.train[0].")


def test_preflight_leaves_the_random_states_and_the_config_as_they_were(roots, tmp_path):
    cfg = load_config("mlp_augment", overrides(roots, tmp_path, "mlp"))
    before = load_config("mlp_augment", overrides(roots, tmp_path, "mlp"))
    torch.manual_seed(5)
    random.seed(5)
    expected = torch.rand(3), random.random()
    torch.manual_seed(5)
    random.seed(5)
    preflight(cfg)
    after = torch.rand(3), random.random()
    assert torch.equal(after[0], expected[0]) and after[1] == expected[1]
    assert cfg == before


@pytest.mark.parametrize("name", [n for n in available_configs() if n.startswith("mlp")] + ["resnet50_tricks", "vgg16"])
def test_every_shipped_config_passes_the_preflight(name):
    preflight(load_config(name, ["device='cpu'"]))


# ---------------------------------------------------------------- item 10: empty splits, a batch of 1, odd lists


def write_kmnist_images(root, train_count, test_count=10):
    """KMNIST .npz files (the NumPy release) holding the first `train_count` / `test_count` synthetic images."""
    root.mkdir(parents=True)
    for split, count, seed in (("train", train_count, 0), ("test", test_count, 1)):
        for name, array in zip(NPZ_FILES[split], kmnist_arrays(3, seed)):
            np.savez_compressed(root / name, array[:count])
    return root


def test_an_empty_training_split_is_one_message_naming_the_files(roots, tmp_path, capsys):
    kmnist = write_kmnist_images(tmp_path / "kmnist", train_count=0)
    settings = overrides(roots, tmp_path / "runs", "mlp") + [f"data.root='{kmnist}'"]
    status, stderr = train_status("mlp", settings, capsys)
    assert (status, stderr) == (2, f"error: The KMNIST train files in {kmnist} hold no images: the train split would "
                                   f"be empty. Delete them and download again.\n")
    pets = write_pets(tmp_path / "pets", train_per_class=1, test_per_class=1)
    (pets / "annotations" / "trainval.txt").write_text("# Image CLASS-ID SPECIES BREED-ID\n#\n\n")
    settings = overrides(roots, tmp_path / "runs", "resnet50") + [f"data.root='{pets}'"]
    status, stderr = train_status("resnet50", settings, capsys)
    assert (status, stderr) == (2, f"error: {pets / 'annotations' / 'trainval.txt'} lists no images (only blank or "
                                   f"comment lines): the train split would be empty. Restore it from "
                                   f"annotations.tar.gz.\n")
    assert not (tmp_path / "runs").exists()


BATCH_NORM_MLP = ("model.layers=[('Flatten',{}),('Linear',{'in_features':784,'out_features':16}),"
                  "('BatchNorm1d',{'num_features':16}),('ReLU',{}),('Linear',{'in_features':16,'out_features':10})]")


@pytest.mark.parametrize("loader", ["device", "workers"])
def test_a_last_batch_of_one_image_is_left_out_under_batchnorm(roots, tmp_path, capsys, loader):
    kmnist = write_kmnist_images(tmp_path / "kmnist", train_count=2 * 10 + 1)
    settings = overrides(roots, tmp_path / "runs", "mlp") + [f"data.root='{kmnist}'", BATCH_NORM_MLP,
                                                             "train.batch_size=10", f"data.loader='{loader}'"]
    summary = train_experiment(load_config("mlp", settings))
    assert summary["epochs_completed"] == 1
    out = capsys.readouterr().out
    assert out.count("note: the last training batch of each epoch would hold 1 image, on which BatchNorm cannot "
                     "train: it is left out (a different image each epoch)") == 1


def test_only_batchnorm_models_leave_an_image_out(roots, tmp_path):
    kmnist = write_kmnist_images(tmp_path / "kmnist", train_count=21)
    cfg = load_config("mlp", overrides(roots, tmp_path, "mlp") + [f"data.root='{kmnist}'", "train.batch_size=10",
                                                                   "data.loader='workers'"])
    assert [len(b["label"]) for b in build_loaders(cfg).train] == [10, 10, 1]
    assert not has_batch_norm("MLP", cfg.model) and has_batch_norm("MLP", load_config(
        "mlp", [BATCH_NORM_MLP]).model) and has_batch_norm("ResNet50", {})


def test_the_cached_path_leaves_a_single_last_image_out_and_every_epoch_another(roots, tmp_path, capsys):
    pets = write_pets(tmp_path / "pets", train_per_class=3, test_per_class=1)  # 9 training images
    settings = overrides(roots, tmp_path, "resnet50") + [
        f"data.root='{pets}'", "data.loader='cached'", f"data.cache_dir='{tmp_path / 'cache'}'",
        "data.transforms.train=[('RandomResizedCrop',{'size':16}),('ToTensor',{}),('Normalize',{})]",
        "data.transforms.test=[('Resize',{'size':16}),('CenterCrop',{'size':16}),('ToTensor',{}),('Normalize',{})]"]
    train = build_loaders(load_config("resnet50", settings), drop_single_last=True).train
    assert "it is left out" in capsys.readouterr().out
    seen = []
    for epoch in range(3):
        train.set_epoch(epoch)
        batches = [batch["label"] for batch in train]
        assert [len(labels) for labels in batches] == [4, 4]
        seen.append(sorted(torch.cat(batches).tolist()))
    assert len({tuple(labels) for labels in seen}) > 1  # a different image left out


def test_every_process_leaves_out_the_same_count_under_data_parallelism():
    shares = [EpochItems(9, seed=0, shuffle=True, rank=r, world_size=2, batch_size=2, drop_single_last=True)
              for r in range(2)]  # 5 items each (padded), batches 2 + 2 + 1
    assert [len(s) for s in shares] == [4, 4] and [len(list(s)) for s in shares] == [4, 4]
    images, labels = torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10)
    loaders = [DeviceLoader(images, labels, lambda batch, generator: batch.images.float(), 4, shuffle=True, seed=0,
                            rank=r, world_size=2, drop_single_last=True) for r in range(2)]  # global batches 4 + 4 + 2
    assert [[len(b["label"]) for b in loader] for loader in loaders] == [[2, 2], [2, 2]]
    assert len(DeviceLoader(images, labels, None, 4, shuffle=False, seed=0, drop_single_last=True)) == 3  # tests: all


def test_split_lists_with_a_byte_order_mark_crlf_tabs_and_blank_lines_read_as_plain_ones(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("Abyssinian_1 1 1 1\nBengal_3 6 1 2\n")
    odd = tmp_path / "odd.txt"
    odd.write_bytes("\ufeffAbyssinian_1\t1 1\t1\r\n  # a comment\r\nBengal_3 6 1 2\r\n\r\n\n".encode("utf-8"))
    assert read_split(odd) == read_split(plain) == [("Abyssinian_1", 1, 1), ("Bengal_3", 6, 1)]


# ---------------------------------------------------------------- item 16: worker processes


def test_workers_are_capped_at_the_cpus_with_one_note_and_no_dataloader_warning(roots, tmp_path, capsys, monkeypatch,
                                                                                recwarn):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    cfg = load_config("mlp", overrides(roots, tmp_path, "mlp") + ["data.loader='workers'", "data.num_workers=4"])
    train, test, _ = build_loaders(cfg)
    assert train.num_workers == test.num_workers == 2
    assert len(next(iter(train))["label"]) == 20 and len(next(iter(test))["label"]) == 10
    out = capsys.readouterr().out
    assert "Data loader: workers, 2 worker processes" in out
    assert out.count("note: data.num_workers=4 is more than the 2 CPUs this process may use: 2 worker processes "
                     "are started") == 1
    assert [str(w.message) for w in recwarn if "worker" in str(w.message)] == []
    assert worker_count(100000)[0] == 2 and worker_count(2) == (2, None)
