"""The Oxford-IIIT Pet data section (37 breeds, RGB; 3,680 trainval / 3,669 test images).

Preprocessing is the assignment's: train RandomResizedCrop(224), RandomHorizontalFlip,
colour jitter by factors in [0.6, 1.4], Normalize; test Resize(256), CenterCrop(224),
Normalize, with the mean/std written exactly as the assignment gives them.
"""
import os

from easydict import EasyDict

from configs.defaults import validation_defaults
from configs.paths import CACHE_DIR, DATA_DIR

IMAGENET_MEAN = [0.485, 0.456, 0.405]  # as the assignment writes it (0.406 in torchvision)
IMAGENET_STD = [0.229, 0.224, 0.225]

data_cfg = EasyDict(
    name="OxfordIIITPet",
    # Holds images/ and annotations/ (also the read-only Kaggle copy: /kaggle/input/oxford-iiit-pet).
    root=os.path.join(DATA_DIR, "oxford-iiit-pet"),
    download=True,
    mirrors=[
        "https://thor.robots.ox.ac.uk/~vgg/data/pets/data/",
        "https://www.robots.ox.ac.uk/~vgg/data/pets/data/",
    ],
    md5={
        "images.tar.gz": "5c4f3ee8e5d25df40f4fd59a7f44e54c",
        "annotations.tar.gz": "95a8c909bbe2e81eed6a22bccdf3f68f",
    },
    num_workers=4,
    # auto | device | cached | workers (datasets/loading/loaders.py; auto: device on a GPU, cached on
    # the CPU). device and cached decode every image once into cache_dir (None: <repo>/data/cache;
    # on Kaggle its scratch folder /kaggle/temp/cache, never part of a saved version's output:
    # configs/paths.py), capped at cache_max_side px on the longer side.
    loader="auto",
    **validation_defaults,
    cache_dir=CACHE_DIR,
    cache_max_side=500,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    transforms=EasyDict(
        train=[
            ("RandomResizedCrop", {"size": 224}),
            ("RandomHorizontalFlip", {}),
            ("ColorJitterFactor", {"brightness": (0.6, 1.4), "saturation": (0.6, 1.4), "hue": (0.6, 1.4)}),
            ("ToTensor", {}),
            ("Normalize", {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}),
        ],
        test=[
            ("Resize", {"size": 256}),
            ("CenterCrop", {"size": 224}),
            ("ToTensor", {}),
            ("Normalize", {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}),
        ],
    ),
)
