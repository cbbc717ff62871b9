"""Datasets and DataLoaders from the config: the one place that knows every dataset class."""
import difflib

import torch
from torch.utils.data import DataLoader

from datasets.kmnist import KMNIST
from datasets.transforms import build_transforms
from utils.errors import ConfigError

DATASETS = {"KMNIST": KMNIST}


def dataset_class(name):
    """The dataset class registered under `data.name`."""
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=2)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown data.name '{name}'; choose one of {', '.join(DATASETS)}.{hint}")
    return DATASETS[name]


def resolve_normalization(data_cfg):
    """Fill data.mean/std from the training split's pixel statistics when they are None."""
    if data_cfg.mean is None or data_cfg.std is None:
        mean, std = dataset_class(data_cfg.name)(data_cfg, "train").pixel_statistics()
        data_cfg.mean, data_cfg.std = [round(m, 6) for m in mean], [round(s, 6) for s in std]
        print(f"{data_cfg.name} training-set statistics: mean={data_cfg.mean} std={data_cfg.std}")


def build_dataset(data_cfg, split):
    """The `split` ("train" | "test") dataset with its configured transforms."""
    transforms = build_transforms(data_cfg.transforms[split], data_cfg.mean, data_cfg.std)
    return dataset_class(data_cfg.name)(data_cfg, split, transforms)


def build_loader(cfg, split, batch_size=None):
    """DataLoader over `split`; the training loader shuffles and drops no images."""
    dataset = build_dataset(cfg.data, split)
    workers = cfg.data.num_workers
    return DataLoader(dataset, batch_size=batch_size or cfg.train.batch_size, shuffle=split == "train",
                      num_workers=workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False, prefetch_factor=4 if workers else None)


def build_loaders(cfg):
    """(train_loader, test_loader, class_names); resolves data.mean/std first."""
    resolve_normalization(cfg.data)
    train_loader, test_loader = build_loader(cfg, "train"), build_loader(cfg, "test")
    return train_loader, test_loader, list(train_loader.dataset.classes)
