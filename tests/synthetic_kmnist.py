"""Synthetic KMNIST in the official on-disk formats, and a throw-away HTTP server.

The images are learnable: each class is a fixed random 28x28 pattern plus noise.
"""
import contextlib
import functools
import gzip
import http.server
import threading

import numpy as np

from datasets.files.download import md5sum
from datasets.kmnist import IDX_FILES, NPZ_FILES, idx_bytes


def kmnist_arrays(per_class, seed):
    """(images uint8 [10 * per_class, 28, 28], labels uint8 [10 * per_class])."""
    prototypes = np.random.default_rng(1234).integers(0, 256, (10, 28, 28))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    images = np.clip(prototypes[labels] + rng.normal(0, 40, (len(labels), 28, 28)), 0, 255)
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_kmnist_idx(root, train_per_class=20, test_per_class=5):
    """Write the four idx.gz files into `root`; returns {file name: md5}."""
    root.mkdir(parents=True, exist_ok=True)
    for split, per_class, seed in (("train", train_per_class, 0), ("test", test_per_class, 1)):
        for name, array in zip(IDX_FILES[split], kmnist_arrays(per_class, seed)):
            with gzip.open(root / name, "wb") as file:
                file.write(idx_bytes(array))
    return {name: md5sum(root / name) for names in IDX_FILES.values() for name in names}


def write_kmnist_npz(root, train_per_class=20, test_per_class=5):
    """Write the four .npz files of the NumPy release (arrays under 'arr_0') into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for split, per_class, seed in (("train", train_per_class, 0), ("test", test_per_class, 1)):
        for name, array in zip(NPZ_FILES[split], kmnist_arrays(per_class, seed)):
            np.savez_compressed(root / name, array)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server(directory):
    """Serve `directory` on 127.0.0.1 at a free port; yields the base URL ending in '/'."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
