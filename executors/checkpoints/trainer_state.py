"""A Trainer's checkpoint: what it holds (the format of checkpoint.py) and how a resume puts
it back, so that the resumed run continues as the uninterrupted one would have."""
import torch

from executors.checkpoints.checkpoint import restore_training_state
from executors.checkpoints.resume import check_resumable
from executors.optim import sync_lr_to_schedule
from executors.tools.ema import checkpoint_weights, restore_weights
from executors.tools.mixing import mixer_state, restore_mixer
from logs.Logger import public_config
from utils.runtime import rng_state, set_rng_state


def trainer_state(trainer, weights="raw") -> dict:
    """Everything `trainer` (executors/trainer.Trainer) needs to resume exactly: weights (and their
    EMA; `weights`: which ones "model" holds, "raw" or "ema", ema.checkpoint_weights), optimizer,
    schedule, scaler, counters, best epoch, history, RNG states, the mixing generator (with
    mixup/cutmix), config, class names, tracker run id and the CPU thread count."""
    return {
        "model_name": trainer.cfg.model_name, **checkpoint_weights(trainer.model, trainer.ema, weights),
        "optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(), "epochs_completed": trainer.epochs_completed,
        "global_step": trainer.global_step, "best_accuracy": trainer.best_accuracy, "best_epoch": trainer.best_epoch,
        "history": trainer.history, "steps": trainer.steps, "rng": rng_state(), "config": public_config(trainer.cfg),
        "class_names": trainer.class_names, "logger_run_id": trainer.logger_run_id, **mixer_state(trainer.mixer),
        "threads": torch.get_num_threads() if trainer.device.type == "cpu" else None,  # kept on resume
    }


def restore_trainer(trainer, state: dict, path) -> None:
    """Put a checkpoint's `state` (trainer_state's, read from `path`) back into `trainer`; a
    CheckpointError if the config changes what the run trained (resume.check_resumable)."""
    check_resumable(state, trainer.cfg, path, trainer.class_names)
    restore_weights(trainer.model, trainer.ema, state, path)
    restore_mixer(trainer.mixer, state)
    restore_training_state(trainer.optimizer, trainer.scheduler, trainer.scaler, state, path)
    sync_lr_to_schedule(trainer.scheduler)  # the config's schedule: a longer run stretches it
    trainer.epochs_completed, trainer.global_step = state["epochs_completed"], state["global_step"]
    trainer.best_accuracy, trainer.best_epoch = state["best_accuracy"], state["best_epoch"]
    trainer.history, trainer.logger_run_id = state["history"], state["logger_run_id"]
    trainer.steps = [tuple(row) for row in state.get("steps", [])]  # checkpoints before steps.csv: none
    set_rng_state(state["rng"])
