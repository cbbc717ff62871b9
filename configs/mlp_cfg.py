"""Base MLP on KMNIST: one hidden layer of 200 with ReLU (159,010 trainable parameters)."""
import copy

from easydict import EasyDict

from configs.kmnist_data import data_cfg
from configs.paths import RUNS_DIR

cfg = EasyDict(
    exp_name="mlp_base",
    exp_dir=RUNS_DIR,
    seed=0,
    device="auto",  # auto | cpu | cuda | cuda:N | mps
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
        epochs=10,
        batch_size=64,
        optimizer="SGD",  # any torch.optim class name
        optimizer_args={"momentum": 0.9, "nesterov": True},
        lr=0.05,
        # None, or {"base_lr": 0.1, "base_batch_size": 256}: lr = base_lr * batch_size / base_batch_size
        lr_scaling=None,
        weight_decay=1e-4,
        no_bias_decay=False,  # True: weight decay only on conv and linear weights
        scheduler="cosine",  # cosine | constant; stepped every iteration
        warmup_epochs=0.0,  # linear warmup, stepped every iteration
        label_smoothing=0.0,
        amp="auto",  # auto | bf16 | fp16 | off (auto: bf16 on capable GPUs, fp16 on older ones, off on CPU)
        grad_clip_norm=None,
        confusion_matrix_every_epoch=False,
        overfit_batch_steps=500,
    ),
    logger=EasyDict(
        backend="mlflow",  # mlflow | neptune | tensorboard | none
        experiment="KMNIST-MLP",
        tracking_uri=None,  # None: sqlite:///<exp_dir>/mlflow.db
        neptune_project=None,  # "workspace/project" for a self-hosted or archived project
        neptune_mode=None,  # None: offline unless a project and NEPTUNE_API_TOKEN are given
        flush_every=200,
    ),
)
