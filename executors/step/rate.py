"""Images per second of the config's training step, fed by a stream of batches: what the loader
probe (datasets/loading/loader_probe.py) measures the input paths with, on a throwaway model.

A step here is the Trainer's step without its extras (EMA, mixup, per-step metrics): forward under
the run's autocast precision (channels_last for a CNN on CUDA), cross-entropy, backward through a
GradScaler where fp16 needs one, optimizer step; replayed from a CUDA graph where train.cuda_graph
would let the Trainer do so (step/graphed.py), so the probe weighs the paths against the step the
run will take. The Trainer seeds everything when it is made (utils.runtime.seed_everything), and
the measuring forks torch's random streams as well, so building this extra model first leaves
the run's weights and draws as they were.
"""
import time

import torch
from torch.nn import functional as F

from executors.optim import build_optimizer
from executors.step.graphed import WARMUP_STEPS as GRAPH_WARMUP_STEPS
from executors.step.graphed import GraphedStep, refusal
from executors.step.metrics import scaled_optimizer_step
from models.registry import build_model
from utils.runtime import configure_backends, forked_rng, resolve_precision, synchronize, uses_channels_last

WARMUP_STEPS = 2  # eager: cuDNN's algorithm search and the allocator's first blocks
TIMED_STEPS = 4


def training_step_rate(cfg, num_classes: int, device: torch.device):
    """callable(batches) -> images/s of training steps of cfg's model and optimizer, where `batches`
    is an iterator of {"image": float [B, C, H, W] on `device`, "label": int64 [B]} with at least
    warmup_steps(cfg, device) + TIMED_STEPS batches of one shape: the untimed warm-up ones first,
    then TIMED_STEPS timed ones, taking each batch from the iterator as training does (so a loader
    that builds its next batch while a step runs is timed as it trains). Synchronised; every call
    builds a new model and keeps nothing afterwards."""
    precision = resolve_precision(cfg.train.amp, device)
    channels_last = uses_channels_last(cfg.model_name, device)
    graphed = _graphed(cfg, device)

    def measure(batches) -> float:
        configure_backends(device)  # as the Trainer will: cuDNN picks its fastest algorithms
        with forked_rng(device):
            model = build_model(cfg.model_name, cfg.model, num_classes).to(device).train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = build_optimizer(model, cfg.train)
            scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)

            def step(images, labels):
                with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None,
                                    cache_enabled=False):
                    loss = F.cross_entropy(model(images).float(), labels)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                return loss.detach(), None, scaled_optimizer_step(scaler, optimizer)
            run = GraphedStep(step, optimizer) if graphed else step

            def next_step():
                batch = next(batches)
                images = batch["image"]
                run(images.contiguous(memory_format=torch.channels_last) if channels_last else images, batch["label"])
                return len(batch["label"])

            for _ in range(warmup_steps(cfg, device)):
                next_step()
            synchronize(device)
            start = time.perf_counter()
            images = sum(next_step() for _ in range(TIMED_STEPS))
            synchronize(device)
            return images / (time.perf_counter() - start)
    return measure


def warmup_steps(cfg, device: torch.device) -> int:
    """Untimed steps before training_step_rate's timed ones: with a CUDA graph its warm-up steps,
    the capture and one replay; else WARMUP_STEPS."""
    return GRAPH_WARMUP_STEPS + 2 if _graphed(cfg, device) else WARMUP_STEPS


def _graphed(cfg, device: torch.device) -> bool:
    """Whether the Trainer of a single-process, uncompiled run of `cfg` replays its steps from a CUDA graph."""
    use_scaler = resolve_precision(cfg.train.amp, device).use_scaler
    return bool(cfg.train.get("cuda_graph", False)) and refusal(device, use_scaler, False, False) is None
