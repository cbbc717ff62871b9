"""Images per second of the config's training step on a batch already on the device: what the loader
probe (datasets/loading/loader_probe.py) weighs the input paths against, measured on a throwaway model.

A step here is what the Trainer's eager step does: forward under the run's autocast precision
(channels_last for a CNN on CUDA), cross-entropy, backward through a GradScaler where fp16 needs
one, optimizer step. The Trainer seeds everything when it is made (utils.runtime.seed_everything),
and the measuring forks torch's random streams as well, so building this extra model first leaves
the run's weights and draws as they were.
"""
import time

import torch
from torch.nn import functional as F

from datasets.loading.loader_probe import forked_rng, synchronize
from executors.optim import build_optimizer
from models.registry import build_model
from utils.runtime import configure_backends, resolve_precision, uses_channels_last

WARMUP_STEPS = 2  # cuDNN's algorithm search and the allocator's first blocks
TIMED_STEPS = 3


def training_step_rate(cfg, num_classes: int, device: torch.device):
    """callable(images float [B, C, H, W] on `device`, labels int64 [B]) -> images/s of full training
    steps of cfg's model and optimizer on that batch (TIMED_STEPS after WARMUP_STEPS, synchronised).
    The callable builds a new model each call and keeps nothing afterwards."""
    precision = resolve_precision(cfg.train.amp, device)
    channels_last = uses_channels_last(cfg.model_name, device)

    def measure(images, labels) -> float:
        configure_backends(device)  # as the Trainer will: cuDNN picks its fastest algorithms
        with forked_rng(device):
            model = build_model(cfg.model_name, cfg.model, num_classes).to(device).train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
                images = images.contiguous(memory_format=torch.channels_last)
            optimizer = build_optimizer(model, cfg.train)
            scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)

            def step():
                with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
                    loss = F.cross_entropy(model(images).float(), labels)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()

            for _ in range(WARMUP_STEPS):
                step()
            synchronize(device)
            start = time.perf_counter()
            for _ in range(TIMED_STEPS):
                step()
            synchronize(device)
            return TIMED_STEPS * len(labels) / (time.perf_counter() - start)
    return measure
