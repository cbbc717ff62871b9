"""Batches built one ahead on a side CUDA stream, so that building batch i + 1 (index, crop,
flip, jitter, normalise: datasets/transforms/batched_*.py) runs on the GPU alongside training
step i instead of between steps on the same stream.

The rules that make this safe: the consumer's stream waits for the side stream before it
touches a batch (wait_stream), and each batch tensor is marked as used on the consumer's stream
(record_stream), so the caching allocator does not hand its memory to the side stream's next
batch while a step still reads it.
"""
import torch


def built_ahead(batches, device: torch.device):
    """Yield the items of the iterator `batches` (dicts of tensors on the CUDA `device`), each
    produced on a side stream while the caller works on the one before; the values are
    those of `batches`, in its order."""
    current, side = torch.cuda.current_stream(device), torch.cuda.Stream(device)
    side.wait_stream(current)  # whatever the current stream wrote before (e.g. the split's upload)

    def build_next():
        with torch.cuda.stream(side):
            return next(batches, None)
    upcoming = build_next()
    while upcoming is not None:
        current.wait_stream(side)
        batch = upcoming
        for tensor in batch.values():
            tensor.record_stream(current)
        upcoming = build_next()
        yield batch
