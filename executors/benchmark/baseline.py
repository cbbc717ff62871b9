"""The baseline the benchmark measures against: what a course template does, independently
of this library's loaders and Trainer. A per-item Dataset decodes each image with PIL and
runs the torchvision transforms, a DataLoader batches it, and a plain loop trains.
"""
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from datasets.files.image_files import IMAGE_FORMATS


class ArrayImages(Dataset):
    """Items (transform(PIL image), label) of a uint8 array [N, H, W] (grey) in memory."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index], mode="L")), int(self.labels[index])


class ImageFiles(Dataset):
    """Items (transform(PIL RGB image), label) of image files, decoded on every access."""

    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        with Image.open(self.paths[index], formats=IMAGE_FORMATS) as image:  # never EPS through Ghostscript
            return self.transform(image.convert("RGB")), int(self.labels[index])


def template_loader(dataset, batch_size, workers):
    """A shuffled DataLoader as templates write it (pinned memory when a GPU is there); its
    workers start at every pass, as the library's workers path does (exact resume needs it)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                      pin_memory=torch.cuda.is_available())


def template_train(model, loader, device, max_images, lr=0.01, autocast_dtype=None):
    """Train `model` with SGD over `loader` until `max_images` are seen; returns (images, seconds).

    The loop reads the loss back every step, as templates do to print a running loss.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    seen, running_loss = 0, 0.0
    start = time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = criterion(model(images).float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        seen += len(labels)
        if seen >= max_images:
            break
    return seen, time.perf_counter() - start


def template_input(loader, device, max_images):
    """Only fetch batches from `loader` onto `device` until `max_images`; returns (images, seconds)."""
    seen = 0
    start = time.perf_counter()
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        seen += len(labels)
        if seen >= max_images:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen, time.perf_counter() - start
