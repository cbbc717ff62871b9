"""The validation split: a stratified hold-out of the training split, fixed by a seed alone,
evaluated with the test transforms, and the copy of a dataset that holds only some of its items."""
import copy

import torch

TRANSFORMS_OF = {"train": "train", "val": "test", "test": "test"}  # validation images are evaluated as test ones


def transform_specs(data_cfg, split: str) -> list:
    """The config's (name, kwargs) list that transforms `split` ("train", "val" or "test")."""
    return data_cfg.transforms[TRANSFORMS_OF[split]]


def holdout_indices(labels, fraction: float, seed: int):
    """(train indices, validation indices), int64 tensors in increasing order: a stratified
    hold-out of round(fraction * n_c) items of each class c (at least one item stays in
    training), drawn by a generator seeded with `seed` alone, so every loader path and process
    gets the same split. labels: int64 [N]."""
    generator = torch.Generator().manual_seed(seed)
    held = []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        count = min(round(fraction * len(members)), len(members) - 1)
        held.append(members[torch.randperm(len(members), generator=generator)[:count]])
    val = torch.cat(held).sort().values if held else torch.zeros(0, dtype=torch.long)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return torch.nonzero(keep).flatten(), val


def subset(dataset, indices, split):
    """A copy of `dataset` holding only the items at `indices` (int64 [n]), named `split`. Slices
    what the datasets here keep per item: `samples` (file lists), `images` and `labels` tensors."""
    part = copy.copy(dataset)
    part.split = split
    if isinstance(getattr(dataset, "samples", None), list):
        part.samples = [dataset.samples[i] for i in indices.tolist()]
    for name in ("images", "labels"):
        if isinstance(vars(dataset).get(name), torch.Tensor):
            setattr(part, name, vars(dataset)[name][indices])
    return part
