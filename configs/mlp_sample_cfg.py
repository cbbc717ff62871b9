"""The base MLP on the KMNIST sample shipped in data/samples/kmnist-8k2k (8,000 training and
2,000 test images of the official test split, see its README): trains offline in seconds."""
import copy
import os

from configs.mlp_cfg import cfg as base_cfg
from configs.paths import DATA_DIR

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "mlp_sample"
cfg.data.root = os.path.join(DATA_DIR, "samples", "kmnist-8k2k")
cfg.data.download = False
cfg.data.md5 = {
    "train-images-idx3-ubyte.gz": "90534707442adb091687980a958abbda",
    "train-labels-idx1-ubyte.gz": "ef5df239fe3ae844b374badb4cb84b71",
    "t10k-images-idx3-ubyte.gz": "51de6e35cf312b4f2b77fd2bcd439342",
    "t10k-labels-idx1-ubyte.gz": "4439fc7e4d142363bc4bd74edd9d8fc0",
}
