"""How many intra-op threads PyTorch uses on the CPU, chosen by measurement.

On small workloads (an MLP step on 64 images takes about a millisecond) extra threads cost
more in hand-offs than they give, and on a shared 2-vCPU machine a second thread made the
KMNIST pipeline 10x slower. So when the config leaves `threads` unset, a few timed calls of
the real step at each candidate count decide; a step long enough for threads to pay off
(over SMALL_STEP_SECONDS) keeps PyTorch's default of one thread per core.
"""
import os
import time

import torch

from utils.errors import ConfigError

SMALL_STEP_SECONDS = 0.05
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


def configure_threads(setting, run_once, cores: int = None) -> str:
    """Set torch's intra-op thread count and return a one-line account of the choice.

    setting: a positive int (used as given) or None (measured with `run_once`, one call of
    the workload, e.g. a forward and backward pass on one batch).
    """
    cores = cores or os.cpu_count() or 1
    if setting is not None:
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise ConfigError(f"threads={setting!r} is not a positive whole number: give e.g. threads=1, "
                              f"or threads=None to choose by measurement.")
        torch.set_num_threads(setting)
        return f"Threads: {setting} (from the config)"
    default = seconds_per_call(run_once, cores, repeats=1)
    if default > SMALL_STEP_SECONDS:
        torch.set_num_threads(cores)
        return f"Threads: {cores}, one per core (a step takes {default * 1e3:.0f} ms at that count)"
    timings = {count: seconds_per_call(run_once, count) for count in candidate_counts(cores)}
    best = min(timings, key=timings.get)
    torch.set_num_threads(best)
    measured = ", ".join(f"{count}: {seconds * 1e3:.2f} ms" for count, seconds in timings.items())
    return f"Threads: {best}, measured per step ({measured}); set threads=N to override"
