"""VGG-16 with BatchNorm on Oxford-IIIT Pet, from scratch: SGD lr 1e-3, momentum 0.9,
weight decay 5e-4, batch 64, 100 epochs (the assignment's stage 1)."""
import copy

from easydict import EasyDict

from configs.defaults import logger_defaults, top_level_defaults, train_defaults
from configs.oxford_pet_data import data_cfg

cfg = EasyDict(
    exp_name="vgg16",
    **top_level_defaults,
    model_name="VGG16",
    data=copy.deepcopy(data_cfg),
    model=EasyDict(
        conv_blocks=[(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)],  # (out_channels, convs) per block
        classifier_width=4096,
        dropout=0.5,
    ),
    train=EasyDict(
        copy.deepcopy(train_defaults),
        epochs=100,
        batch_size=64,
        optimizer="SGD",
        optimizer_args={"momentum": 0.9},
        lr=1e-3,
        weight_decay=5e-4,
        scheduler="constant",
        overfit_batch_steps=300,
    ),
    logger=EasyDict(copy.deepcopy(logger_defaults), experiment="OxfordIIITPet"),
)
