"""Small synthetic images for the batched-transform tests: natural-looking RGB pictures
(smooth colour gradients, a few soft blobs, fine texture) and the edge-replicated canvas the
decoded cache holds them on."""
import numpy as np
import torch


def natural_rgb_images(sizes, seed=0):
    """One uint8 [h, w, 3] image per (height, width) in `sizes`."""
    rng = np.random.default_rng(seed)
    images = []
    for height, width in sizes:
        ys, xs = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
        channels = []
        for _ in range(3):
            a, b, c = rng.uniform(-0.6, 0.6, 3)
            channel = 0.45 + a * xs + b * ys + c * xs * ys
            for _ in range(3):  # soft blobs
                cy, cx = rng.uniform(0, 1, 2)
                radius, amplitude = rng.uniform(0.1, 0.3), rng.uniform(-0.3, 0.3)
                channel += amplitude * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius ** 2))
            channels.append(channel)
        picture = np.stack(channels, -1) + rng.normal(0, 0.04, (height, width, 3))  # texture
        images.append(np.clip(picture * 255, 0, 255).round().astype(np.uint8))
    return images


def edge_replicated_canvas(arrays):
    """(uint8 [N, 3, H, W], int64 [N, 2] sizes): each [h, w, 3] array at the top-left of the
    largest canvas, the rest filled by edge replication, as datasets/files/decoded_cache.py writes it."""
    height = max(array.shape[0] for array in arrays)
    width = max(array.shape[1] for array in arrays)
    canvas = np.stack([np.pad(array, ((0, height - array.shape[0]), (0, width - array.shape[1]), (0, 0)), mode="edge")
                       for array in arrays]).transpose(0, 3, 1, 2)
    sizes = torch.tensor([array.shape[:2] for array in arrays], dtype=torch.int64)
    return torch.from_numpy(np.ascontiguousarray(canvas)), sizes
