"""The device loader path: DeviceLoader's epochs, shards and preview; build_loaders' choice
between `device` and `workers`; KMNIST training that reaches the workers path's accuracy and
resumes exactly; Oxford pets through the decoded cache on the CPU."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import datasets.loading.loaders
import datasets.oxford_pet
from datasets.loading.device_loader import DeviceLoader
from datasets.oxford_pet import OxfordIIITPet
from datasets.synthetic import write_kmnist_idx
from datasets.synthetic import write_pets
from datasets.transforms.batched_transforms import NotBatchable
from datasets.transforms.building import build_transforms
from executors.checkpoints.checkpoint import load_checkpoint
from executors.trainer import Trainer
from tests.synthetic_batches import edge_replicated_canvas, natural_rgb_images
from utils.config import load_config
from utils.errors import ConfigError

PET_TRAIN = [
    ("RandomResizedCrop", {"size": 32}),
    ("RandomHorizontalFlip", {}),
    ("ColorJitterFactor", {"brightness": (0.6, 1.4), "saturation": (0.6, 1.4), "hue": (0.6, 1.4)}),
    ("ToTensor", {}),
    ("Normalize", {}),
]
PET_TEST = [("Resize", {"size": 36}), ("CenterCrop", {"size": 32}), ("ToTensor", {}), ("Normalize", {})]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- DeviceLoader


def index_images(count):
    """uint8 [count, 1, 2, 2] whose first two pixels spell the item's index (low byte, high byte)."""
    images = torch.full((count, 1, 2, 2), 7, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(count) % 256
    images[:, 0, 0, 1] = torch.arange(count) // 256
    return images


def indices_of(batch):
    """The item indices spelled by a batch of index_images (after the float conversion)."""
    pixels = (batch["image"][:, 0, 0, :2] * 255).round().long()
    return pixels[:, 0] + 256 * pixels[:, 1]


def index_loader(count=103, batch_size=10, **kwargs):
    options = {"shuffle": True, "seed": 5, **kwargs}
    return DeviceLoader(index_images(count), torch.arange(count) * 3, build_transforms([], family="batched"),
                        batch_size, **options)


def epoch_indices(loader, epoch=None):
    if epoch is not None:
        loader.set_epoch(epoch)
    return [indices_of(batch) for batch in loader]


def test_one_epoch_yields_every_item_once_in_ceil_n_over_b_batches():
    loader = index_loader()
    assert len(loader) == math.ceil(103 / 10) == 11
    batches = list(loader)
    assert len(batches) == 11 and [len(b["label"]) for b in batches] == [10] * 10 + [3]
    for batch in batches:
        assert batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (1, 2, 2)
        assert batch["label"].dtype == torch.int64
        assert torch.equal(batch["label"], 3 * indices_of(batch))  # each label travels with its image
    seen = torch.cat([indices_of(b) for b in batches])
    assert sorted(seen.tolist()) == list(range(103)) and seen.tolist() != list(range(103))


def test_order_depends_on_seed_and_epoch_only():
    first = epoch_indices(index_loader(), epoch=3)
    again = epoch_indices(index_loader(), epoch=3)
    loader = index_loader()
    epoch_indices(loader, epoch=0)
    repeated = epoch_indices(loader, epoch=3)  # the same loader, after another epoch
    for a, b, c in zip(first, again, repeated):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert torch.cat(epoch_indices(index_loader(), epoch=4)).tolist() != torch.cat(first).tolist()
    assert torch.cat(epoch_indices(index_loader(seed=6), epoch=3)).tolist() != torch.cat(first).tolist()


def test_augmentations_are_the_same_for_the_same_epoch_and_differ_across_epochs():
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    transform = build_transforms([("RandomAffine", {"degrees": 10, "translate": (0.1, 0.1)}), ("ToTensor", {})],
                                 family="batched")
    loader = DeviceLoader(images, torch.arange(40), transform, 16, shuffle=False, seed=0)
    run = [torch.cat([b["image"] for b in loader]) for _ in range(2)]
    loader.set_epoch(1)
    other = torch.cat([b["image"] for b in loader])
    assert torch.equal(run[0], run[1]) and not torch.equal(run[0], other)


def test_without_shuffle_items_come_in_order():
    loader = index_loader(shuffle=False)
    for epoch in (0, 1):
        assert torch.cat(epoch_indices(loader, epoch)).tolist() == list(range(103))


def test_two_ranks_split_each_global_batch_into_equal_shares():
    """Each process takes its share of every global batch; in training the last global batch is
    cut to a multiple of the process count (at most world_size - 1 images left out)."""
    whole = epoch_indices(index_loader(), epoch=2)
    ranks = [epoch_indices(index_loader(rank=rank, world_size=2), epoch=2) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    for batch, zero, one in zip(whole, *ranks):
        assert set(zero.tolist()).isdisjoint(one.tolist()) and len(zero) == len(one)
        assert set(zero.tolist()) | set(one.tolist()) <= set(batch.tolist())
        assert len(zero) + len(one) >= len(batch) - 1


def test_every_rank_gets_items_in_every_batch():
    for rank in (0, 1):
        sizes = [len(batch) for batch in epoch_indices(index_loader(count=101, rank=rank, world_size=2))]
        assert min(sizes) > 0, (rank, sizes)


def test_evaluation_shares_count_every_image_once():
    shares = [torch.cat(epoch_indices(index_loader(count=101, rank=rank, world_size=3, shuffle=False)))
              for rank in range(3)]
    assert sorted(torch.cat(shares).tolist()) == list(range(101))


def test_images_must_be_uint8_batches():
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(torch.zeros(4, 1, 2, 2), torch.arange(4), build_transforms([], family="batched"), 2, shuffle=False,
                     seed=0)


def test_preview_shows_originals_cropped_to_their_sizes_and_leaves_the_rng_alone():
    arrays = natural_rgb_images([(30, 40), (40, 30), (24, 24), (40, 40)] * 4, seed=1)
    canvas, sizes = edge_replicated_canvas(arrays)
    transform = build_transforms([("RandomResizedCrop", {"size": 16}), ("RandomHorizontalFlip", {})], family="batched")
    loader = DeviceLoader(canvas, torch.arange(16) % 4, transform, 4, shuffle=True, seed=3, sizes=sizes)
    before = [b["image"] for b in loader]
    rng = torch.get_rng_state()
    originals, augmented, labels = loader.preview(count=8)
    assert torch.equal(torch.get_rng_state(), rng)
    indices = list(range(0, 16, 2))
    assert len(originals) == 8 and labels == [i % 4 for i in indices]
    for original, index in zip(originals, indices):
        assert original.dtype == np.uint8 and np.array_equal(original, arrays[index])  # [h, w, 3], no canvas filler
    assert augmented.shape == (8, 3, 16, 16) and augmented.dtype == torch.float32
    assert 0 <= augmented.min() and augmented.max() <= 1
    after = [b["image"] for b in loader]  # the epoch's batches are untouched by the preview
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    grey = DeviceLoader(index_images(5), torch.arange(5), build_transforms([], family="batched"), 2, shuffle=False,
                        seed=0)
    assert [o.shape for o in grey.preview(count=2)[0]] == [(2, 2), (2, 2)]  # one channel: [H, W]


# ---------------------------------------------------------------- build_loaders on KMNIST


@pytest.fixture(scope="module")
def kmnist_root(tmp_path_factory):
    """Synthetic KMNIST: 200 training and 30 test images per class."""
    root = tmp_path_factory.mktemp("kmnist")
    write_kmnist_idx(root, train_per_class=200, test_per_class=30)
    return root


def kmnist_cfg(root, tmp_path, name="mlp_augment", *overrides):
    return load_config(name, [f"data.root='{root}'", "data.md5=None", "data.download=False", "device='cpu'",
                              "logger.backend='none'", f"exp_dir='{tmp_path}'", *overrides])


def loader_notes(capsys):
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("Data loader:")]


@pytest.mark.parametrize("choice, kind", [("auto", DeviceLoader), ("device", DeviceLoader), ("workers", DataLoader)])
def test_data_loader_setting_picks_the_path(kmnist_root, tmp_path, capsys, choice, kind):
    train, test, classes = datasets.loading.loaders.build_loaders(kmnist_cfg(kmnist_root, tmp_path, "mlp_augment",
                                                                     f"data.loader='{choice}'"))
    assert isinstance(train, kind) and isinstance(test, kind) and len(classes) == 10
    assert len(train) == math.ceil(2000 / 64) and len(test) == math.ceil(300 / 64)
    batch = next(iter(train))
    assert batch["image"].shape == (64, 1, 28, 28) and batch["image"].dtype == torch.float32
    notes = loader_notes(capsys)
    assert len(notes) == 1 and ("device" if kind is DeviceLoader else "workers") in notes[0]


def test_device_test_batches_equal_the_workers_test_batches(kmnist_root, tmp_path):
    loaders = {choice: datasets.loading.loaders.build_loaders(kmnist_cfg(kmnist_root, tmp_path, "mlp_augment",
                                                                 f"data.loader='{choice}'")).test
               for choice in ("device", "workers")}
    device, workers = ([batch for batch in loaders[choice]] for choice in ("device", "workers"))
    torch.testing.assert_close(torch.cat([b["image"] for b in device]), torch.cat([b["image"] for b in workers]),
                               atol=1e-6, rtol=0)
    assert torch.equal(torch.cat([b["label"] for b in device]), torch.cat([b["label"] for b in workers]))


@pytest.mark.parametrize("choice", ["device", "workers"])
def test_test_and_val_splits_batch_at_eval_batch_size_and_training_at_train_batch_size(kmnist_root, tmp_path, choice):
    loaders = datasets.loading.loaders.build_loaders(kmnist_cfg(
        kmnist_root, tmp_path, "mlp_augment", f"data.loader='{choice}'", "eval.batch_size=128", "data.val_fraction=0.1"))
    assert [len(b["label"]) for b in loaders.train][:2] == [64, 64] and len(loaders.train) == math.ceil(1800 / 64)
    assert [len(b["label"]) for b in loaders.test] == [128, 128, 44]
    assert [len(b["label"]) for b in loaders.val] == [128, 72]


def test_evaluation_at_another_batch_size_counts_the_same(kmnist_root, tmp_path):
    results = []
    for size in (None, 256):
        cfg = kmnist_cfg(kmnist_root, tmp_path, "mlp", f"eval.batch_size={size}", "threads=1")
        results.append(Trainer(cfg, *datasets.loading.loaders.build_loaders(cfg)).evaluate())
    assert torch.equal(results[0]["confusion"], results[1]["confusion"])
    assert results[0]["accuracy"] == results[1]["accuracy"]
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)


def test_a_bad_eval_batch_size_is_refused(kmnist_root, tmp_path):
    with pytest.raises(ConfigError, match="eval.batch_size"):
        kmnist_cfg(kmnist_root, tmp_path, "mlp", "eval.batch_size=0")


def test_auto_falls_back_to_workers_naming_a_transform_without_a_batched_version(kmnist_root, tmp_path, capsys):
    cfg = kmnist_cfg(kmnist_root, tmp_path)
    cfg.data.transforms.train.insert(0, ("GaussianBlur", {"kernel_size": 3}))
    train, test, _ = datasets.loading.loaders.build_loaders(cfg)
    assert isinstance(train, DataLoader) and isinstance(test, DataLoader)
    notes = loader_notes(capsys)
    assert len(notes) == 1 and "workers" in notes[0] and "GaussianBlur" in notes[0]
    assert next(iter(train))["image"].shape == (64, 1, 28, 28)
    cfg.data.loader = "device"
    with pytest.raises(NotBatchable, match="GaussianBlur"):
        datasets.loading.loaders.build_loaders(cfg)


def test_auto_falls_back_to_workers_for_a_prefix_on_in_memory_data(kmnist_root, tmp_path, capsys):
    cfg = kmnist_cfg(kmnist_root, tmp_path)
    cfg.data.transforms.test = [("Resize", {"size": 28}), ("ToTensor", {}), ("Normalize", {})]
    train, test, _ = datasets.loading.loaders.build_loaders(cfg)
    assert isinstance(test, DataLoader)


def test_unknown_loader_value_is_a_config_error(kmnist_root, tmp_path):
    with pytest.raises(ConfigError, match="data.loader='gpu'"):
        datasets.loading.loaders.build_loaders(kmnist_cfg(kmnist_root, tmp_path, "mlp_augment", "data.loader='gpu'"))


def test_auto_uses_workers_when_the_data_does_not_fit_the_memory_budget(kmnist_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(datasets.loading.loaders, "device_memory_bytes", lambda device: 1000)
    train, _, _ = datasets.loading.loaders.build_loaders(kmnist_cfg(kmnist_root, tmp_path))
    assert isinstance(train, DataLoader)
    notes = loader_notes(capsys)
    assert len(notes) == 1 and "workers" in notes[0] and "memory" in notes[0]
    forced, _, _ = datasets.loading.loaders.build_loaders(kmnist_cfg(kmnist_root, tmp_path, "mlp_augment",
                                                             "data.loader='device'"))
    assert isinstance(forced, DeviceLoader)


# ---------------------------------------------------------------- training on the device path


def fit(cfg, run_dir, epochs=None):
    trainer = Trainer(cfg, *datasets.loading.loaders.build_loaders(cfg))
    if epochs is not None:
        trainer.cfg.train.epochs = epochs
    run_dir.mkdir(exist_ok=True)
    return trainer, trainer.fit(run_dir)


def test_kmnist_training_on_the_device_path_reaches_the_workers_accuracy(kmnist_root, tmp_path, one_thread):
    accuracy = {}
    for choice in ("device", "workers"):
        cfg = kmnist_cfg(kmnist_root, tmp_path, "mlp_augment", f"data.loader='{choice}'", "train.epochs=3")
        trainer, summary = fit(cfg, tmp_path / choice)
        expected = DeviceLoader if choice == "device" else DataLoader
        assert isinstance(trainer.train_loader, expected)
        assert summary["epochs_completed"] == 3
        accuracy[choice] = summary["final_test_accuracy"]
    assert accuracy["device"] > 0.9 and accuracy["workers"] > 0.9
    assert abs(accuracy["device"] - accuracy["workers"]) <= 0.05


def test_each_epoch_of_a_device_run_has_its_own_order(kmnist_root, tmp_path, one_thread, monkeypatch):
    seen = []
    batch = DeviceLoader._batch

    def recording(self, indices, generator):
        if self.shuffle:
            seen.append((self.epoch, indices.clone()))
        return batch(self, indices, generator)

    monkeypatch.setattr(DeviceLoader, "_batch", recording)
    cfg = kmnist_cfg(kmnist_root, tmp_path, "mlp_augment", "data.loader='device'", "train.epochs=2")
    trainer, _ = fit(cfg, tmp_path / "run")
    seen = [(epoch, indices) for epoch, indices in seen if len(indices) > 8]  # not the preview's batch
    orders = {epoch: torch.cat([i for e, i in seen if e == epoch]) for epoch in (0, 1)}
    assert sorted(orders[0].tolist()) == sorted(orders[1].tolist()) == list(range(2000))
    assert not torch.equal(orders[0], orders[1])


def assert_resume_is_exact(cfg, tmp_path):
    """Train cfg("full") for its 2 epochs, and cfg("parts") for 1 then resumed from last.pt in
    a "new process" (other RNG states); both must end with equal weights and test accuracies."""
    fit(cfg("full"), tmp_path / "full")
    fit(cfg("parts"), tmp_path / "parts", epochs=1)  # "interrupted" after one epoch
    assert load_checkpoint(tmp_path / "parts" / "last.pt")["epochs_completed"] == 1
    torch.manual_seed(12345)  # a new process starts with other RNG states
    resumed = Trainer(cfg("parts"), *datasets.loading.loaders.build_loaders(cfg("parts")))
    resumed.load_model(tmp_path / "parts" / "last.pt")
    resumed.fit(tmp_path / "parts")

    full, parts = (load_checkpoint(tmp_path / name / "last.pt") for name in ("full", "parts"))
    assert parts["epochs_completed"] == full["epochs_completed"] == 2
    for name, tensor in full["model"].items():
        assert torch.equal(tensor, parts["model"][name]), name
    assert [r["test_accuracy"] for r in parts["history"]] == [r["test_accuracy"] for r in full["history"]]


def test_device_run_resumed_after_an_epoch_ends_with_the_same_weights(kmnist_root, tmp_path, one_thread):
    def cfg(name):
        return kmnist_cfg(kmnist_root, tmp_path, "mlp_augment", "data.loader='device'", f"exp_name='{name}'",
                          "train.epochs=2", "train.warmup_epochs=1.0")

    assert_resume_is_exact(cfg, tmp_path)


# ---------------------------------------------------------------- Oxford pets through the decoded cache


@pytest.fixture
def pets_cfg(tmp_path):
    root = write_pets(tmp_path / "pets", train_per_class=4, test_per_class=2, size=(40, 32))
    for name, size in (("Abyssinian_1", (30, 44)), ("Bengal_2", (48, 36))):  # a ragged training canvas
        path = root / "images" / f"{name}.jpg"
        Image.open(path).resize(size).save(path, quality=90)
    cfg = load_config("resnet50_tricks", [f"data.root='{root}'", "data.download=False", "data.md5=None",
                                          f"data.cache_dir='{tmp_path / 'cache'}'", "data.num_workers=0",
                                          "data.loader='device'", "device='cpu'", "train.batch_size=4",
                                          "logger.backend='none'", f"exp_dir='{tmp_path}'"])
    cfg.data.transforms.train, cfg.data.transforms.test = list(PET_TRAIN), list(PET_TEST)
    return cfg


def test_pets_on_the_device_path_match_the_workers_test_pipeline_and_reuse_the_cache(pets_cfg, capsys, monkeypatch):
    root_files = sorted(Path(pets_cfg.data.root).rglob("*"))
    train, test, classes = datasets.loading.loaders.build_loaders(pets_cfg)
    assert isinstance(train, DeviceLoader) and isinstance(test, DeviceLoader) and len(classes) == 37  # the official breeds
    out = capsys.readouterr().out
    assert out.count("Built the decoded cache") == 2 and "Loaded the decoded cache" not in out
    assert train.sizes is not None and test.sizes is None  # ragged train canvas; the test prefix makes 32x32
    assert sorted(train.sizes.tolist())[0] == [32, 40] and [36, 48] in train.sizes.tolist()
    batches = list(train)
    assert len(batches) == 3 and all(b["image"].shape == (4, 3, 32, 32) for b in batches)
    assert all(b["image"].dtype == torch.float32 for b in batches)

    per_item = OxfordIIITPet(pets_cfg.data, "test", build_transforms(PET_TEST, pets_cfg.data.mean, pets_cfg.data.std))
    expected = torch.stack([per_item[i]["image"] for i in range(len(per_item))])
    got = torch.cat([b["image"] for b in test])
    assert got.shape == expected.shape == (6, 3, 32, 32)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert torch.cat([b["label"] for b in test]).tolist() == [per_item[i]["label"] for i in range(6)]

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(datasets.oxford_pet, "decode_rgb", no_decoding)
    again_train, again_test, _ = datasets.loading.loaders.build_loaders(pets_cfg)
    out = capsys.readouterr().out
    assert out.count("Loaded the decoded cache") == 2 and "Built" not in out
    assert torch.equal(again_train.images, train.images) and torch.equal(again_test.images, test.images)
    assert torch.equal(torch.cat([b["image"] for b in again_train]), torch.cat([b["image"] for b in batches]))
    assert sorted(Path(pets_cfg.data.root).rglob("*")) == root_files  # nothing written there
