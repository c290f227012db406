"""GPU-free estimation: peak memory by category, FLOPs and predicted time of a training step, from fake tensors."""
