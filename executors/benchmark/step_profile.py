"""Where a training step's time goes (scripts/profile_gpu.py): the phases of Trainer._train_step
timed on the host and on the device, for one config on synthetic data in the real formats.

Two passes over the same Trainer, after a warm-up epoch (cuDNN autotuning, CUDA graph capture):
* free running: steps as training runs them; the wall time per step, and per phase the host's
  time to get through it (Python, kernel launches; it includes waits when the GPU's launch queue
  is full). When the host's total is about the step's wall time, the GPU waits for the host.
* isolated: before each phase the GPU is held busy for longer than the host needs to launch the
  phase (torch.cuda._sleep), so the CUDA events around the phase time its kernels alone: the
  GPU's own time per phase, with no gap for launches. Built-ahead batches are built on the
  step's stream in this pass, so that the input's GPU time is counted.
On the CPU both are the host's times (work runs as it is launched), so the profile runs there
too (tests/test_step_profile.py).
"""
import statistics
import time

import torch

from executors.benchmark.workloads import timed_epoch
from utils.runtime import synchronize

EAGER_PHASES = ("input", "to_device", "forward", "backward", "optimizer", "after_step")
GRAPHED_PHASES = ("input", "to_device", "graphed_step", "after_step")


def phased_step(trainer, batches, mark) -> None:
    """One step of Trainer._train_step on the next of `batches`, calling mark(phase) as each
    phase ends (the phases of EAGER_PHASES, or GRAPHED_PHASES when the step replays a graph)."""
    batch = next(batches)
    mark("input")
    images, targets, labels = trainer._inputs(batch)
    mark("to_device")
    lr = trainer.optimizer.param_groups[0]["lr"]
    if trainer.graphed is not None:
        loss, logits, skipped = trainer._step(images, targets)
        mark("graphed_step")
    else:
        loss, logits = trainer._forward(images, targets)
        mark("forward")
        trainer._backward(loss)
        mark("backward")
        skipped = trainer._optimizer_step()
        loss, logits = loss.detach(), logits.detach()
        mark("optimizer")
    trainer._after_step(lr, loss, logits, labels, skipped)
    mark("after_step")


class PhaseClock:
    """mark(phase) records the host's seconds since the last mark and, on CUDA, a pair of
    events around the phase; with `hold_ms`, the GPU sleeps that long before each phase."""

    def __init__(self, device: torch.device, hold_ms: float = 0.0):
        self.cuda = device.type == "cuda"
        self.hold_cycles = int(hold_ms * sleep_cycles_per_ms()) if self.cuda and hold_ms else 0
        self.host, self.events = {}, {}
        self._restart()

    def _restart(self):
        if self.hold_cycles:
            torch.cuda._sleep(self.hold_cycles)
        self.start_event = self._event()
        self.start = time.perf_counter()

    def _event(self):
        if not self.cuda:
            return None
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def mark(self, phase: str) -> None:
        self.host.setdefault(phase, []).append(1000 * (time.perf_counter() - self.start))
        self.events.setdefault(phase, []).append((self.start_event, self._event()))
        self._restart()

    def device_ms(self) -> dict:
        """{phase: [ms of each step]} on the GPU (synchronises); the host's ms on the CPU."""
        if not self.cuda:
            return self.host
        torch.cuda.synchronize()
        return {phase: [begin.elapsed_time(end) for begin, end in pairs] for phase, pairs in self.events.items()}


_CYCLES_PER_MS = []


def sleep_cycles_per_ms() -> float:
    """GPU clock cycles that torch.cuda._sleep spins per millisecond, measured once."""
    if not _CYCLES_PER_MS:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1_000_000)  # clocks up
        begin.record()
        torch.cuda._sleep(10_000_000)
        end.record()
        torch.cuda.synchronize()
        _CYCLES_PER_MS.append(10_000_000 / begin.elapsed_time(end))
    return _CYCLES_PER_MS[0]


def _run_steps(trainer, clock, steps: int) -> None:
    """`steps` phased steps in model.train() mode, starting the loader again when an epoch ends."""
    trainer.model.train()
    batches = iter(trainer.train_loader)
    clock._restart()
    for _ in range(steps):
        try:
            phased_step(trainer, batches, clock.mark)
        except StopIteration:  # raised by next() before the step's first phase: start a new pass
            batches = iter(trainer.train_loader)
            clock._restart()
            phased_step(trainer, batches, clock.mark)
    trainer.step_metrics.read()


def _median(values) -> float:
    return statistics.median(values) if values else 0.0


def profile_steps(trainer, steps: int = 30) -> dict:
    """The step breakdown of `trainer` (see the module docstring), as a dict for the JSON:
    images_per_second and ms_per_step free running, host_ms and gpu_ms per phase (medians over
    the steps), their sums per step, and `reading`, the verdict in words."""
    cuda = trainer.device.type == "cuda"
    timed_epoch(trainer)  # warm-up: autotuning, capture, the device split's first pass
    free = PhaseClock(trainer.device)
    synchronize(trainer.device)
    start = time.perf_counter()
    _run_steps(trainer, free, steps)
    synchronize(trainer.device)
    wall_ms = 1000 * (time.perf_counter() - start) / steps
    host_ms = {phase: _median(values) for phase, values in free.host.items()}
    built_ahead = getattr(trainer.train_loader, "built_ahead", None)
    if built_ahead:
        trainer.train_loader.built_ahead = False
    hold_ms = 2 * max(host_ms.values()) + 2
    isolated = PhaseClock(trainer.device, hold_ms=hold_ms)
    _run_steps(trainer, isolated, steps)
    if built_ahead:
        trainer.train_loader.built_ahead = True
    gpu_ms = {phase: _median(values) for phase, values in isolated.device_ms().items()}
    batch = trainer.cfg.train.batch_size
    result = {"steps": steps, "batch_size": batch, "ms_per_step": wall_ms, "images_per_second": 1000 * batch / wall_ms,
              "host_ms": host_ms, "host_ms_per_step": sum(host_ms.values()),
              "gpu_ms": gpu_ms, "gpu_ms_per_step": sum(gpu_ms.values()),
              "cuda_graph": trainer.graphed is not None and trainer.graphed.graph is not None,
              "built_ahead": built_ahead, "isolation_hold_ms": hold_ms if cuda else None,
              # the GPU's phase times are its own only if the host launched each phase within the hold
              "isolation_held": not cuda or all(_median(v) < hold_ms for v in isolated.host.values())}
    result["gpu_busy_fraction"] = result["gpu_ms_per_step"] / wall_ms
    result["reading"] = reading(result, cuda)
    return result


def reading(profile: dict, cuda: bool = True) -> str:
    """What limits the step, in words: on a GPU the host when its time per step is at least 90%
    of the wall time while the GPU is busy for less, otherwise the GPU; with the largest phases."""
    wall, host, gpu = profile["ms_per_step"], profile["host_ms_per_step"], profile["gpu_ms_per_step"]
    top = sorted(profile["gpu_ms"].items(), key=lambda item: -item[1])[:3]
    phases = ", ".join(f"{phase} {ms:.1f} ms" for phase, ms in top)
    if not cuda:
        return (f"on the CPU every phase is the host's own work ({host:.1f} of {wall:.1f} ms per step); "
                f"largest: {phases}")
    if host >= 0.9 * wall and gpu < 0.9 * wall:
        verdict = f"host-bound: the host needs {host:.1f} of the {wall:.1f} ms per step, the GPU works {gpu:.1f}"
    else:
        verdict = f"device-bound: the GPU works {gpu:.1f} of the {wall:.1f} ms per step, the host needs {host:.1f}"
    return f"{verdict}; largest GPU phases: {phases}"


def format_profile(profile: dict) -> str:
    """The breakdown as a table: per phase the host's and the GPU's median ms, then the totals."""
    lines = [f"{'phase':<14} {'host ms':>8} {'GPU ms':>8}"]
    for phase, host in profile["host_ms"].items():
        lines.append(f"{phase:<14} {host:>8.2f} {profile['gpu_ms'].get(phase, 0.0):>8.2f}")
    lines.append(f"{'per step':<14} {profile['host_ms_per_step']:>8.2f} {profile['gpu_ms_per_step']:>8.2f}")
    lines.append(f"free running: {profile['ms_per_step']:.2f} ms per step, {profile['images_per_second']:,.0f} "
                 f"images/s, GPU busy {profile['gpu_busy_fraction']:.0%}")
    return "\n".join(lines + [profile["reading"]])
