"""Small learnable image-classification data for Trainer tests: noisy class prototypes."""
import torch
from torch.utils.data import DataLoader, Dataset


class PrototypeDataset(Dataset):
    """`per_class` images [1, 28, 28] per class: a fixed random prototype of the class plus noise.

    The same `seed` gives the same prototypes; `split_seed` picks the noise, so train and
    test splits share prototypes but not images.
    """

    classes = [f"c{i}" for i in range(10)]

    def __init__(self, per_class, seed=0, split_seed=1, noise=1.0):
        prototypes = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
        noise_rng = torch.Generator().manual_seed(split_seed)
        self.labels = torch.arange(10).repeat_interleave(per_class)
        self.images = prototypes[self.labels] + noise * torch.randn(len(self.labels), 1, 28, 28,
                                                                    generator=noise_rng)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"image": self.images[index], "label": int(self.labels[index])}


def prototype_loaders(batch_size=32, per_class_train=40, per_class_test=20):
    """(train_loader, test_loader, class_names) over PrototypeDataset."""
    train = PrototypeDataset(per_class_train, split_seed=1)
    test = PrototypeDataset(per_class_test, split_seed=2)
    return (DataLoader(train, batch_size=batch_size, shuffle=True),
            DataLoader(test, batch_size=64), PrototypeDataset.classes)
