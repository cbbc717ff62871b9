"""VGG-16 and ResNet-50: exact sizes against torchvision, the B/C/D tweaks in the module
structure, zero-gamma, the weight-decay groups, and one-batch overfitting on the CPU."""
import pytest
import torch
import torchvision
from easydict import EasyDict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from executors.trainer import Trainer
from models.blocks.resnet_blocks import Bottleneck, InputStem
from models.blocks.vgg16_blocks import classifier_block, conv_block
from models.registry import build_model, count_trainable_parameters
from models.resnet50 import ResNet50
from models.vgg16 import VGG16
from utils.config import load_config
from utils.errors import ConfigError

# The standard architectures for 37 classes (torchvision's vgg16_bn and resnet50); README quotes these.
VGG16_BN_37 = 134_420_581
RESNET50_37 = 23_583_845


def resnet(variant, zero_gamma=False):
    return ResNet50(EasyDict(variant=variant, zero_gamma=zero_gamma), 37)


def shapes(model):
    return sorted(tuple(p.shape) for p in model.state_dict().values())


def test_vgg16_equals_torchvision_vgg16_bn():
    model = VGG16(EasyDict(), 37)
    reference = torchvision.models.vgg16_bn(num_classes=37)
    assert count_trainable_parameters(model) == count_trainable_parameters(reference) == VGG16_BN_37
    assert shapes(model) == shapes(reference)  # same layers, buffers included
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 37
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 37)


def test_vgg_blocks():
    block = conv_block(3, 8, {"num_convs": 3, "kernel_size": 3, "padding": 1}, {"kernel_size": 2, "stride": 2})
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 3 + [nn.MaxPool2d]
    assert block(torch.randn(1, 3, 16, 16)).shape == (1, 8, 8, 8)
    head = classifier_block(10, 4, {"dropout": 0.5})
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Dropout] and head[2].p == 0.5


def test_resnet50_equals_torchvision_resnet50():
    model, reference = resnet("A"), torchvision.models.resnet50(num_classes=37)
    assert count_trainable_parameters(model) == count_trainable_parameters(reference) == RESNET50_37
    assert shapes(model) == shapes(reference)
    # B moves a stride but no weights: the same parameter count.
    assert count_trainable_parameters(resnet("B")) == RESNET50_37


@pytest.mark.parametrize("size", [32, 64, 224])
def test_resnet_output_shapes(size):
    for variant in "AD":
        model = resnet(variant).eval()
        assert model(torch.randn(2, 3, size, size)).shape == (2, 37)
        assert model.stages(model.stem(torch.randn(1, 3, size, size))).shape == (1, 2048, size // 32, size // 32)


def downsampling_blocks(model):
    return [block for block in model.modules() if isinstance(block, Bottleneck) and
            not isinstance(block.shortcut, nn.Identity) and block.conv2.in_channels != 64]


def test_tweak_b_moves_the_stride_to_the_3x3_conv():
    for variant, stride_1x1, stride_3x3 in [("A", 2, 1), ("B", 1, 2), ("C", 1, 2), ("D", 1, 2)]:
        blocks = downsampling_blocks(resnet(variant))
        assert len(blocks) == 3  # the first blocks of stages 2, 3 and 4
        for block in blocks:
            assert (block.conv1.stride, block.conv2.stride) == ((stride_1x1,) * 2, (stride_3x3,) * 2), variant


def test_tweak_c_replaces_the_7x7_stem_with_three_3x3_convs():
    for variant, kernels in [("A", [7]), ("B", [7]), ("C", [3, 3, 3]), ("D", [3, 3, 3])]:
        stem = resnet(variant).stem
        convs = [m for m in stem if isinstance(m, nn.Conv2d)]
        assert [c.kernel_size[0] for c in convs] == kernels, variant
        assert isinstance(stem, InputStem) and isinstance(stem[-1], nn.MaxPool2d)
    deep = [m for m in resnet("C").stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in deep] == [(3, 32, 2), (32, 32, 1), (32, 64, 1)]
    # 3*32*9 + 32*32*9 + 32*64*9 weights and 2*(32+32+64) BN values replace 3*64*49 + 2*64.
    assert count_trainable_parameters(resnet("C")) == RESNET50_37 - 9_408 - 128 + 28_512 + 256


def test_tweak_d_average_pools_before_the_shortcut_conv():
    for variant in "ABCD":
        for block in downsampling_blocks(resnet(variant)):
            layers = list(block.shortcut)
            if variant == "D":
                assert isinstance(layers[0], nn.AvgPool2d) and layers[0].kernel_size == 2
                assert layers[1].kernel_size == (1, 1) and layers[1].stride == (1, 1)
            else:
                assert isinstance(layers[0], nn.Conv2d) and layers[0].stride == (2, 2)
    assert count_trainable_parameters(resnet("D")) == count_trainable_parameters(resnet("C"))


def test_unknown_variant_is_a_config_error():
    with pytest.raises(ConfigError, match="variant 'E'"):
        resnet("E")


def test_initialisation_and_zero_gamma():
    plain, zero = resnet("D"), resnet("D", zero_gamma=True)
    bottlenecks = [m for m in zero.modules() if isinstance(m, Bottleneck)]
    assert len(bottlenecks) == 16
    assert all(torch.all(b.bn3.weight == 0) for b in bottlenecks)
    assert all(torch.all(b.bn1.weight == 1) and torch.all(b.bn2.weight == 1) for b in bottlenecks)
    assert all(torch.all(m.weight == 1) for m in plain.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(torch.all(m.bias == 0) for m in plain.modules() if isinstance(m, (nn.BatchNorm2d, nn.Linear)))
    fc = plain.fc.weight  # Xavier-uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))
    bound = (6 / (2048 + 37)) ** 0.5
    assert fc.abs().max() <= bound and fc.abs().max() > 0.9 * bound
    # A zero-gamma network starts as its shortcuts: each bottleneck outputs relu(shortcut(x)).
    block = bottlenecks[1].eval()
    x = torch.randn(1, block.conv1.in_channels, 8, 8)
    assert torch.equal(block(x), torch.relu(x))


@pytest.mark.parametrize("model", ["ResNet50", "VGG16"])
def test_weight_decay_params_split(model):
    net = build_model(model, EasyDict(variant="D") if model == "ResNet50" else EasyDict(), 37)
    wo_decay, w_decay = net.weight_decay_params()
    decayed = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert {id(p) for p in w_decay} == {id(p) for p in decayed}
    assert all(p.dim() == 1 for p in wo_decay)  # biases, BatchNorm gamma and beta
    assert len(wo_decay) + len(w_decay) == len(list(net.parameters()))
    assert sum(p.numel() for p in wo_decay + w_decay) == count_trainable_parameters(net)


def one_batch_loader(size, classes=4, per_class=2):
    """8 random images [3, size, size] with 4 labels, as one batch of {"image", "label"}."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(classes * per_class, 3, size, size, generator=generator)
    labels = torch.arange(classes).repeat(per_class)
    dataset = [{"image": image, "label": int(label)} for image, label in TensorDataset(images, labels)]
    return DataLoader(dataset, batch_size=len(dataset))


# 32 px leaves ResNet-50's last stage at 1x1, where eval-mode BatchNorm statistics of 8 images
# lag Adam's moving weights; at 64 px its eval-mode accuracy follows the training batch.
@pytest.mark.parametrize("config, size", [("vgg16", 32), ("resnet50", 64), ("resnet50_tricks", 32)])
def test_overfit_one_batch_at_small_input_on_the_cpu(config, size, tmp_path):
    cfg = load_config(config, ["device='cpu'", "logger.backend='none'", f"exp_dir='{tmp_path}'",
                               "train.warmup_epochs=0.0", "train.lr_scaling=None", "train.lr=0.01"]
                      if config == "resnet50_tricks" else ["device='cpu'", "logger.backend='none'"])
    loader = one_batch_loader(size)
    trainer = Trainer(cfg, loader, loader, [f"c{i}" for i in range(4)])
    result = trainer.overfitting_on_batch(150)
    assert result["accuracy"] == 1.0, result
