"""How one training step runs, for the harness and the estimator alike: the step function
(autocast, gradient scaler, clipping, optimizer), the optimizer, CUDA-graph capture."""
