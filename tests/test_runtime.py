"""Device, precision and fast-GPU choices, including the CUDA branches (simulated: no GPU here)."""
import pytest
import torch

from utils.errors import ConfigError
from utils.runtime import configure_backends, resolve_device, resolve_precision, uses_channels_last

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def simulate_gpu(monkeypatch, capability):
    """Make CUDA look available with a GPU of `capability` (major, minor); bf16 support is
    made to answer yes everywhere, as torch.cuda.is_bf16_supported does for emulated bf16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)


@pytest.mark.parametrize("amp, device, expected", [
    ("auto", CPU, (None, False)),
    ("off", CUDA, (None, False)),
    ("bf16", CPU, (torch.bfloat16, False)),
    ("bf16", CUDA, (torch.bfloat16, False)),
    ("fp16", CPU, (torch.float16, False)),  # no GradScaler off CUDA
    ("fp16", CUDA, (torch.float16, True)),
])
def test_explicit_precision(monkeypatch, amp, device, expected):
    simulate_gpu(monkeypatch, (9, 0))
    precision = resolve_precision(amp, device)
    assert (precision.dtype, precision.use_scaler) == expected


@pytest.mark.parametrize("capability, expected", [
    ((6, 0), ("fp16", True)),  # P100
    ((7, 0), ("fp16", True)),  # V100
    ((7, 5), ("fp16", True)),  # T4
    ((8, 0), ("bf16", False)),  # A100
    ((9, 0), ("bf16", False)),  # H100
])
def test_auto_precision_on_cuda_needs_native_bf16(monkeypatch, capability, expected):
    simulate_gpu(monkeypatch, capability)
    precision = resolve_precision("auto", CUDA)
    assert (precision.name, precision.use_scaler) == expected


@pytest.mark.parametrize("capability, note", [((7, 5), True), ((8, 0), False)])
def test_forced_bf16_below_8_0_runs_with_a_note(monkeypatch, capsys, capability, note):
    simulate_gpu(monkeypatch, capability)
    precision = resolve_precision("bf16", CUDA)
    assert (precision.name, precision.use_scaler) == ("bf16", False)
    err = capsys.readouterr().err
    if note:
        assert err.count("\n") == 1 and "emulated" in err and "7.5" in err and "fp16" in err
    else:
        assert err == ""


def test_precision_off_cuda_never_asks_for_a_gpu(monkeypatch):
    def no_gpu(*args, **kwargs):
        raise AssertionError("the CPU path must not query a GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", no_gpu)
    for amp in ("auto", "off", "bf16", "fp16"):
        resolve_precision(amp, CPU)


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="train.amp='fp8'"):
        resolve_precision("fp8", CPU)
    with pytest.raises(ConfigError, match="train.amp='fp8'"):
        resolve_precision("fp8", CUDA)


def test_channels_last_only_for_cnns_on_cuda():
    assert uses_channels_last("ResNet50", CUDA) and uses_channels_last("VGG16", CUDA)
    assert not uses_channels_last("MLP", CUDA)
    assert not uses_channels_last("ResNet50", CPU)


def test_cudnn_benchmark_only_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure_backends(CPU)
    assert torch.backends.cudnn.benchmark is False
    configure_backends(torch.device("cuda:0"))
    assert torch.backends.cudnn.benchmark is True


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
