"""Trainer: the training loop, per-step and per-epoch logging, checkpoints and resume.

From its loaders (iterables of {"image": [B, C, H, W], "label": [B]} batches with a len()) and
the config, the Trainer builds model, optimizer and lr schedule, and writes one run directory:
config.json, metrics.csv, steps.csv, summary.json, best.pt (chosen on the validation loader
when given, else on the test loader, evaluated every epoch either way), last.pt and the
confusion matrices. Optional: a weight EMA (executors/tools/ema.py), mixup/cutmix of the training
batches (executors/tools/mixing.py) and test-time augmentation scored beside the plain evaluation
(executors/tools/tta.py). A run resumed from last.pt ends with the weights of an uninterrupted one
on the CPU. A step never waits for the GPU (metrics are read back in groups:
executors/step/metrics.py). Under torchrun every process runs this loop on its share of each
batch through DistributedDataParallel (executors/distributed.py); only the main one writes.
"""
import time
from pathlib import Path

import torch
from torch import nn

from executors.checkpoints.checkpoint import load_checkpoint, save_checkpoint
from executors.checkpoints.trainer_state import restore_trainer, trainer_state
from executors.distributed import Processes, all_reduce_sum, broadcast_from_main, data_parallel
from executors.evaluation import batch_to_device, evaluate_epoch, evaluate_model
from executors.optim import build_optimizer, build_scheduler
from executors.run_folders.progress import EpochProgress, describe_device, epoch_line, eta_seconds
from executors.run_folders.run_dir import BEST, LAST
from executors.run_folders.run_figures import save_augmentation_preview, save_confusion
from executors.run_folders.run_files import (epoch_notes, epoch_row, run_summary, step_row, tracker_metrics,
                                             write_history, write_summary)
from executors.run_folders.tracking import tracked_run
from executors.step.compiled import TrainingForward
from executors.step.graphed import graphed_step, refusal
from executors.step.metrics import STEP_KEYS, StepMetrics, parameters_finite, scaled_optimizer_step
from executors.tools.ema import WeightEma, select
from executors.tools.mixing import make_mixer, mix_generator, training_criterion
from executors.tools.overfit_batch import overfit_first_batch
from executors.tools.tta import resolve_tta
from models.registry import build_model, count_trainable_parameters
from utils.runtime import configure_backends, resolve_device, resolve_precision, seed_everything, uses_channels_last


class Trainer:
    """Trains `cfg.model_name` and evaluates it every epoch (see the module docstring).

    Args:
        cfg: the resolved config (EasyDict); see configs/mlp_cfg.py for the keys.
        train_loader, test_loader, val_loader: iterables of batches {"image": float [B, C, H, W],
            "label": int64 [B]} with len() = batches per epoch; val_loader may be None.
        class_names: list of the dataset's class names (index = label).
        processes: this process's place under torchrun (executors/distributed.py); every
            process trains its share of each batch, the main one alone writes.
    """

    def __init__(self, cfg, train_loader, test_loader, class_names, val_loader=None, processes=Processes()):
        seed_everything(cfg.seed)
        self.cfg, self.processes = cfg, processes
        self.train_loader, self.test_loader, self.val_loader = train_loader, test_loader, val_loader
        self.class_names = list(class_names)
        self.device = resolve_device(cfg.device)
        configure_backends(self.device)
        self.precision = resolve_precision(cfg.train.amp, self.device)
        self.channels_last = uses_channels_last(cfg.model_name, self.device)
        self.model = self._prepare_model()
        generator = mix_generator(cfg.seed, self.device, processes.rank)  # this process's mixup/cutmix draws
        self.mixer = make_mixer(cfg.train, len(self.class_names), generator)  # None: mixing off (mixing.py)
        self.criterion = training_criterion(cfg.train, self.mixer)  # label smoothing; soft targets when mixing
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, len(train_loader))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.use_scaler)
        decay = cfg.train.get("ema_decay")  # an fp32 average of the weights updated every step (tools/ema.py)
        self.ema = WeightEma(self.model, decay, cfg.train.get("ema_warmup", False)) if decay else None
        sync_bn = bool(cfg.train.get("sync_bn")) and cfg.model_name != "MLP"
        self.model, trained = data_parallel(self.model, processes, self.device, sync_bn)  # evaluated, saved; trained
        self.forward = TrainingForward(trained, cfg.train.compile)  # what a training step calls
        self.graphed = graphed_step(cfg.train.get("cuda_graph", False), self.device, self.optimizer,  # None: eager
                                    lambda images, targets: self._forward_backward(images, targets),  # late-bound
                                    refusal(self.device, self.precision.use_scaler, self.forward.compiled is not None,
                                            processes.parallel))
        self.reduce = all_reduce_sum if processes.parallel else None  # sums evaluation counts over processes
        self.tta = resolve_tta(cfg)  # test-time augmentation scored beside the plain test and val metrics
        self.epochs_completed, self.global_step = 0, 0
        self.step_metrics = StepMetrics(len(self.class_names), self.device)
        self.best_accuracy, self.best_epoch = None, None
        self.history, self.steps = [], []  # per completed epoch a run_files.epoch_row, per step a step_row
        self.run_dir, self.logger, self.logger_run_id = None, None, None

    def _prepare_model(self) -> nn.Module:
        """cfg.model_name's model on the device (channels_last for a CNN on CUDA); prints its size."""
        model = build_model(self.cfg.model_name, self.cfg.model, len(self.class_names)).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.trainable_parameters = count_trainable_parameters(model)
        print(f"{self.cfg.model_name}: {self.trainable_parameters:,} trainable parameters\n"
              f"Device: {describe_device(self.device)}, precision {self.precision.name}"
              f"{' with gradient scaling' if self.precision.use_scaler else ''}"
              f"{', channels_last' if self.channels_last else ''}")
        return model

    def _forward(self, images, targets):
        """(loss: fp32 0-d, logits [B, classes]) of `images` [B, C, H, W] against `targets` (int64 labels [B],
        or float32 [B, classes] when mixing): forward in autocast (no cast cache, as CUDA graphs need), loss in fp32."""
        with torch.autocast(self.device.type, dtype=self.precision.dtype, enabled=self.precision.dtype is not None,
                            cache_enabled=False):
            logits = self.forward(images)
            return self.criterion(logits.float(), targets), logits

    def _backward(self, loss) -> None:
        """Gradients of `loss` (through the GradScaler) in place of the last step's."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()

    def _optimizer_step(self):
        """Optional gradient clipping, then the optimizer step through the GradScaler; no host sync (but in
        GradScaler.step for optimizers without fused AMP). Returns skipped (scaled_optimizer_step)."""
        if self.cfg.train.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip_norm)
        return scaled_optimizer_step(self.scaler, self.optimizer)

    def _forward_backward(self, images, targets):
        """One eager optimisation step on `images` and `targets` (see _forward): forward, backward, optimizer
        step. A compiled model's first step that raises is redone eagerly (step/compiled.py).
        Returns (loss: fp32 0-d, logits [B, classes], skipped: 0-d bool or None: scaled_optimizer_step)."""
        try:
            loss, logits = self._forward(images, targets)
            self._backward(loss)
        except Exception as error:
            if not self.forward.fall_back(error):
                raise
            return self._forward_backward(images, targets)
        return loss.detach(), logits.detach(), self._optimizer_step()

    def _step(self, images, targets):
        """_forward_backward, replayed from a CUDA graph where train.cuda_graph allows (step/graphed.py)."""
        if self.graphed is not None:
            return self.graphed(images, targets)
        return self._forward_backward(images, targets)

    def _inputs(self, batch):
        """(images [B, C, H, W], targets, labels [B]) of a loader's batch on the device; when mixing, the
        images mixed, targets float32 [B, classes] and labels the dominant ones, else targets = labels."""
        images, labels = batch_to_device(batch, self.device, self.channels_last)
        if self.mixer is None:
            return images, labels, labels
        return self.mixer(images, labels)

    def _after_step(self, lr, loss, logits, labels, skipped) -> None:
        """Advance the lr schedule, the step count and the EMA; queue the step's metrics (no sync)."""
        self.scheduler.step()
        self.global_step += 1
        if self.ema is not None:
            self.ema.update()
        self.step_metrics.add(self.global_step, lr, loss, logits.argmax(dim=1), labels, skipped)

    def _train_step(self, batch) -> None:
        """Train on one batch (mixed when mixing is on: its accuracy is then against each sample's
        dominant label) and advance the lr schedule; the batch's metrics are queued on the device in
        self.step_metrics (no host synchronisation). executors/benchmark/step_profile.py times these phases."""
        images, targets, labels = self._inputs(batch)
        lr = self.optimizer.param_groups[0]["lr"]
        loss, logits, skipped = self._step(images, targets)
        self._after_step(lr, loss, logits, labels, skipped)

    def make_step(self, batch) -> dict:
        """_train_step, then its loss, accuracy, balanced_accuracy, lr used (floats), skipped (0/1), step
        and size, read back at once (a host sync per call: train_epoch reads steps back in groups)."""
        self._train_step(batch)
        return self.step_metrics.read()[-1]

    def train_epoch(self, epoch: int) -> dict:
        """One pass over train_loader in model.train() mode, logging every step (read back every
        logger.flush_every steps and at the end). Returns the epoch means of loss and accuracy, images
        seen, steps the GradScaler skipped and seconds spent. Raises TrainingError when the loss stays
        NaN/inf for train.max_nonfinite_steps steps, or ends the epoch NaN/inf with non-finite weights."""
        set_epoch = getattr(self.train_loader, "set_epoch", None)
        if set_epoch:
            set_epoch(epoch)
        self.model.train()
        self.step_metrics.start_epoch()
        start = time.perf_counter()
        interactive = None if self.processes.is_main else False  # no progress bar from the other processes
        with EpochProgress(self.train_loader, epoch, self.cfg.train.epochs, interactive) as progress:
            for batch in progress:
                self._train_step(batch)
                if len(self.step_metrics) >= self.cfg.logger.flush_every:
                    self._log_steps(progress, epoch)
            self._log_steps(progress, epoch)
        self._stop_if_diverged(weights_finite=not self.step_metrics.nonfinite_streak
                               or parameters_finite(self.model))
        return {**self.step_metrics.epoch_means(), "seconds": time.perf_counter() - start}

    def _log_steps(self, progress, epoch: int) -> None:
        """Read the queued steps back (one transfer), log and record each one, show the newest
        in the progress display, and stop a run whose loss stays non-finite."""
        rows = self.step_metrics.read()
        self.steps += [step_row(epoch, row) for row in rows]
        for row in rows if self.logger is not None else ():
            self.logger.log_step_metrics({f"train/{key}": row[key] for key in STEP_KEYS}, row["step"])
        if rows:
            progress.show(loss=f"{rows[-1]['loss']:.4f}", acc=f"{rows[-1]['accuracy']:.3f}")
        self._stop_if_diverged()

    def _stop_if_diverged(self, weights_finite=True) -> None:
        error = self.step_metrics.divergence(self.cfg.train.max_nonfinite_steps, self.epochs_completed,
                                             weights_finite)
        if error is not None:
            raise error

    def evaluate(self, loader=None, model=None, tta="none") -> dict:
        """evaluate_model of `model` (default: the trained one) on `loader` (default: the test loader); with
        `tta` other than "none" also the tta_* metrics of that test-time augmentation."""
        return evaluate_model(self.model if model is None else model, loader or self.test_loader, self.device,
                              len(self.class_names), self.precision, self.channels_last, self.reduce, tta)

    def evaluate_epoch(self) -> dict:
        """evaluation.evaluate_epoch of the trained weights (with eval.tta) and their EMA (with rank 0's
        BatchNorm buffers)."""
        if self.ema is not None and self.processes.parallel:
            self.ema.share_buffers(broadcast_from_main)
        return evaluate_epoch(self.evaluate, self.model, self.ema.module if self.ema is not None else None,
                              self.test_loader, self.val_loader, self.tta)

    def fit(self, run_dir=None) -> dict:
        """Train until cfg.train.epochs, evaluating each epoch, into `run_dir` (run_folders.run_dir); returns the
        run summary. Under torchrun only the main process writes (and needs a `run_dir`); the others run
        the same steps and evaluations, so that every collective operation meets its partners."""
        self.run_dir = Path(run_dir) if self.processes.is_main else None
        started = time.perf_counter()
        with tracked_run(self) as self.logger:  # None in the other processes
            if self.epochs_completed == 0:
                confusion = self.evaluate()["confusion"]
                if self.logger is not None:  # main process
                    save_augmentation_preview(self.logger, self.train_loader, self.class_names, self.cfg.data)
                    save_confusion(self.logger, confusion, self.class_names, "confusion_matrix_start.png",
                                   "Test set before training")
            evaluations = None
            for epoch in range(self.epochs_completed, self.cfg.train.epochs):
                lr = self.optimizer.param_groups[0]["lr"]
                train = self.train_epoch(epoch)
                evaluations = self.evaluate_epoch()
                self._end_epoch(epoch, lr, train, evaluations, time.perf_counter() - started)
                started = time.perf_counter()
            final = evaluations or self.evaluate_epoch()
            summary = run_summary(self.cfg, self.history, final, self.best_epoch, self.trainable_parameters,
                                  self.device)
            if self.logger is not None:
                save_confusion(self.logger, final["test"]["confusion"], self.class_names, "confusion_matrix_end.png",
                               f"Test set after {self.epochs_completed} epochs")
                write_summary(self.logger, self.run_dir, summary)
        self.logger = None
        return summary

    def _end_epoch(self, epoch, lr, train, evaluations, wall_seconds):
        """Update history and the best epoch (ema.select: on validation, else test accuracy, of the better weights);
        main process: log and print the epoch, save best.pt (when best), last.pt and metrics.csv."""
        row = epoch_row(epoch, lr, train, evaluations, wall_seconds)
        self.history.append(row)
        self.epochs_completed = epoch + 1
        chosen, weights = select(evaluations)
        is_best = self.best_accuracy is None or chosen > self.best_accuracy
        if is_best:
            self.best_accuracy, self.best_epoch = chosen, epoch + 1
        if self.logger is None:
            return
        self.logger.log_epoch_metrics(tracker_metrics(row), epoch + 1)
        eta = eta_seconds([r["epoch_seconds"] for r in self.history], self.cfg.train.epochs - epoch - 1)
        print(epoch_line(row, self.cfg.train.epochs, eta) + epoch_notes(row), flush=True)
        if self.cfg.train.confusion_matrix_every_epoch:
            save_confusion(self.logger, evaluations["test"]["confusion"], self.class_names,
                           f"confusion_matrices/epoch_{epoch + 1:03d}.png", f"Test set after epoch {epoch + 1}")
        if is_best:  # before last.pt records it: a crash in between must not leave a best epoch without best.pt
            self.save_model(self.run_dir / BEST, weights)
        self.save_model(self.run_dir / LAST)
        write_history(self.run_dir, self.history, self.steps)

    def save_model(self, path, weights="raw") -> None:
        """Atomically save everything needed to resume exactly (checkpoints/trainer_state.py); `weights`:
        which weights "model" holds with an EMA, "raw" or "ema" (ema.checkpoint_weights)."""
        save_checkpoint(trainer_state(self, weights), path)

    def load_model(self, path, state=None) -> None:
        """Restore weights, optimizer, schedule, scaler, counters and random states from a checkpoint (`state`:
        its contents if read; checkpoints/trainer_state.py); CheckpointError if the config changes what the
        run trained (resume.py)."""
        state = state if state is not None else load_checkpoint(path, self.cfg.model_name)
        restore_trainer(self, state, path)
        print(f"Resumed from {path}: {self.epochs_completed} epochs done, step {self.global_step}")

    def overfitting_on_batch(self, max_steps: int = None) -> dict:
        """Train on the first training batch alone until it is classified 100% correctly
        (executors/tools/overfit_batch.py). Returns {"steps", "accuracy", "loss"}."""
        return overfit_first_batch(self, max_steps or self.cfg.train.overfit_batch_steps)
