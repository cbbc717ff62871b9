"""Device choice, mixed-precision choice and seeding."""
import random
from dataclasses import dataclass

import numpy as np
import torch

from utils.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda if available, else mps, else cpu; `cpu`, `cuda`, `cuda:N`, `mps` as given."""
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
        raise ConfigError(f"device='{name}' was asked for but CUDA is not available: use device=auto or cpu.")
    return device


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: autocast dtype (None = full fp32) and whether a GradScaler is needed."""

    dtype: torch.dtype = None
    use_scaler: bool = False

    @property
    def name(self):
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """`auto`: bf16 on GPUs that support it, fp16 + scaler on older CUDA GPUs, fp32 elsewhere."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return Precision()
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "bf16":
        return Precision(torch.bfloat16, False)
    if amp == "fp16":
        return Precision(torch.float16, device.type == "cuda")
    raise ConfigError(f"train.amp='{amp}' is not one of auto, bf16, fp16, off.")


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
