"""What a training step needs beyond the model: torch.compile with its fallback, CUDA graph capture,
per-step metrics kept on the device, and the step-rate measure of the loader probe."""
