"""Training steps replayed from a CUDA graph (train.cuda_graph): the host launches one graph
instead of some thousand kernels per step, which at batch 64 on a fast GPU is the difference
between a GPU that waits for Python and one that does not (docs/performance.md).

GraphedStep wraps the Trainer's eager step, `step(images, targets) -> (loss, logits, skipped)`
(forward in autocast, loss, backward, optional gradient clipping, optimizer step):
* its first WARMUP_STEPS calls run eagerly on a side stream (real training steps: cuDNN picks
  its kernels, the optimizer creates its state), as CUDA graph capture requires;
* the next call captures the step for that batch's shape into a graph, with static input
  buffers and the lr of every param group as a device tensor that is refilled before each
  replay (so the schedule needs no re-capture; the param groups keep their float lr for the
  scheduler, logging and checkpoints), then replays it;
* later calls copy the batch into the static buffers, refill the lr and replay: the same kernels
  on the same parameters, gradients and optimizer state as an eager step;
* a batch of another shape (an epoch's smaller last batch) runs eagerly.
Where a graph cannot be used, `refusal` says why and the Trainer runs eagerly with a note: a
GradScaler (fp16 checks gradients for inf on the host side of its step), torch.compile, data
parallelism, or not a CUDA device. A capture that fails is undone the same way: one note, then
eager steps (the failed capture executed nothing, so no step is lost or doubled).
"""
import sys

import torch

WARMUP_STEPS = 3  # eager steps on a side stream before capture


def refusal(device: torch.device, use_scaler: bool, compiled: bool, parallel: bool):
    """Why the training step cannot be captured in a CUDA graph (words), or None when it can."""
    if device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if use_scaler:
        return "fp16's GradScaler decides on the host whether to step"
    if compiled:
        return "train.compile=True compiles the model instead"
    if parallel:
        return "DistributedDataParallel's gradient hooks are not captured here"
    return None


def graphed_step(wanted: bool, device: torch.device, optimizer, step, why_not):
    """A GraphedStep of `step` when `wanted` (train.cuda_graph) and `why_not` (refusal()) is None, else
    None: eager steps, with a note on a CUDA device saying why."""
    if not wanted:
        return None
    if why_not is None:
        return GraphedStep(step, optimizer)
    if device.type == "cuda":
        print(f"note: train.cuda_graph: eager steps, {why_not}")
    return None


class GraphedStep:
    """`step` (the Trainer's eager step) captured once per run in a CUDA graph and replayed.

    Args:
        step: callable (images [B, C, H, W], targets [B] int64 or [B, K] float) -> (loss 0-d fp32,
            logits [B, K], skipped None): one optimisation step.
        optimizer: the optimizer `step` steps; its param groups' "lr" floats are read before
            every replay.
    Calling it returns what `step` returns; after a replay the loss is a fresh tensor and the
    logits a buffer that the next call overwrites (use them before then).
    """

    def __init__(self, step, optimizer):
        self.step, self.optimizer = step, optimizer
        self.calls, self.graph, self.failed, self.side = 0, None, False, None
        self.static_images = self.static_targets = self.outputs = self.lr_tensors = None

    def __call__(self, images, targets):
        self.calls += 1
        if self.failed or (self.graph is not None and not self._fits(images, targets)):
            return self.step(images, targets)
        if self.calls <= WARMUP_STEPS:
            return self._on_side_stream(images, targets)
        if self.graph is None and not self._capture(images, targets):
            return self.step(images, targets)
        self.static_images.copy_(images)
        self.static_targets.copy_(targets)
        for tensor, group in zip(self.lr_tensors, self.optimizer.param_groups):
            tensor.fill_(group["lr"])
        self.graph.replay()
        loss, logits, skipped = self.outputs
        return loss.clone(), logits, skipped

    def _fits(self, images, targets) -> bool:
        return (images.shape == self.static_images.shape and images.stride() == self.static_images.stride()
                and targets.shape == self.static_targets.shape and targets.dtype == self.static_targets.dtype)

    def _on_side_stream(self, images, targets):
        """An eager step on a side stream, ordered after and before the current stream's work."""
        current = torch.cuda.current_stream()
        self.side = self.side or torch.cuda.Stream()
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            result = self.step(images, targets)
        current.wait_stream(self.side)
        return result

    def _capture(self, images, targets) -> bool:
        """Capture the step for the shapes of `images` and `targets`; False (with a note) if it fails."""
        self.static_images, self.static_targets = images.clone(), targets.clone()
        self.lr_tensors = [torch.tensor(float(group["lr"]), device=images.device)
                           for group in self.optimizer.param_groups]
        floats = [group["lr"] for group in self.optimizer.param_groups]
        graph = torch.cuda.CUDAGraph()
        try:
            for group, tensor in zip(self.optimizer.param_groups, self.lr_tensors):
                group["lr"] = tensor
            with torch.cuda.graph(graph):
                self.outputs = self.step(self.static_images, self.static_targets)
        except Exception as error:  # e.g. an operation that syncs with the host inside the step
            self.failed = True
            lines = str(error).strip().splitlines()
            print(f"note: CUDA graph capture failed ({type(error).__name__}: {lines[0][:200] if lines else ''}); "
                  f"training continues with eager steps", file=sys.stderr)
            return False
        finally:
            for group, value in zip(self.optimizer.param_groups, floats):
                group["lr"] = value
        self.graph = graph
        return True
