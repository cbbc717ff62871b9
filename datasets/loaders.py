"""Datasets and DataLoaders from the config: the one place that knows every dataset class."""

import torch
from torch.utils.data import DataLoader

from datasets.kmnist import KMNIST
from datasets.oxford_pet import OxfordIIITPet
from datasets.transforms import build_transforms
from utils.errors import ConfigError, did_you_mean

DATASETS = {"KMNIST": KMNIST, "OxfordIIITPet": OxfordIIITPet}


def dataset_class(name):
    """The dataset class registered under `data.name`."""
    if name not in DATASETS:
        hint = did_you_mean(str(name), DATASETS)
        raise ConfigError(f"Unknown data.name '{name}'; choose one of {', '.join(DATASETS)}.{hint}")
    return DATASETS[name]


def build_dataset(data_cfg, split):
    """The `split` ("train" | "test") dataset with its configured transforms."""
    transforms = build_transforms(data_cfg.transforms[split], data_cfg.mean, data_cfg.std)
    return dataset_class(data_cfg.name)(data_cfg, split, transforms)


def make_loader(dataset, cfg, split, batch_size=None):
    """DataLoader over `dataset`; the training split is shuffled."""
    workers = cfg.data.num_workers
    return DataLoader(dataset, batch_size=batch_size or cfg.train.batch_size, shuffle=split == "train",
                      num_workers=workers, pin_memory=torch.cuda.is_available(),
                      prefetch_factor=4 if workers else None)


def build_loader(cfg, split, batch_size=None):
    """DataLoader over the `split` dataset of cfg.data."""
    return make_loader(build_dataset(cfg.data, split), cfg, split, batch_size)


def build_loaders(cfg):
    """(train_loader, test_loader, class_names).

    When data.mean/std are None they are computed from the training images (what
    show_statistic prints) and written into cfg, so the saved config records them.
    """
    data_cfg = cfg.data
    train_set = dataset_class(data_cfg.name)(data_cfg, "train")
    test_set = dataset_class(data_cfg.name)(data_cfg, "test")
    if data_cfg.mean is None or data_cfg.std is None:
        mean, std = train_set.pixel_statistics()
        data_cfg.mean, data_cfg.std = [round(m, 6) for m in mean], [round(s, 6) for s in std]
        print(f"{data_cfg.name} training-set statistics for Normalize: mean={data_cfg.mean} std={data_cfg.std}")
    train_set.transforms = build_transforms(data_cfg.transforms.train, data_cfg.mean, data_cfg.std)
    test_set.transforms = build_transforms(data_cfg.transforms.test, data_cfg.mean, data_cfg.std)
    return make_loader(train_set, cfg, "train"), make_loader(test_set, cfg, "test"), list(train_set.classes)
