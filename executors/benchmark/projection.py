"""How long planned runs will take on this machine, from a short measurement of each run's own
training step (its config, data, loader path and precision, under torchrun across every
process) and of its evaluation, as the benchmark measures them (executors/benchmark/workloads.py).

An epoch is projected as (training steps per epoch) x (seconds per measured step) + (seconds
of one evaluation pass); a run as that times its epochs still to train. With two GPUs under
torchrun a step is the global batch on both, so the projection counts both.
"""
import gc
import time
from typing import NamedTuple

import torch

from executors.benchmark.workloads import quiet, split_size, timed_evaluation
from executors.distributed import session
from executors.launch import prepare_trainer
from executors.run_folders.progress import format_duration
from executors.run_folders.sweep import epochs_left
from utils.config import make_paths_absolute

MEASURED_STEPS = 5  # timed training steps, after WARM_UP_STEPS untimed ones
WARM_UP_STEPS = 2
SESSION_HOURS = 12  # Kaggle's session limit
WEEKLY_GPU_HOURS = 30  # about: Kaggle's weekly GPU quota


class Projection(NamedTuple):
    """One planned run."""
    name: str
    epochs_left: int
    step_seconds: float  # one training step of the global batch
    steps_per_epoch: int
    eval_seconds: float  # one evaluation pass

    @property
    def epoch_seconds(self) -> float:
        return self.steps_per_epoch * self.step_seconds + self.eval_seconds

    @property
    def seconds(self) -> float:
        return self.epochs_left * self.epoch_seconds


def timed_steps(trainer, steps=MEASURED_STEPS, warm_up=WARM_UP_STEPS) -> float:
    """Seconds per training step of `trainer` (its loader, model and optimizer as training uses
    them), over `steps` steps after `warm_up` untimed ones (cuDNN autotuning, worker start-up);
    an epoch shorter than both is timed whole. Each step's values are read back, so a step has
    ended on the device when the next starts. The weights change: measure a throw-away trainer."""
    trainer.model.train()
    start, timed = time.perf_counter(), 0
    for number, batch in enumerate(trainer.train_loader):
        if number == warm_up:
            start, timed = time.perf_counter(), 0
        trainer.make_step(batch)
        timed += 1
        if number + 1 == warm_up + steps:
            break
    return (time.perf_counter() - start) / max(timed, 1)


def project(cfg, epochs_left: int) -> Projection:
    """Measure `cfg`'s training step and evaluation on this machine (every process under
    torchrun takes part; numbers are rank 0's) and project its `epochs_left` epochs."""
    with session(cfg) as processes:
        trainer = quiet(prepare_trainer, cfg, processes)
        try:
            step_seconds = timed_steps(trainer)
            eval_seconds = split_size(trainer.test_loader) / timed_evaluation(trainer)
            return Projection(cfg.exp_name, epochs_left, step_seconds, len(trainer.train_loader), eval_seconds)
        finally:
            del trainer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def project_plan(configs, processes) -> str:
    """What training will have (gpu_memory, asked by the main process alone) and the report of
    every config of a sweep's plan with epochs left to train, each measured in turn by every
    one of `processes` (executors.distributed.Processes)."""
    memory = gpu_memory() if processes.is_main else ""  # before this process holds any
    projections = []
    for cfg in configs:
        left = epochs_left(cfg)
        if left:
            make_paths_absolute(cfg)
            projections.append(project(cfg, left))
    return f"GPU memory for training: {memory}\n{report(projections, processes.world_size)}"


def gpu_memory(indices=None) -> str:
    """'cuda:0 Tesla T4: 14.6 GiB free of 14.7 GiB; ...' for the GPUs `indices` (None: every
    visible one), what training has; or a note that there is none."""
    if not torch.cuda.is_available():
        return "no GPU: training runs on the CPU"
    lines = []
    for index in range(torch.cuda.device_count()) if indices is None else indices:
        free, total = torch.cuda.mem_get_info(index)
        lines.append(f"cuda:{index} {torch.cuda.get_device_name(index)}: {free / 2**30:.1f} GiB free of "
                     f"{total / 2**30:.1f} GiB")
    return "; ".join(lines)


def report(projections, processes: int = 1) -> str:
    """A table of the projected runs, their total, and how it compares with Kaggle's session
    limit and weekly GPU quota."""
    rows = [f"{'run':<28} {'epochs left':>11} {'s/step':>8} {'steps/epoch':>11} {'eval s':>7} {'per epoch':>10} "
            f"{'projected':>10}"]
    for p in projections:
        rows.append(f"{p.name:<28} {p.epochs_left:>11} {p.step_seconds:>8.3f} {p.steps_per_epoch:>11} "
                    f"{p.eval_seconds:>7.1f} {format_duration(p.epoch_seconds):>10} {format_duration(p.seconds):>10}")
    total = sum(p.seconds for p in projections)
    hours = total / 3600
    sessions = int(-(-hours // SESSION_HOURS)) if hours else 0
    rows.append(f"Projected total: {format_duration(total)} on {processes} process{'es' * (processes != 1)} "
                f"({hours:.1f} h: {sessions} Kaggle session{'s' * (sessions != 1)} of at most {SESSION_HOURS} h; "
                f"{hours / WEEKLY_GPU_HOURS:.0%} of a weekly GPU quota of about {WEEKLY_GPU_HOURS} h). Each session "
                f"resumes where the last one stopped.")
    return "\n".join(rows)
