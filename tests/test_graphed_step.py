"""CUDA-graph training steps (executors/step/graphed.py) and batches built ahead on a side stream
(datasets/loading/side_stream.py): when each is used, what happens when capture fails (with the
CUDA calls replaced on the CPU), and on a GPU that they train and batch exactly as eager steps."""
import contextlib

import pytest
import torch

from datasets.loading.loaders import build_loaders
from datasets.loading.side_stream import built_ahead
from executors.benchmark.busy import synthetic_cfg
from executors.step.graphed import WARMUP_STEPS, GraphedStep, graphed_step, refusal
from executors.trainer import Trainer

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def test_refusal_says_why_a_step_cannot_be_captured():
    assert refusal(CUDA, use_scaler=False, compiled=False, parallel=False) is None
    assert refusal(CPU, False, False, False) == "CUDA graphs need a CUDA device"
    assert "GradScaler" in refusal(CUDA, True, False, False)
    assert "train.compile" in refusal(CUDA, False, True, False)
    assert "DistributedDataParallel" in refusal(CUDA, False, False, True)


def test_graphed_step_is_off_quietly_on_the_cpu_and_says_why_on_a_gpu(capsys):
    assert graphed_step(True, CPU, None, None, refusal(CPU, False, False, False)) is None
    assert graphed_step(False, CUDA, None, None, None) is None
    assert capsys.readouterr().out == ""
    assert graphed_step(True, CUDA, None, None, refusal(CUDA, True, False, False)) is None
    assert capsys.readouterr().out.startswith("note: train.cuda_graph: eager steps, fp16's GradScaler")
    assert isinstance(graphed_step(True, CUDA, None, print, None), GraphedStep)


class FakeStream:
    """Stands in for torch.cuda.Stream on the CPU, recording what waited for what."""

    log = []

    def __init__(self, name="side"):
        self.name = name

    def wait_stream(self, other):
        FakeStream.log.append(f"{self.name} waits for {other.name}")


@pytest.fixture
def fake_streams(monkeypatch):
    FakeStream.log = []
    current = FakeStream("current")
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: FakeStream("side"))

    @contextlib.contextmanager
    def on(stream):
        FakeStream.log.append(f"on {stream.name}")
        yield
    monkeypatch.setattr(torch.cuda, "stream", on)
    return current


def test_a_failed_capture_leaves_one_note_and_eager_steps(fake_streams, monkeypatch, capsys):
    @contextlib.contextmanager
    def failing_capture(graph):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")
        yield
    monkeypatch.setattr(torch.cuda, "graph", failing_capture)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", object)
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([{"params": [parameter]}, {"params": [], "lr": 0.5}], lr=0.1)
    seen = []

    def step(images, targets):
        seen.append([type(group["lr"]) for group in optimizer.param_groups])
        return images.sum(), images, None
    graphed = GraphedStep(step, optimizer)
    for _ in range(WARMUP_STEPS + 2):
        loss, logits, skipped = graphed(torch.ones(4, 3), torch.zeros(4, dtype=torch.long))
        assert loss.item() == 12.0 and skipped is None
    assert len(seen) == WARMUP_STEPS + 2 and all(types == [float, float] for types in seen)
    assert FakeStream.log[:3] == ["side waits for current", "on side", "current waits for side"]
    assert FakeStream.log.count("on side") == WARMUP_STEPS  # warm-up steps only on the side stream
    assert [group["lr"] for group in optimizer.param_groups] == [0.1, 0.5]  # floats again after the capture
    assert graphed.graph is None and graphed.failed
    err = capsys.readouterr().err
    assert err == ("note: CUDA graph capture failed (RuntimeError: operation not permitted when stream is "
                   "capturing); training continues with eager steps\n")


class RecordedTensor:
    def __init__(self, name):
        self.name, self.used_on = name, []

    def record_stream(self, stream):
        self.used_on.append(stream.name)


def test_built_ahead_hands_each_batch_over_safely_and_builds_the_next_first(fake_streams):
    made = []

    def batches():
        for index in range(3):
            made.append(index)
            FakeStream.log.append(f"built {index}")
            yield {"image": RecordedTensor(f"image{index}"), "label": RecordedTensor(f"label{index}")}
    received = []
    for batch in built_ahead(batches(), CUDA):
        received.append(batch)
        assert made == list(range(min(len(received) + 1, 3)))  # the next batch is already built
    assert [b["image"].name for b in received] == ["image0", "image1", "image2"]
    assert all(t.used_on == ["current"] for b in received for t in b.values())
    log = FakeStream.log
    assert log[:3] == ["side waits for current", "on side", "built 0"]
    for index in range(3):  # each batch is built on the side stream; the current one waits before use
        assert log[log.index(f"built {index}") - 1] == "on side"
    assert log.count("current waits for side") == 3


def tiny_resnet_cfg(tmp_path, *overrides):
    return synthetic_cfg("resnet50_tricks", tmp_path, CUDA, size=64, per_class=2, overrides=[
        "train.batch_size=16", "train.epochs=2", "data.loader='device'", *overrides])


@needs_gpu
def test_graph_steps_train_exactly_as_eager_steps_on_a_gpu(tmp_path):
    torch.backends.cudnn.deterministic = True
    weights, losses = [], []
    for graph in (False, True):
        cfg = tiny_resnet_cfg(tmp_path, "train.amp='off'", f"train.cuda_graph={graph}")
        loaders = build_loaders(cfg)
        trainer = Trainer(cfg, *loaders)
        torch.backends.cudnn.benchmark = False
        losses.append([trainer.train_epoch(epoch)["loss"] for epoch in range(2)])
        assert (trainer.graphed is not None and trainer.graphed.graph is not None) == graph
        weights.append({name: tensor.cpu() for name, tensor in trainer.model.state_dict().items()})
    torch.backends.cudnn.deterministic = False
    assert losses[0] == losses[1]
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


@needs_gpu
def test_batches_built_ahead_equal_those_built_in_line_on_a_gpu(tmp_path):
    loaders = build_loaders(tiny_resnet_cfg(tmp_path))
    assert loaders.train.built_ahead  # the default
    ahead = [{k: v.clone() for k, v in batch.items()} for batch in loaders.train]
    loaders.train.built_ahead = False
    inline = list(loaders.train)
    assert len(ahead) == len(inline) == len(loaders.train) == 5
    for a, b in zip(ahead, inline):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
