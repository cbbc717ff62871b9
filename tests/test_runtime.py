"""Device and mixed-precision choice, including the CUDA branches (simulated: no GPU here)."""
import pytest
import torch

from utils.errors import ConfigError
from utils.runtime import resolve_device, resolve_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("amp, device, expected", [
    ("auto", CPU, (None, False)),
    ("off", CUDA, (None, False)),
    ("bf16", CPU, (torch.bfloat16, False)),
    ("bf16", CUDA, (torch.bfloat16, False)),
    ("fp16", CPU, (torch.float16, False)),  # no GradScaler off CUDA
    ("fp16", CUDA, (torch.float16, True)),
])
def test_explicit_precision(amp, device, expected):
    precision = resolve_precision(amp, device)
    assert (precision.dtype, precision.use_scaler) == expected


@pytest.mark.parametrize("bf16_supported, expected", [(True, ("bf16", False)), (False, ("fp16", True))])
def test_auto_precision_on_cuda_follows_bf16_support(monkeypatch, bf16_supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    precision = resolve_precision("auto", CUDA)
    assert (precision.name, precision.use_scaler) == expected


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="train.amp='fp8'"):
        resolve_precision("fp8", CPU)


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto").type == expected


def test_bad_or_unavailable_devices_are_config_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == CPU
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="device='gpu' is not a device"):
        resolve_device("gpu")
