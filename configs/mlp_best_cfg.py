"""The strongest MLP here: two hidden layers of 2048 with GELU and dropout 0.2, random shifts,
small rotations and scalings of the training images, label smoothing, AdamW with warmup and
cosine decay, 80 epochs. Epochs and dropout were chosen on the validation split
(data.val_fraction=0.1; README, Part 1): 40 epochs with dropout 0.3 before."""
import copy

from configs.mlp_cfg import cfg as base_cfg

cfg = copy.deepcopy(base_cfg)
cfg.exp_name = "mlp_best"
cfg.data.transforms.train = [
    ("RandomAffine", {"degrees": 10, "translate": (0.1, 0.1), "scale": (0.9, 1.1)}),
    ("ToTensor", {}),
    ("Normalize", {}),
]
cfg.model.layers = [
    ("Flatten", {}),
    ("Linear", {"in_features": 784, "out_features": 2048}), ("GELU", {}), ("Dropout", {"p": 0.2}),
    ("Linear", {"in_features": 2048, "out_features": 2048}), ("GELU", {}), ("Dropout", {"p": 0.2}),
    ("Linear", {"in_features": 2048, "out_features": 10}),
]
cfg.train.update(
    epochs=80, batch_size=128, optimizer="AdamW", optimizer_args={"betas": (0.9, 0.999)}, lr=1e-3,
    weight_decay=0.05, no_bias_decay=True, warmup_epochs=1.0, scheduler="cosine", label_smoothing=0.1,
)
