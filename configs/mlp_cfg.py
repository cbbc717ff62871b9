"""Base MLP on KMNIST: one hidden layer of 200 with ReLU (159,010 trainable parameters)."""
import copy

from easydict import EasyDict

from configs.defaults import logger_defaults, top_level_defaults, train_defaults
from configs.kmnist_data import data_cfg

cfg = EasyDict(
    exp_name="mlp_base",
    **top_level_defaults,
    model_name="MLP",
    data=copy.deepcopy(data_cfg),
    model=EasyDict(
        # (torch.nn class name, kwargs), applied in order to a [B, 1, 28, 28] batch.
        layers=[
            ("Flatten", {}),
            ("Linear", {"in_features": 784, "out_features": 200}),
            ("ReLU", {}),
            ("Linear", {"in_features": 200, "out_features": 10}),
        ],
        # torch.nn.init function names and kwargs for the weights and biases of Linear layers.
        init_type=EasyDict(
            weight=("kaiming_uniform_", {"nonlinearity": "relu"}),
            bias=("zeros_", {}),
        ),
    ),
    train=EasyDict(
        copy.deepcopy(train_defaults),
        epochs=10,
        batch_size=64,
        optimizer="SGD",
        optimizer_args={"momentum": 0.9, "nesterov": True},
        lr=0.05,
        weight_decay=1e-4,
        scheduler="cosine",
    ),
    logger=EasyDict(copy.deepcopy(logger_defaults), experiment="KMNIST-MLP"),
)
