"""data.val_fraction: a stratified hold-out of the training split, fixed by the seed, the same
on both loader paths; best.pt chosen on it while test metrics are still reported every epoch."""
import csv
import json

import pytest
import torch

import datasets.loading.loaders
from datasets.loading.device_loader import DeviceLoader
from datasets.loading.splits import holdout_indices
from datasets.synthetic import write_kmnist_idx
from datasets.synthetic import write_pets
from executors.checkpoints.checkpoint import load_checkpoint
from executors.trainer import Trainer
from tests.synthetic_data import prototype_loaders
from tests.test_trainer import mlp_cfg
from utils.config import load_config
from utils.errors import CheckpointError


def test_holdout_is_stratified_disjoint_complete_and_fixed_by_the_seed():
    labels = torch.arange(5).repeat_interleave(torch.tensor([10, 20, 30, 7, 1]))
    train, val = holdout_indices(labels, 0.2, seed=3)
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(len(labels)))
    assert torch.bincount(labels[val], minlength=5).tolist() == [2, 4, 6, 1, 0]  # round(0.2 n); one stays
    again_train, again_val = holdout_indices(labels, 0.2, seed=3)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert not torch.equal(holdout_indices(labels, 0.2, seed=4)[1], val)
    assert len(holdout_indices(labels, 0.0, seed=3)[1]) == 0


@pytest.fixture(scope="module")
def kmnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kmnist")
    write_kmnist_idx(root, train_per_class=20, test_per_class=5)
    return root


def kmnist_cfg(root, tmp_path, *overrides):
    return load_config("mlp_augment", [f"data.root='{root}'", "data.md5=None", "data.download=False",
                                       "device='cpu'", "logger.backend='none'", f"exp_dir='{tmp_path}'",
                                       "train.batch_size=16", *overrides])


def test_both_loader_paths_hold_out_the_same_images_and_evaluate_them_as_test_images(kmnist_root, tmp_path, capsys):
    loaders = {path: datasets.loading.loaders.build_loaders(kmnist_cfg(kmnist_root, tmp_path, "data.val_fraction=0.25",
                                                               f"data.loader='{path}'"))
               for path in ("device", "workers")}
    assert isinstance(loaders["device"].val, DeviceLoader) and not isinstance(loaders["workers"].val, DeviceLoader)
    train, test, classes = loaders["workers"]  # unpacks as before
    assert len(classes) == 10 and loaders["workers"].class_names == classes
    val = {path: [batch for batch in found.val] for path, found in loaders.items()}
    images = {path: torch.cat([b["image"] for b in batches]) for path, batches in val.items()}
    labels = {path: torch.cat([b["label"] for b in batches]) for path, batches in val.items()}
    assert images["device"].shape == (50, 1, 28, 28) and torch.bincount(labels["device"]).tolist() == [5] * 10
    torch.testing.assert_close(images["device"], images["workers"])  # test transforms, no augmentation
    assert torch.equal(labels["device"], labels["workers"])
    train_counts = {path: sum(len(b["label"]) for b in found.train) for path, found in loaders.items()}
    assert train_counts == {"device": 150, "workers": 150}
    assert "Validation: 50 training images held out" in capsys.readouterr().out
    assert datasets.loading.loaders.build_loaders(kmnist_cfg(kmnist_root, tmp_path)).val is None


def validation_images(cfg):
    """uint8-exact float images [n, 1, 28, 28] of the validation split, in order."""
    return torch.cat([batch["image"] for batch in datasets.loading.loaders.build_loaders(cfg).val])


def test_val_seed_fixes_the_held_out_images_across_run_seeds(kmnist_root, tmp_path):
    def held_out(seed, *overrides):
        return validation_images(kmnist_cfg(kmnist_root, tmp_path, "data.val_fraction=0.25", f"seed={seed}",
                                            *overrides))
    assert not torch.equal(held_out(1), held_out(2))  # default: drawn from the run's seed
    fixed = held_out(1, "data.val_seed=7")
    assert torch.equal(fixed, held_out(2, "data.val_seed=7"))
    assert torch.equal(fixed, held_out(7))  # val_seed k holds out what seed k would


def test_pets_validation_images_come_from_the_training_files_on_the_device_path(tmp_path):
    root = write_pets(tmp_path / "pets", train_per_class=4, test_per_class=2, size=(40, 32))
    cfg = load_config("resnet50_tricks", [f"data.root='{root}'", "data.download=False", "data.md5=None",
                                          f"data.cache_dir='{tmp_path / 'cache'}'", "data.num_workers=0",
                                          "device='cpu'", "train.batch_size=4", "logger.backend='none'",
                                          "data.val_fraction=0.25"])
    test_specs = [("Resize", {"size": 36}), ("CenterCrop", {"size": 32}), ("ToTensor", {}), ("Normalize", {})]
    cfg.data.transforms.train = [("RandomResizedCrop", {"size": 32}), ("ToTensor", {}), ("Normalize", {})]
    cfg.data.transforms.test = test_specs
    found = {}
    for path in ("device", "workers"):
        cfg.data.loader = path
        loaders = datasets.loading.loaders.build_loaders(cfg)
        found[path] = torch.cat([b["image"] for b in loaders.val]), torch.cat([b["label"] for b in loaders.val])
        assert sum(len(b["label"]) for b in loaders.train) == 9  # 3 classes x 4, one of each held out
    torch.testing.assert_close(found["device"][0], found["workers"][0], atol=1e-5, rtol=0)
    assert found["device"][1].tolist() == found["workers"][1].tolist()
    assert len(set(found["device"][1].tolist())) == 3  # one image of each class
    assert any(folder.name.startswith("OxfordIIITPet-val-") for folder in (tmp_path / "cache").iterdir())


class ShuffledLabels:
    """A loader whose labels are permuted per batch: accuracy on it differs from the test accuracy."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        for batch in self.loader:
            yield {"image": batch["image"], "label": batch["label"].roll(1)}

    def __len__(self):
        return len(self.loader)


def test_best_checkpoint_is_chosen_on_validation_and_test_is_still_reported(tmp_path):
    cfg = mlp_cfg(tmp_path, "train.epochs=4", "data.val_fraction=0.2", "train.lr=0.01")
    train, test, classes = prototype_loaders(batch_size=32)
    trainer = Trainer(cfg, train, test, classes, val_loader=ShuffledLabels(test))
    (tmp_path / "run").mkdir()
    summary = trainer.fit(tmp_path / "run")
    history = trainer.history
    val_accuracies = [row["val_accuracy"] for row in history]
    best = max(range(4), key=lambda i: (val_accuracies[i], -i)) + 1
    assert summary["selected_on"] == "val" and summary["best_epoch"] == best
    assert summary["best_val_accuracy"] == val_accuracies[best - 1]
    assert summary["best_test_accuracy"] == history[best - 1]["test_accuracy"]
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epochs_completed"] == best
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert list(rows[0])[-3:] == ["val_loss", "val_accuracy", "val_balanced_accuracy"]
    assert [float(r["val_accuracy"]) for r in rows] == pytest.approx(val_accuracies, abs=1e-6)
    assert all(r["test_accuracy"] for r in rows)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["final_val_accuracy"] == pytest.approx(val_accuracies[-1]) and "final_test_accuracy" in saved


def test_resume_with_validation_is_exact_and_refuses_another_fraction(tmp_path):
    def trainer(name, epochs, fraction="0.2", *overrides):
        cfg = mlp_cfg(tmp_path, f"exp_name='{name}'", f"train.epochs={epochs}", f"data.val_fraction={fraction}",
                      *overrides)
        train, test, classes = prototype_loaders(batch_size=32)
        return Trainer(cfg, train, test, classes, val_loader=test)
    for name in ("full", "parts"):
        (tmp_path / name).mkdir()
    trainer("full", 3).fit(tmp_path / "full")
    first = trainer("parts", 3)
    first.cfg.train.epochs = 1  # "interrupted" after one epoch
    first.fit(tmp_path / "parts")
    torch.manual_seed(999)
    with pytest.raises(CheckpointError, match=r"Cannot resume .*\(data\.val_fraction: 0\.2 -> 0\.3\)"):
        trainer("parts", 3, fraction="0.3").load_model(tmp_path / "parts" / "last.pt")
    with pytest.raises(CheckpointError, match=r"\(data\.val_seed: None -> 5\)"):
        trainer("parts", 3, "0.2", "data.val_seed=5").load_model(tmp_path / "parts" / "last.pt")
    resumed = trainer("parts", 3)
    resumed.load_model(tmp_path / "parts" / "last.pt")
    resumed.fit(tmp_path / "parts")
    full, parts = (load_checkpoint(tmp_path / name / "last.pt") for name in ("full", "parts"))
    assert all(torch.equal(tensor, parts["model"][key]) for key, tensor in full["model"].items())
    assert [r["val_accuracy"] for r in parts["history"]] == [r["val_accuracy"] for r in full["history"]]


def test_train_experiment_selects_on_validation_when_asked(kmnist_root, tmp_path):
    from executors.launch import train_experiment
    summary = train_experiment(kmnist_cfg(kmnist_root, tmp_path, "data.val_fraction=0.2", "train.epochs=2",
                                          "threads=1"))
    assert summary["selected_on"] == "val" and summary["best_val_accuracy"] is not None
    assert json.loads((tmp_path / "mlp_augment" / "config.json").read_text())["data"]["val_fraction"] == 0.2
