"""The KMNIST data section shared by every MLP config (Kuzushiji-MNIST, 10 classes, 28x28 grey)."""
import os

from easydict import EasyDict

from configs.defaults import validation_defaults
from configs.paths import DATA_DIR

data_cfg = EasyDict(
    name="KMNIST",
    root=os.path.join(DATA_DIR, "KMNIST"),
    download=True,
    # Base URLs tried in order; a file's URL is base + file name.
    mirrors=[
        "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    ],
    # Official md5s. Set md5=None to accept a custom copy in the official format.
    md5={
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
    num_workers=0,
    # auto | device | cached | workers: batches built on the training device from the whole
    # split held there as uint8 (auto: when the transforms have batched versions and it fits),
    # or per item in DataLoader workers (cached: image files only). See datasets/loading/loaders.py.
    loader="auto",
    **validation_defaults,
    # Per-channel mean/std of the training images scaled to [0, 1]. None: computed from the
    # training split at start-up (what show_statistic prints) and saved with the run.
    mean=None,
    std=None,
    # (torchvision transform name, kwargs). Normalize with no kwargs uses mean/std above.
    transforms=EasyDict(
        train=[("ToTensor", {}), ("Normalize", {})],
        test=[("ToTensor", {}), ("Normalize", {})],
    ),
)
