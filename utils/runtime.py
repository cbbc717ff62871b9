"""Device choice, mixed-precision choice, fast GPU settings and seeding."""
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch

from utils.errors import ConfigError

AMP_MODES = ("auto", "bf16", "fp16", "off")  # train.amp


def available_devices() -> list:
    """The devices this machine can train on: 'cpu', then 'cuda:0' ... 'cuda:N-1', then 'mps'."""
    cuda = [f"cuda:{index}" for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return ["cpu", *cuda, *(["mps"] if torch.backends.mps.is_available() else [])]


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda if available, else mps, else cpu; `cpu`, `cuda`, `cuda:N`, `mps` as given.

    Raises ConfigError naming `device` and what this machine has for a name that is not a
    device or a device it lacks (CUDA without a usable GPU, cuda:N beyond its GPUs, mps off a Mac):
    utils.validation.check_values calls it with the other values, before any data is read."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device='{name}' is not a device: use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        problem = "CUDA is not available (no GPU that this PyTorch can use)"
    elif device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        problem = f"there is no {name}"
    elif device.type == "mps" and not torch.backends.mps.is_available():
        problem = "MPS is not available (Apple silicon only)"
    else:
        return device
    raise ConfigError(f"device='{name}' was asked for, but on this machine {problem}; it has "
                      f"{', '.join(available_devices())}. Use device='auto' (the best of these) or one of them.")


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: autocast dtype (None = full fp32) and whether a GradScaler is needed."""

    dtype: torch.dtype = None
    use_scaler: bool = False

    @property
    def name(self):
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere and newer; below it bf16 is emulated and slower than fp16


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """The autocast precision for `train.amp` on `device`.

    `auto`: bf16 on CUDA GPUs with native bf16 (compute capability >= 8.0: A100, H100, RTX 30xx+),
    fp16 with a GradScaler on older ones (T4 7.5, V100 7.0, P100 6.0), fp32 off CUDA.
    `bf16` forced on a GPU below 8.0 still runs (emulated), with a note that fp16 is faster there.
    The capability is read with torch.cuda.get_device_capability, not torch.cuda.is_bf16_supported,
    which also answers yes where bf16 is only emulated.
    """
    if amp not in AMP_MODES:
        raise ConfigError(f"train.amp='{amp}' is not one of {', '.join(AMP_MODES)}.")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return Precision()
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        native_bf16 = capability >= NATIVE_BF16_CAPABILITY
        if amp == "auto":
            amp = "bf16" if native_bf16 else "fp16"
        elif amp == "bf16" and not native_bf16:
            print(f"note: train.amp='bf16' on a GPU of compute capability {capability[0]}.{capability[1]}: "
                  f"bf16 is emulated there and train.amp='fp16' is faster", file=sys.stderr)
    if amp == "bf16":
        return Precision(torch.bfloat16, False)
    return Precision(torch.float16, device.type == "cuda")


def uses_channels_last(model_name: str, device: torch.device) -> bool:
    """Whether the model and its 4-D inputs use channels_last (NHWC) memory: CNNs on CUDA, where
    cuDNN's tensor-core convolutions run fastest in it. The MLP (it flattens its input) never does."""
    return device.type == "cuda" and model_name != "MLP"


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (a no-op off CUDA, where work runs as it is launched)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forked_rng(device: torch.device):
    """A context in which torch's CPU generator and, on CUDA, `device`'s are put back as they were."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)


def configure_backends(device: torch.device) -> None:
    """On CUDA, let cuDNN time the convolution algorithms once per input shape and keep the fastest."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """All RNG states as tensors and plain values (loadable with torch.load(weights_only=True))."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what rng_state() returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
