"""Data parallelism through PyTorch's own launcher: `torchrun --nproc_per_node N
scripts/train.py ...` runs this same program in N processes, and this module is all that
knows about it.

* Set-up: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) -> a process group (NCCL on
  GPUs, gloo on the CPU), one GPU per process.
* The model trains inside DistributedDataParallel (gradients averaged over processes);
  `train.sync_bn` turns BatchNorm into SyncBatchNorm. `train.batch_size` stays the global
  batch: each process gets its share of every batch from its loader.
* Every process runs the same Trainer.fit loop; only rank 0 writes (run directory,
  checkpoints, figures, tracker run), and `session` sends the others' standard output to
  /dev/null, so they print only errors. Evaluation counts and losses are summed over
  processes exactly (`all_reduce_sum`).
* An error in one process ends it with its message and a non-zero status, and torchrun then
  stops the others.
"""
import contextlib
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from utils.errors import ConfigError
from utils.runtime import resolve_device


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1


def from_environment() -> Processes:
    """The Processes torchrun describes in the environment, or a single process."""
    return Processes(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))


@contextlib.contextmanager
def session(cfg):
    """Join the process group for the duration of a run; yields Processes. Outside torchrun
    it does nothing. Checks that the global batch divides among the processes."""
    processes = from_environment()
    if not processes.parallel:
        yield processes
        return
    for key, size in (("train.batch_size", cfg.train.batch_size), ("eval.batch_size", cfg.eval.get("batch_size"))):
        if size is not None and size % processes.world_size:
            raise ConfigError(f"{key}={size} is the global batch and must divide among the "
                              f"{processes.world_size} processes: use a multiple of {processes.world_size}.")
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(processes.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    quiet = None
    if not processes.is_main:
        quiet, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        yield processes
    finally:
        if quiet is not None:
            sys.stdout.close()
            sys.stdout = quiet
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over every process, in place (an exact sum for integer counts)."""
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def data_parallel(model: torch.nn.Module, processes: Processes, device: torch.device, sync_bn=False):
    """(model, training model): in a single process `model` twice; under torchrun `model` with
    its BatchNorm layers made SyncBatchNorm when `sync_bn` (a CNN; the same Parameters, so an
    optimizer built before still holds them), and DistributedDataParallel around it, which
    averages the gradients over processes during backward. Evaluate and save the first (the
    bare model: checkpoints keep its keys); train through the second."""
    if not processes.parallel:
        return model, model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return model, DistributedDataParallel(model, device_ids=device_ids)


@contextlib.contextmanager
def main_process_first(processes: Processes):
    """Run the block in rank 0 before the other processes (it fills the decoded-image cache
    that they then only read)."""
    if processes.parallel and not processes.is_main:
        dist.barrier()
    yield
    if processes.parallel and processes.is_main:
        dist.barrier()


def broadcast_from_main(tensor: torch.Tensor) -> torch.Tensor:
    """Overwrite `tensor` in place with rank 0's (every process must call it)."""
    dist.broadcast(tensor, src=0)
    return tensor
