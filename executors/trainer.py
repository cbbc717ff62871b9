"""Trainer: the training loop, per-step and per-epoch logging, checkpoints and resume.

The Trainer receives its loaders (any iterable of {"image": [B, C, H, W], "label": [B]}
batches with a len()), builds the model, optimizer and lr schedule from the config, and
writes into one run directory: config.json, metrics.csv, steps.csv, summary.json, best.pt,
last.pt and the confusion-matrix images. best.pt is chosen on a validation loader when one is given
(data.val_fraction), else on the test loader, which is evaluated every epoch either way.
Interrupting a run and resuming it from last.pt ends with the same weights as an
uninterrupted run on the CPU.

On a GPU a training step never waits for the device: per-step metrics stay there and are
read back in groups (executors/step_metrics.py); CNNs run in channels_last memory, cuDNN
picks its fastest kernels, and `train.compile` runs the model through torch.compile.
"""
import json
import time
from pathlib import Path

import torch
from torch import nn

from executors.checkpoints.checkpoint import (load_checkpoint, load_model_weights, restore_training_state,
                                              save_checkpoint)
from executors.checkpoints.resume import check_resumable
from executors.compiled import TrainingForward
from executors.evaluation import batch_to_device, evaluate_model
from executors.optim import build_optimizer, build_scheduler, sync_lr_to_schedule
from executors.run_folders.progress import EpochProgress, describe_device, epoch_line, eta_seconds
from executors.run_folders.run_dir import BEST, LAST
from executors.run_folders.run_figures import save_augmentation_preview, save_confusion
from executors.run_folders.run_files import epoch_row, metrics_csv, run_summary, step_row, steps_csv, tracker_metrics
from executors.step_metrics import STEP_KEYS, StepMetrics, parameters_finite
from logs.Logger import TRACKER_FILE, Logger, public_config
from models.registry import build_model, count_trainable_parameters
from utils.atomic_files import write_text_atomic
from utils.config import to_plain
from utils.runtime import (configure_backends, resolve_device, resolve_precision, rng_state, seed_everything,
                           set_rng_state, uses_channels_last)


class Trainer:
    """Trains `cfg.model_name` on `train_loader`, evaluates on `test_loader` (and `val_loader`)
    every epoch; best.pt is the epoch of highest validation accuracy when there is a
    validation loader, else of highest test accuracy.

    Args:
        cfg: the resolved config (EasyDict); see configs/mlp_cfg.py for the keys.
        train_loader, test_loader, val_loader: iterables of batches {"image": float [B, C, H, W],
            "label": int64 [B]} with len() = batches per epoch; val_loader may be None.
        class_names: list of the dataset's class names (index = label).
    """

    def __init__(self, cfg, train_loader, test_loader, class_names, val_loader=None):
        seed_everything(cfg.seed)
        self.cfg = cfg
        self.train_loader, self.test_loader, self.val_loader = train_loader, test_loader, val_loader
        self.class_names = list(class_names)
        self.run_dir = None
        self.device = resolve_device(cfg.device)
        configure_backends(self.device)
        self.precision = resolve_precision(cfg.train.amp, self.device)
        self.channels_last = uses_channels_last(cfg.model_name, self.device)
        self.model = self._prepare_model()
        self.forward = TrainingForward(self.model, cfg.train.compile)  # what training steps call
        self.reduce = None  # sums evaluation counts over processes (executors/distributed.py)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, len(train_loader))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.use_scaler)
        self.epochs_completed = 0
        self.global_step = 0
        self.step_metrics = StepMetrics(len(self.class_names), self.device)
        self.best_accuracy, self.best_epoch = None, None
        self.history = []  # one dict of run_files.METRIC_COLUMNS per completed epoch
        self.steps = []  # one run_files.step_row per training step of the completed epochs
        self.logger_run_id = None
        self.logger = None

    # ----------------------------------------------------------------- model
    def _prepare_model(self) -> nn.Module:
        """Build the model named by cfg.model_name, move it to the device (channels_last for a
        CNN on CUDA), print its size."""
        model = build_model(self.cfg.model_name, self.cfg.model, len(self.class_names)).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.trainable_parameters = count_trainable_parameters(model)
        print(f"{self.cfg.model_name}: {self.trainable_parameters:,} trainable parameters")
        print(f"Device: {describe_device(self.device)}, precision {self.precision.name}"
              f"{' with gradient scaling' if self.precision.use_scaler else ''}"
              f"{', channels_last' if self.channels_last else ''}")
        return model

    # ----------------------------------------------------------------- steps
    def _forward_backward(self, images, labels):
        """One optimisation step on a batch, without host synchronisation (except inside the
        GradScaler's step for optimizers without fused AMP support). Returns (loss: fp32 0-d,
        logits [B, classes], skipped: 0-d bool, True when the GradScaler skipped the step for
        inf/nan gradients, or None without a GradScaler)."""
        with torch.autocast(self.device.type, dtype=self.precision.dtype,
                            enabled=self.precision.dtype is not None):
            logits = self.forward(images)
            loss = self.criterion(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip_norm)
        self.scaler.step(self.optimizer)
        if not self.scaler.is_enabled():
            return loss.detach(), logits.detach(), None
        scale = self.scaler._get_scale_async().clone()  # update() shrinks it exactly when the step was skipped
        self.scaler.update()
        return loss.detach(), logits.detach(), self.scaler._get_scale_async() < scale

    def _train_step(self, batch) -> None:
        """Train on one batch and advance the lr schedule; the batch's metrics are queued on the
        device in self.step_metrics (no host synchronisation)."""
        images, labels = batch_to_device(batch, self.device, self.channels_last)
        lr = self.optimizer.param_groups[0]["lr"]
        loss, logits, skipped = self.forward.run_step(self._forward_backward, images, labels)
        self.scheduler.step()
        self.global_step += 1
        self.step_metrics.add(self.global_step, lr, loss, logits.argmax(dim=1), labels, skipped)

    def make_step(self, batch) -> dict:
        """Train on one batch and advance the lr schedule; returns this batch's loss, accuracy,
        balanced_accuracy, the lr used (floats), skipped (0/1), step and size. Reads the values
        back at once, a host synchronisation per call: train_epoch reads steps back in groups."""
        self._train_step(batch)
        return self.step_metrics.read()[-1]

    def train_epoch(self, epoch: int) -> dict:
        """One pass over train_loader in model.train() mode, logging every step.

        Step values are read back from the device every logger.flush_every steps and at the
        end. Returns the epoch means of loss and accuracy, images seen, steps the GradScaler
        skipped and seconds spent. Raises TrainingError when the loss stays NaN/inf for
        train.max_nonfinite_steps steps, or ends the epoch NaN/inf with non-finite weights.
        """
        set_epoch = getattr(self.train_loader, "set_epoch", None)
        if set_epoch:
            set_epoch(epoch)
        self.model.train()
        self.step_metrics.start_epoch()
        start = time.perf_counter()
        with EpochProgress(self.train_loader, epoch, self.cfg.train.epochs) as progress:
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

    def evaluate(self, loader=None) -> dict:
        """model.eval() pass over `loader` (default: the test loader); see evaluate_model."""
        return evaluate_model(self.model, loader or self.test_loader, self.device,
                              len(self.class_names), self.precision, self.channels_last, self.reduce)

    def evaluate_epoch(self):
        """(test metrics, validation metrics or None): the evaluations that end every epoch."""
        return self.evaluate(), self.evaluate(self.val_loader) if self.val_loader is not None else None

    # ----------------------------------------------------------------- fit
    def fit(self, run_dir) -> dict:
        """Train until cfg.train.epochs, evaluating each epoch; returns the run summary.

        `run_dir` (made by executors.run_folders.run_dir) receives config.json, metrics.csv, steps.csv,
        summary.json, best.pt, last.pt and the confusion-matrix images.
        """
        cfg, self.run_dir = self.cfg, Path(run_dir)
        run_started = time.perf_counter()
        write_text_atomic(self.run_dir / "config.json", json.dumps(public_config(cfg), indent=2))
        with Logger(cfg.logger, self.run_dir, self.run_dir.name, self.logger_run_id) as logger:
            self.logger, self.logger_run_id = logger, logger.run_id
            if logger.run_id is not None:  # a folder abandoned before last.pt can close its tracker run
                write_text_atomic(self.run_dir / TRACKER_FILE, json.dumps(logger.tracker_record))
            print(logger.location, flush=True)
            logger.log_hyperparameters({**to_plain(cfg), "trainable_parameters": self.trainable_parameters,
                                        "device": str(self.device), "precision": self.precision.name})
            if self.epochs_completed == 0:
                save_augmentation_preview(logger, self.train_loader, self.class_names, cfg.data)
                save_confusion(logger, self.evaluate()["confusion"], self.class_names, "confusion_matrix_start.png",
                               "Test set before training")
            evaluations = None
            for epoch in range(self.epochs_completed, cfg.train.epochs):
                lr = self.optimizer.param_groups[0]["lr"]
                train = self.train_epoch(epoch)
                evaluations = self.evaluate_epoch()
                self._end_epoch(epoch, lr, train, *evaluations, time.perf_counter() - run_started)
                run_started = time.perf_counter()
            final, final_val = evaluations or self.evaluate_epoch()
            save_confusion(logger, final["confusion"], self.class_names, "confusion_matrix_end.png",
                           f"Test set after {self.epochs_completed} epochs")
            summary = run_summary(cfg, self.history, final, self.best_epoch, self.trainable_parameters,
                                  self.device, final_val)
            write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2))
            logger.log_summary(summary)
            for name in ("config.json", "summary.json", "metrics.csv", "steps.csv"):
                logger.log_file(self.run_dir / name)
        self.logger = None
        return summary

    def _end_epoch(self, epoch, lr, train, test, val, wall_seconds):
        """Log the epoch, update history and metrics.csv, save best.pt (when best: on validation
        accuracy if there is a validation split, else on test accuracy) and last.pt."""
        row = epoch_row(epoch, lr, train, test, wall_seconds, val)
        self.history.append(row)
        self.epochs_completed = epoch + 1
        self.logger.log_epoch_metrics(tracker_metrics(row), epoch + 1)
        eta = eta_seconds([r["epoch_seconds"] for r in self.history], self.cfg.train.epochs - epoch - 1)
        print(epoch_line(row, self.cfg.train.epochs, eta), flush=True)
        chosen = (val or test)["accuracy"]
        is_best = self.best_accuracy is None or chosen > self.best_accuracy
        if is_best:
            self.best_accuracy, self.best_epoch = chosen, epoch + 1
        if self.cfg.train.confusion_matrix_every_epoch:
            save_confusion(self.logger, test["confusion"], self.class_names,
                           f"confusion_matrices/epoch_{epoch + 1:03d}.png", f"Test set after epoch {epoch + 1}")
        if is_best:  # before last.pt records it: a crash in between must not leave a best epoch without best.pt
            self.save_model(self.run_dir / BEST)
        self.save_model(self.run_dir / LAST)
        write_text_atomic(self.run_dir / "metrics.csv", metrics_csv(self.history))
        write_text_atomic(self.run_dir / "steps.csv", steps_csv(self.steps))

    # ----------------------------------------------------------------- checkpoints
    def save_model(self, path) -> None:
        """Atomically save everything needed to resume exactly (see executors/checkpoints/checkpoint.py)."""
        save_checkpoint({
            "model_name": self.cfg.model_name,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epochs_completed": self.epochs_completed,
            "global_step": self.global_step,
            "best_accuracy": self.best_accuracy,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "steps": self.steps,
            "rng": rng_state(),
            "config": public_config(self.cfg),
            "class_names": self.class_names,
            "logger_run_id": self.logger_run_id,
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,  # kept on resume
        }, path)

    def load_model(self, path, state=None) -> None:
        """Restore model, optimizer, schedule, scaler, counters and RNG from a checkpoint
        (`state`: its contents when already read). Raises CheckpointError when the config
        changes what the run trained (executors/checkpoints/resume.check_resumable)."""
        state = state if state is not None else load_checkpoint(path, self.cfg.model_name)
        check_resumable(state, self.cfg, path, self.class_names)
        load_model_weights(self.model, state, path)
        restore_training_state(self.optimizer, self.scheduler, self.scaler, state, path)
        sync_lr_to_schedule(self.scheduler)  # the config's schedule: a longer run stretches it
        self.epochs_completed, self.global_step = state["epochs_completed"], state["global_step"]
        self.best_accuracy, self.best_epoch = state["best_accuracy"], state["best_epoch"]
        self.history, self.logger_run_id = state["history"], state["logger_run_id"]
        self.steps = [tuple(row) for row in state.get("steps", [])]  # checkpoints before steps.csv: none
        set_rng_state(state["rng"])
        print(f"Resumed from {path}: {self.epochs_completed} epochs done, step {self.global_step}")

    # ----------------------------------------------------------------- sanity check
    def overfitting_on_batch(self, max_steps: int = None) -> dict:
        """Train on the first training batch alone until it is classified 100% correctly.

        Uses the configured optimizer at the configured lr (after linear scaling), constant:
        no warmup, no decay. Checks accuracy in model.eval() mode every 10 steps. Returns
        {"steps", "accuracy", "loss"}.
        """
        max_steps = max_steps or self.cfg.train.overfit_batch_steps
        for group, base_lr in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base_lr  # LambdaLR set the warmup's first-step lr at construction
        images, labels = batch_to_device(next(iter(self.train_loader)), self.device, self.channels_last)
        accuracy, step = 0.0, 0
        while step < max_steps and accuracy < 1.0:
            self.model.train()
            for _ in range(min(10, max_steps - step)):
                loss, _, _ = self.forward.run_step(self._forward_backward, images, labels)
                step += 1
            self.model.eval()
            with torch.inference_mode():
                accuracy = (self.model(images).argmax(dim=1) == labels).float().mean().item()
        return {"steps": step, "accuracy": accuracy, "loss": loss.item()}
