"""Which parameters get weight decay: only the weights of convolution and linear layers."""
from torch import nn

DECAYED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def split_weight_decay_params(module: nn.Module):
    """(wo_decay, w_decay): lists of trainable parameters, each appearing exactly once.

    w_decay holds conv and linear weights; wo_decay holds everything else (biases,
    BatchNorm gamma and beta), the "no bias decay" of He et al., Bag of Tricks, section 3.3.
    """
    decayed = {id(m.weight) for m in module.modules() if isinstance(m, DECAYED_LAYERS)}
    wo_decay, w_decay = [], []
    for parameter in module.parameters():
        if parameter.requires_grad:
            (w_decay if id(parameter) in decayed else wo_decay).append(parameter)
    return wo_decay, w_decay
