"""Trainer: the training loop, per-step and per-epoch logging, checkpoints and resume.

The Trainer receives its loaders (any iterable of {"image": [B, C, H, W], "label": [B]}
batches with a len()), builds the model, optimizer and lr schedule from the config, and
writes into one run directory: config.json, metrics.csv, summary.json, best.pt, last.pt and
the confusion-matrix images. Interrupting a run and resuming it from last.pt ends with the
same weights as an uninterrupted run on the CPU.
"""
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from datasets.preview import augmentation_preview
from executors.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from executors.evaluation import evaluate_model, to_device
from executors.optim import build_optimizer, build_scheduler, sync_lr_to_schedule
from executors.run_dir import BEST, LAST
from logs.Logger import Logger
from models.registry import build_model, count_trainable_parameters
from utils.config import to_plain
from utils.metrics import balanced_accuracy_from_confusion, confusion_matrix
from utils.runtime import resolve_device, resolve_precision, rng_state, seed_everything, set_rng_state
from utils.visualization import plot_confusion_matrix, show_batch

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                  "test_balanced_accuracy", "epoch_seconds", "train_images_per_second")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as file:
        file.write(text)
    os.replace(tmp, path)


class Trainer:
    """Trains `cfg.model_name` on `train_loader`, evaluates on `test_loader` every epoch.

    Args:
        cfg: the resolved config (EasyDict); see configs/mlp_cfg.py for the keys.
        train_loader, test_loader: iterables of batches {"image": float [B, C, H, W],
            "label": int64 [B]} with len() = batches per epoch.
        class_names: list of the dataset's class names (index = label).
    """

    def __init__(self, cfg, train_loader, test_loader, class_names):
        seed_everything(cfg.seed)
        self.cfg = cfg
        self.train_loader, self.test_loader = train_loader, test_loader
        self.class_names = list(class_names)
        self.run_dir = None
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.train.amp, self.device)
        self.model = self._prepare_model()
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, len(train_loader))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.use_scaler)
        self.epochs_completed = 0
        self.global_step = 0
        self.best_accuracy, self.best_epoch = None, None
        self.history = []  # one dict of METRIC_COLUMNS per completed epoch
        self.logger_run_id = None
        self.logger = None

    # ----------------------------------------------------------------- model
    def _prepare_model(self) -> nn.Module:
        """Build the model named by cfg.model_name, move it to the device, print its size."""
        model = build_model(self.cfg.model_name, self.cfg.model, len(self.class_names)).to(self.device)
        self.trainable_parameters = count_trainable_parameters(model)
        print(f"{self.cfg.model_name}: {self.trainable_parameters:,} trainable parameters")
        return model

    # ----------------------------------------------------------------- steps
    def _forward_backward(self, images, labels):
        """One optimisation step on a batch; returns (loss, logits) tensors."""
        with torch.autocast(self.device.type, dtype=self.precision.dtype,
                            enabled=self.precision.dtype is not None):
            logits = self.model(images)
            loss = self.criterion(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), logits.detach()

    def make_step(self, batch) -> dict:
        """Train on one batch and advance the lr schedule.

        Returns floats for this batch: loss, accuracy, balanced_accuracy, and the lr used.
        """
        images, labels = to_device(batch, self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        loss, logits = self._forward_backward(images, labels)
        self.scheduler.step()
        self.global_step += 1
        predictions = logits.argmax(dim=1)
        confusion = confusion_matrix(labels, predictions, len(self.class_names))
        loss_value, correct = torch.stack([loss.float(), (predictions == labels).sum().float()]).tolist()
        return {"loss": loss_value, "accuracy": correct / labels.numel(),
                "balanced_accuracy": balanced_accuracy_from_confusion(confusion), "lr": lr}

    def train_epoch(self, epoch: int) -> dict:
        """One pass over train_loader in model.train() mode, logging every step.

        Returns the epoch means of loss and accuracy, images seen and seconds spent.
        """
        self.model.train()
        loss_sum, correct, seen = 0.0, 0.0, 0
        start = time.perf_counter()
        progress = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}",
                        leave=False, dynamic_ncols=True)
        for batch in progress:
            step = self.make_step(batch)
            size = len(batch["label"])
            loss_sum, correct, seen = loss_sum + step["loss"] * size, correct + step["accuracy"] * size, seen + size
            if self.logger is not None:
                self.logger.log_step_metrics({f"train/{k}": v for k, v in step.items()}, self.global_step)
            progress.set_postfix(loss=f"{step['loss']:.4f}", acc=f"{step['accuracy']:.3f}", refresh=False)
        seconds = time.perf_counter() - start
        return {"loss": loss_sum / seen, "accuracy": correct / seen, "images": seen, "seconds": seconds}

    def evaluate(self, loader=None) -> dict:
        """model.eval() pass over `loader` (default: the test loader); see evaluate_model."""
        return evaluate_model(self.model, loader or self.test_loader, self.device,
                              len(self.class_names), self.precision)

    # ----------------------------------------------------------------- fit
    def fit(self, run_dir) -> dict:
        """Train until cfg.train.epochs, evaluating each epoch; returns the run summary.

        `run_dir` (made by executors.run_dir) receives config.json, metrics.csv,
        summary.json, best.pt, last.pt and the confusion-matrix images.
        """
        cfg, self.run_dir = self.cfg, Path(run_dir)
        run_started = time.perf_counter()
        write_text_atomic(self.run_dir / "config.json", json.dumps(to_plain(cfg), indent=2))
        with Logger(cfg.logger, self.run_dir, self.run_dir.name, self.logger_run_id) as logger:
            self.logger, self.logger_run_id = logger, logger.run_id
            logger.log_hyperparameters({**to_plain(cfg), "trainable_parameters": self.trainable_parameters,
                                        "device": str(self.device), "precision": self.precision.name})
            if self.epochs_completed == 0:
                self._save_augmentation_preview()
                self._save_confusion(self.evaluate()["confusion"], "confusion_matrix_start.png",
                                     "Test set before training")
            test = None
            for epoch in range(self.epochs_completed, cfg.train.epochs):
                lr = self.optimizer.param_groups[0]["lr"]
                train = self.train_epoch(epoch)
                test = self.evaluate()
                self._end_epoch(epoch, lr, train, test, time.perf_counter() - run_started)
                run_started = time.perf_counter()
            final = test or self.evaluate()
            self._save_confusion(final["confusion"], "confusion_matrix_end.png",
                                 f"Test set after {self.epochs_completed} epochs")
            summary = self._summary(final)
            write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2))
            logger.log_summary(summary)
            for name in ("config.json", "summary.json", "metrics.csv"):
                logger.log_file(self.run_dir / name)
        self.logger = None
        return summary

    def _end_epoch(self, epoch, lr, train, test, wall_seconds):
        """Log the epoch, update history and metrics.csv, save last.pt and best.pt."""
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
               "test_loss": test["loss"], "test_accuracy": test["accuracy"],
               "test_balanced_accuracy": test["balanced_accuracy"], "epoch_seconds": wall_seconds,
               "train_images_per_second": train["images"] / train["seconds"]}
        self.history.append(row)
        self.epochs_completed = epoch + 1
        self.logger.log_epoch_metrics({"test/loss": test["loss"], "test/accuracy": test["accuracy"],
                                       "test/balanced_accuracy": test["balanced_accuracy"],
                                       "train/epoch_loss": train["loss"],
                                       "train/epoch_accuracy": train["accuracy"]}, epoch + 1)
        print(f"epoch {epoch + 1}/{self.cfg.train.epochs}: train loss {train['loss']:.4f} "
              f"acc {train['accuracy']:.4f} | test loss {test['loss']:.4f} acc {test['accuracy']:.4f} "
              f"bal.acc {test['balanced_accuracy']:.4f} | {row['train_images_per_second']:.0f} img/s")
        is_best = self.best_accuracy is None or test["accuracy"] > self.best_accuracy
        if is_best:
            self.best_accuracy, self.best_epoch = test["accuracy"], epoch + 1
        if self.cfg.train.confusion_matrix_every_epoch:
            self._save_confusion(test["confusion"], f"confusion_matrices/epoch_{epoch + 1:03d}.png",
                                 f"Test set after epoch {epoch + 1}")
        self.save_model(self.run_dir / LAST)
        if is_best:
            self.save_model(self.run_dir / BEST)
        self._write_metrics_csv()

    def _write_metrics_csv(self):
        lines = [",".join(METRIC_COLUMNS)]
        lines += [",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c])
                           for c in METRIC_COLUMNS) for row in self.history]
        write_text_atomic(self.run_dir / "metrics.csv", "\n".join(lines) + "\n")

    def _save_augmentation_preview(self):
        """Log the same training images before and after augmentation (when the loader's
        dataset keeps its transforms, as the project's datasets do)."""
        dataset = getattr(self.train_loader, "dataset", None)
        if getattr(dataset, "transforms", None) is None:
            return
        originals, augmented, labels = augmentation_preview(dataset)
        figure = show_batch(originals, augmented, labels, self.class_names, self.cfg.data.mean, self.cfg.data.std)
        self.logger.save_plot(figure, "batch_augmentation.png")

    def _save_confusion(self, confusion, name, title):
        figure = plot_confusion_matrix(confusion, self.class_names, title=title)
        self.logger.save_plot(figure, name)

    def _summary(self, final) -> dict:
        seconds = sum(row["epoch_seconds"] for row in self.history)
        speeds = [row["train_images_per_second"] for row in self.history]
        return {
            "exp_name": self.cfg.exp_name, "model_name": self.cfg.model_name, "dataset": self.cfg.data.name,
            "epochs_completed": self.epochs_completed, "best_epoch": self.best_epoch,
            "best_test_accuracy": self.best_accuracy, "final_test_accuracy": final["accuracy"],
            "final_test_balanced_accuracy": final["balanced_accuracy"], "final_test_loss": final["loss"],
            "trainable_parameters": self.trainable_parameters,
            "train_images_per_second": sum(speeds) / len(speeds) if speeds else None,
            "wall_time_seconds": seconds, "device": str(self.device),
        }

    # ----------------------------------------------------------------- checkpoints
    def save_model(self, path) -> None:
        """Atomically save everything needed to resume exactly (see executors/checkpoint.py)."""
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
            "rng": rng_state(),
            "config": to_plain(self.cfg),
            "class_names": self.class_names,
            "logger_run_id": self.logger_run_id,
        }, path)

    def load_model(self, path) -> None:
        """Restore model, optimizer, schedule, scaler, counters and RNG from a checkpoint."""
        state = load_checkpoint(path, self.cfg.model_name)
        load_model_weights(self.model, state, path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        sync_lr_to_schedule(self.scheduler)  # the config's schedule: a longer run stretches it
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.epochs_completed, self.global_step = state["epochs_completed"], state["global_step"]
        self.best_accuracy, self.best_epoch = state["best_accuracy"], state["best_epoch"]
        self.history, self.logger_run_id = state["history"], state["logger_run_id"]
        set_rng_state(state["rng"])
        print(f"Resumed from {path}: {self.epochs_completed} epochs done, step {self.global_step}")

    # ----------------------------------------------------------------- sanity check
    def overfitting_on_batch(self, max_steps: int = None) -> dict:
        """Train on the first training batch alone until it is classified 100% correctly.

        Uses the configured optimizer at a constant lr (no schedule) and checks accuracy in
        model.eval() mode every 10 steps. Returns {"steps", "accuracy", "loss"}.
        """
        max_steps = max_steps or self.cfg.train.overfit_batch_steps
        images, labels = to_device(next(iter(self.train_loader)), self.device)
        accuracy, step = 0.0, 0
        while step < max_steps and accuracy < 1.0:
            self.model.train()
            for _ in range(min(10, max_steps - step)):
                loss, _ = self._forward_backward(images, labels)
                step += 1
            self.model.eval()
            with torch.inference_mode():
                accuracy = (self.model(images).argmax(dim=1) == labels).float().mean().item()
        return {"steps": step, "accuracy": accuracy, "loss": loss.item()}
