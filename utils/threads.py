"""How many intra-op threads PyTorch uses on the CPU: from the config, kept from the run's
start on resume, else chosen by the size of one training step (never by timing it).

The thread count changes how PyTorch splits float sums, so it changes the last bits of every
number a run computes. A choice by timing would then make the numbers depend on how busy the
machine was at start-up (under load 2 threads won, on a quiet machine 1, and two runs with the
same seed differed by ~1e-7). So when `threads` is unset the choice depends only on the
workload and the machine's core count: a step of at most SMALL_STEP_FLOPS floating-point
operations (the KMNIST MLPs: 0.04-0.2 GFLOP at batch 64) runs on one thread, where extra
threads cost more in hand-offs than they give (on a shared 2-vCPU machine a second thread made
the KMNIST pipeline 10x slower); a larger step (a CNN: hundreds of GFLOP) uses one thread per
core. For a small step the candidate counts are also timed, as advice only: the printed line
says when another count was faster, and `threads=N` fixes it.
"""
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from utils.errors import ConfigError

SMALL_STEP_FLOPS = 1e9
REPEATS = 5


def candidate_counts(cores: int):
    """1, 2, 4, ... up to `cores`, and `cores` itself."""
    counts, count = [], 1
    while count < cores:
        counts.append(count)
        count *= 2
    return counts + [cores]


def seconds_per_call(run_once, threads: int, repeats: int = REPEATS) -> float:
    """Fastest of `repeats` timed calls of `run_once` with `threads` intra-op threads (after one warm-up)."""
    torch.set_num_threads(threads)
    run_once()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run_once()
        best = min(best, time.perf_counter() - start)
    return best


def step_flops(run_once) -> int:
    """Floating-point operations of one call of `run_once`, counted by torch's FlopCounterMode
    (matrix products and convolutions; the same on every machine and under any load)."""
    with FlopCounterMode(display=False) as counter:
        run_once()
    return counter.get_total_flops()


def default_threads(run_once, cores: int):
    """(thread count, why) for threads=None: 1 for a step of at most SMALL_STEP_FLOPS, else
    `cores`; the why of a small step carries the timed advice."""
    flops = step_flops(run_once)
    if flops > SMALL_STEP_FLOPS:
        return cores, f"one per core: a step is {flops / 1e9:.1f} GFLOP"
    timings = {count: seconds_per_call(run_once, count) for count in candidate_counts(cores)}
    fastest = min(timings, key=timings.get)
    measured = ", ".join(f"{count}: {seconds * 1e3:.2f} ms" for count, seconds in timings.items())
    advice = f"; threads={fastest} was faster now" if timings[fastest] < 0.9 * timings[1] else ""
    return 1, f"a step is {flops / 1e6:.0f} MFLOP, too small to gain from more; measured per step: {measured}{advice}"


def configure_threads(setting, run_once, cores: int = None, kept: int = None) -> str:
    """Set torch's intra-op thread count and return a one-line account of the choice.

    setting: a positive int (used as given) or None. kept: the count the run used before it
    was interrupted (the checkpoint's), used when `setting` is None so that a resumed run
    computes exactly what the uninterrupted run would have. Otherwise default_threads decides,
    with `run_once`, one call of the workload (a forward and backward pass on one batch).
    """
    cores = cores or os.cpu_count() or 1
    if setting is not None:
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise ConfigError(f"threads={setting!r} is not a positive whole number: give e.g. threads=1, "
                              f"or threads=None for the default.")
        torch.set_num_threads(setting)
        if kept is not None and kept != setting:
            return (f"Threads: {setting} (from the config); the run started with {kept}, so from here its numbers "
                    f"differ in the last bits from those of an uninterrupted run")
        return f"Threads: {setting} (from the config)"
    if kept is not None:
        torch.set_num_threads(kept)
        return (f"Threads: {kept}, as when the run started (the count decides the order of float sums, so a "
                f"resumed run keeps it to end as the uninterrupted run would); set threads=N to override")
    count, why = default_threads(run_once, cores)
    torch.set_num_threads(count)
    return f"Threads: {count} ({why}); set threads=N to override"
