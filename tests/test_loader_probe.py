"""data.loader='auto' on a GPU (datasets/loading/loader_probe.py): the decision on supplied rates,
choose_loader taking the probe's answer only where it applies, a failed probe, the probe on the CPU
leaving the run's random streams and processes as they were, the step measure
(executors/step/rate.py) that prepare_trainer hands the loaders, and on a GPU the real probe end to end."""
import itertools
import math
import multiprocessing

import pytest
import torch

import datasets.loading.cached_items
import datasets.loading.loader_probe
import datasets.loading.loaders
import executors.launch
from datasets.loading.cached_items import CachedImages
from datasets.loading.item_seeds import dataset_of
from datasets.loading.loader_probe import ProbeRates, measure_paths, prefer_loader
from datasets.loading.loaders import build_loaders, choose_loader, make_loader, split_datasets
from executors.step.rate import TIMED_STEPS, training_step_rate, warmup_steps
from tests.test_device_loader import kmnist_cfg, kmnist_root, loader_notes, pets_cfg  # noqa: F401

GPU = torch.device("cuda")  # only named on the CPU: choose_loader asks it nothing but its memory, patched here
T4_LIKE = ProbeRates(device_training=620, cached_input=1500, step=900)  # the batched input slows the steps


def test_a_slow_gpu_takes_the_cached_workers():
    # cached workers: min(1500, 900) = 900 img/s, more than 5% above the device path's 620
    assert prefer_loader(T4_LIKE) == ("cached", "probe: device path 620 img/s of training, cached workers ~900 img/s")


def test_a_fast_gpu_keeps_the_device_path():
    # the H200's figures (docs/data-loading.md): cached workers min(1200, 2700) = 1200 img/s against 3000
    rates = ProbeRates(device_training=3000, cached_input=1200, step=2700)
    assert prefer_loader(rates) == ("device",
                                    "probe: device path 3,000 img/s of training, cached workers ~1,200 img/s")


@pytest.mark.parametrize("cached_input, path", [(1000, "device"), (1049, "device"), (1051, "cached")])
def test_the_cached_path_must_win_by_more_than_five_percent(cached_input, path):
    rates = ProbeRates(device_training=1000, cached_input=cached_input, step=2000)
    taken, reason = prefer_loader(rates)
    assert taken == path and reason.endswith(", within 5%") == (1000 < cached_input < 1050)


def test_the_step_caps_what_the_cached_workers_can_give():
    # cached workers: min(5000, 100) = 100 img/s, within 5% of the device path's 97.6
    assert prefer_loader(ProbeRates(device_training=97.6, cached_input=5000, step=100)) == (
        "device", "probe: device path 97.6 img/s of training, cached workers ~100 img/s, within 5%")


def test_without_worker_processes_the_cached_path_builds_batches_between_steps():
    # cached: 1 / (1/1500 + 1/900) = 562.5 img/s, below the device path's 620
    serial = ProbeRates(device_training=620, cached_input=1500, step=900, cached_in_parallel=False)
    assert prefer_loader(serial) == ("device", "probe: device path 620 img/s of training, cached workers ~562 img/s")


@pytest.mark.parametrize("bad", [0, -5.0, math.inf, math.nan])
def test_rates_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="step must be a positive finite number of images/s"):
        ProbeRates(device_training=1.0, cached_input=1.0, step=bad)


@pytest.fixture
def on_a_gpu(pets_cfg, monkeypatch):  # noqa: F811
    """(cfg, splits) of synthetic pets on auto, with memory to spare on the GPU and in RAM; the
    probe's measuring is replaced by a recorder that answers T4_LIKE (`calls`: its arguments)."""
    pets_cfg.data.loader = "auto"
    monkeypatch.setattr(datasets.loading.loaders, "device_memory_bytes", lambda device: 2 ** 40)
    calls = []

    def measured(cfg, dataset, device, step_rate, make, workers):
        calls.append((dataset.split, device, step_rate, make, workers))
        return T4_LIKE
    monkeypatch.setattr(datasets.loading.loader_probe, "measure_paths", measured)
    return pets_cfg, split_datasets(pets_cfg), calls


def unused_step_rate(num_classes, device):
    raise AssertionError("the step is measured by measure_paths, replaced here")


def test_auto_on_a_gpu_takes_the_probes_answer_for_image_files(on_a_gpu):
    cfg, splits, calls = on_a_gpu
    assert choose_loader(cfg, splits, GPU, unused_step_rate) == ("cached", prefer_loader(T4_LIKE)[1])
    assert calls == [("train", GPU, unused_step_rate, make_loader, 0)]


def test_build_loaders_hands_its_step_rate_to_the_probe_and_says_what_it_took(on_a_gpu, monkeypatch, capsys):
    cfg, _, calls = on_a_gpu
    monkeypatch.setattr(datasets.loading.loaders, "resolve_device", lambda name: GPU)
    train = datasets.loading.loaders.build_loaders(cfg, step_rate=unused_step_rate).train
    assert isinstance(dataset_of(train), CachedImages) and len(calls) == 1
    assert loader_notes(capsys) == [f"Data loader: cached, 0 worker processes over the decoded cache "
                                    f"({prefer_loader(T4_LIKE)[1]})"]


def test_a_failed_probe_keeps_the_device_path_and_says_why(on_a_gpu, monkeypatch):
    cfg, splits, _ = on_a_gpu

    def out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
    monkeypatch.setattr(datasets.loading.loader_probe, "measure_paths", out_of_memory)
    path, reason = choose_loader(cfg, splits, GPU, unused_step_rate)
    assert path == "device" and reason == ("the loader probe failed (OutOfMemoryError: CUDA out of memory. Tried to "
                                           "allocate 2.00 GiB); the device path, as without it")


def test_the_probe_runs_only_where_both_paths_could_run_in_one_process(on_a_gpu, kmnist_root,  # noqa: F811
                                                                       tmp_path, monkeypatch):
    cfg, splits, calls = on_a_gpu
    fits = "both splits fit in cuda memory as uint8"
    assert choose_loader(cfg, splits, GPU) == ("device", fits)  # no step_rate
    assert choose_loader(cfg, splits, GPU, unused_step_rate, world_size=2) == ("device", fits)
    assert choose_loader(cfg, splits, torch.device("cpu"), unused_step_rate)[0] == "cached"
    for forced in ("device", "cached"):
        cfg.data.loader = forced
        assert choose_loader(cfg, splits, GPU, unused_step_rate) == (forced, f"data.loader='{forced}'")
    cfg.data.loader = "auto"
    monkeypatch.setattr(datasets.loading.cached_items, "cv2", None)  # the cached path cannot run: nothing to weigh
    assert choose_loader(cfg, splits, GPU, unused_step_rate) == ("device", fits)
    kmnist = kmnist_cfg(kmnist_root, tmp_path, "mlp_augment", "data.mean=[0.2]", "data.std=[0.3]")  # in memory
    assert choose_loader(kmnist, split_datasets(kmnist), GPU, unused_step_rate) == ("device", fits)
    assert calls == []


def fake_step_rate(num_classes, device):
    """A step measure that draws from torch's generator, as building a model does, and takes 9
    batches, more than the device loader's pass holds."""
    def measure(batches):
        torch.rand(3)
        for batch in itertools.islice(batches, 9):
            assert batch["image"].shape == (4, 3, 32, 32) and batch["label"].shape == (4,) and num_classes == 37
        return 123.0
    return measure


def test_the_probe_leaves_the_random_streams_and_no_worker_processes_behind(pets_cfg):  # noqa: F811
    pets_cfg.data.num_workers = 2
    train = split_datasets(pets_cfg)["train"]
    state = torch.get_rng_state()
    rates = measure_paths(pets_cfg, train, torch.device("cpu"), fake_step_rate, make_loader, workers=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert rates.step == rates.device_training == 123.0 and rates.cached_input > 0 and rates.cached_in_parallel
    assert multiprocessing.active_children() == []


def test_the_step_measure_trains_a_throwaway_model_and_leaves_the_random_streams(kmnist_root, tmp_path):  # noqa: F811
    cfg = kmnist_cfg(kmnist_root, tmp_path, "mlp")
    measure = training_step_rate(cfg, 10, torch.device("cpu"))
    batch = {"image": torch.randn(8, 1, 28, 28), "label": torch.randint(0, 10, (8,))}
    state = torch.get_rng_state()
    taken = []
    rate = measure(taken.append(batch) or batch for _ in itertools.count())
    assert math.isfinite(rate) and rate > 0 and torch.equal(torch.get_rng_state(), state)
    assert len(taken) == warmup_steps(cfg, torch.device("cpu")) + TIMED_STEPS == 2 + 4  # no graph on the CPU


def test_a_single_process_run_hands_the_loaders_its_step_measure(kmnist_root, tmp_path, monkeypatch):  # noqa: F811
    handed = []

    def recording(*args, step_rate=None, **kwargs):
        handed.append(step_rate)
        return build_loaders(*args, **kwargs)
    monkeypatch.setattr(executors.launch, "build_loaders", recording)
    executors.launch.prepare_trainer(kmnist_cfg(kmnist_root, tmp_path, "mlp"))
    measure = handed[0](10, torch.device("cpu"))
    assert measure(itertools.repeat({"image": torch.randn(4, 1, 28, 28), "label": torch.randint(0, 10, (4,))})) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_probe_measures_both_paths(pets_cfg, capsys):  # noqa: F811
    pets_cfg.device, pets_cfg.data.loader, pets_cfg.data.num_workers = "cuda", "auto", 2
    pets_cfg.model_name = "ResNet50"
    train = split_datasets(pets_cfg)["train"]
    cuda_state, cpu_state = torch.cuda.get_rng_state(), torch.get_rng_state()
    rates = measure_paths(pets_cfg, train, GPU, lambda classes, device: training_step_rate(pets_cfg, classes, device),
                          make_loader, workers=2)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state) and torch.equal(torch.get_rng_state(), cpu_state)
    assert all(math.isfinite(rate) and rate > 0 for rate in (rates.device_training, rates.cached_input, rates.step))
    path, reason = prefer_loader(rates)
    print(f"measured {rates}: {path} ({reason})")  # shown with pytest -s
    loaders = datasets.loading.loaders.build_loaders(pets_cfg, step_rate=lambda classes, device: training_step_rate(
        pets_cfg, classes, device))
    note = loader_notes(capsys)[-1]
    assert note.startswith(("Data loader: device", "Data loader: cached")) and "probe: device path " in note
    assert isinstance(dataset_of(loaders.train), CachedImages) == note.startswith("Data loader: cached")
