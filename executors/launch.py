"""What scripts/train.py and scripts/overfit_batch.py do, as library functions (evaluate.py and
predict.py: executors/checkpoints/inference.py)."""
import contextlib
import copy
import functools
import os
import signal
import sys

import torch

from datasets.loading.loaders import build_loaders
from executors.checkpoints.checkpoint import load_checkpoint
from executors.checkpoints.resume import check_resumable, finished_note, finished_summary
from executors.distributed import Processes, main_process_first, session
from executors.preflight import preflight
from executors.run_folders.run_dir import claim_run_dir, interruption_note, resume_checkpoint, run_dir_lock
from executors.step.rate import training_step_rate
from executors.trainer import Trainer
from logs.Logger import check_logger_config
from models.registry import has_batch_norm
from utils.config import make_paths_absolute
from utils.errors import Interrupted
from utils.threads import configure_threads
from utils.validation import check_values, warnings_for


def _step_probe(trainer):
    """A call that runs one forward and backward pass of a copy of the model on the first
    training batch: the workload that utils.threads times."""
    with torch.random.fork_rng():  # the probe must not change the run's random streams
        batch = next(iter(trainer.train_loader))
    model = copy.deepcopy(trainer.model).train()
    images, labels = batch["image"].to(trainer.device), batch["label"].to(trainer.device)

    def run_once():
        with torch.random.fork_rng():
            model.zero_grad(set_to_none=True)
            trainer.criterion(model(images), labels).backward()
    return run_once


def prepare_trainer(cfg, processes=Processes(), kept_threads=None) -> Trainer:
    """Loaders and Trainer for `cfg` (this process's share of the data when parallel); on the
    CPU also the thread count, printed: cfg.threads, else `kept_threads` (a resumed run's, from
    its checkpoint), else utils.threads.default_threads. A single-process run hands the loaders
    a measure of its training step, with which data.loader='auto' may probe its paths on a GPU."""
    step_rate = None if processes.parallel else functools.partial(training_step_rate, cfg)
    with main_process_first(processes):
        loaders = build_loaders(cfg, processes.rank, processes.world_size,
                                drop_single_last=has_batch_norm(cfg.model_name, cfg.model), step_rate=step_rate)
    trainer = Trainer(cfg, *loaders, val_loader=loaders.val, processes=processes)
    if trainer.device.type == "cpu":
        print(configure_threads(cfg.get("threads"), _step_probe(trainer), kept=kept_threads))
    return trainer


def train_experiment(cfg, resume=None):
    """Train `cfg` in a new run directory, or continue the run of `resume` ("auto" or a path);
    returns the run summary (None in processes other than rank 0 under torchrun).

    Config values, the transforms, model and optimizer they build (executors/preflight.py),
    the logger settings and the data are checked before any directory is made, so a bad
    config or a missing dataset leaves nothing behind. A resumed run keeps writing into its
    own directory unless that is read-only (e.g. a Kaggle input), then into a new one; a
    config that changes what the run trained is refused before any data is read
    (executors/checkpoints/resume.py), and a finished run is reported ("already finished") and left as it
    is. The run directory is locked for the run's life: a second process that wants it (e.g.
    --resume auto while the run trains) stops with a UserError. Under torchrun
    every process runs Trainer.fit on its share and rank 0 alone writes (executors/distributed.py).
    """
    check_values(cfg)
    make_paths_absolute(cfg)
    preflight(cfg)
    check_logger_config(cfg.logger, cfg.exp_dir)
    for note in warnings_for(cfg):
        print(f"warning: {note}", file=sys.stderr)
    with session(cfg) as processes, contextlib.ExitStack() as held:
        checkpoint = resume_checkpoint(cfg.exp_dir, cfg.exp_name, resume) if resume else None
        run_dir = checkpoint.parent if checkpoint is not None and os.access(checkpoint.parent, os.W_OK) else None
        if run_dir is not None and processes.is_main:
            held.enter_context(run_dir_lock(run_dir))  # before last.pt is read: no process is writing it
        state = load_checkpoint(checkpoint, cfg.model_name) if checkpoint is not None else None
        if state is not None:
            check_resumable(state, cfg, checkpoint)  # before any data is read
            summary = finished_summary(state, cfg, checkpoint)
            if summary is not None:  # nothing is written, no tracker run reopened
                if processes.is_main:
                    print(finished_note(summary, checkpoint))
                return summary if processes.is_main else None
        trainer = prepare_trainer(cfg, processes, kept_threads=state.get("threads") if state else None)
        if checkpoint is not None:
            trainer.load_model(checkpoint, state)
        if processes.is_main:  # the other processes write nothing
            run_dir = run_dir or held.enter_context(claim_run_dir(cfg.exp_dir, cfg.exp_name, cfg.logger))
        try:  # from the line that names the run directory on, an interruption says what it holds
            if processes.is_main:
                print(f"Run directory: {run_dir}")
            summary = trainer.fit(run_dir)
        except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM through utils.cli
            note = interruption_note(run_dir) if processes.is_main else ""
            raise Interrupted(getattr(error, "signal_number", signal.SIGINT), note) from None
        return summary if processes.is_main else None


def overfit_experiment(cfg, steps=None) -> dict:
    """Memorise one training batch (Trainer.overfitting_on_batch); returns steps, accuracy, loss."""
    check_values(cfg)
    preflight(cfg)
    return prepare_trainer(cfg).overfitting_on_batch(steps)
