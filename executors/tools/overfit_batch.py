"""Memorising one batch: the check that a model and its optimizer can learn at all (Trainer.overfitting_on_batch)."""
import torch

from executors.evaluation import batch_to_device


def overfit_first_batch(trainer, max_steps: int) -> dict:
    """Train `trainer`'s model on its first training batch alone until the batch is classified 100%
    correctly or `max_steps` steps have run, with the configured optimizer at the configured lr (after
    linear scaling), constant: no warmup, no decay. Checks accuracy in model.eval() mode every 10 steps.
    Returns {"steps", "accuracy" (fraction of the batch), "loss" (the last step's)}."""
    for group, base_lr in zip(trainer.optimizer.param_groups, trainer.scheduler.base_lrs):
        group["lr"] = base_lr  # LambdaLR set the warmup's first-step lr at construction
    images, labels = batch_to_device(next(iter(trainer.train_loader)), trainer.device, trainer.channels_last)
    accuracy, step = 0.0, 0
    while step < max_steps and accuracy < 1.0:
        trainer.model.train()
        for _ in range(min(10, max_steps - step)):
            loss, _, _ = trainer._forward_backward(images, labels)
            step += 1
        trainer.model.eval()
        with torch.inference_mode():
            accuracy = (trainer.model(images).argmax(dim=1) == labels).float().mean().item()
    return {"steps": step, "accuracy": accuracy, "loss": loss.item()}
