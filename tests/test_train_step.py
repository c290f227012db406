"""The training step's fp16 path: loss scaling through an enabled GradScaler (run here on the
CPU, where torch supports it), unscaling before clipping, and a skipped step on overflow."""
from __future__ import annotations

import pytest
import torch

from tpme.device import grad_scaler
from tpme.training.step import train_step

CPU = torch.device("cpu")


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))

    def forward(self, x):
        return (self.w * x).sum()


def _step(x, scaler, clip=None):
    model = _Linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = train_step(model, x, opt, scaler, CPU, "fp32", grad_clip=clip)
    return model.w.detach().clone(), loss


def _enabled_scaler(scale=2.0**12):
    return torch.amp.GradScaler("cpu", init_scale=scale, growth_interval=1000)


def test_scaled_step_updates_as_the_unscaled_one_and_clips_true_gradients():
    x = torch.tensor([3.0, 4.0, 0.0])  # gradient (3, 4, 0): norm 5
    plain, _ = _step(x, torch.amp.GradScaler("cpu", enabled=False))
    scaled, loss = _step(x, _enabled_scaler())
    assert torch.allclose(scaled, plain) and float(loss.detach()) == pytest.approx(-5.0)
    clipped, _ = _step(x, _enabled_scaler(), clip=1.0)  # unscaled first: the true norm 5 is clipped to 1
    assert torch.allclose(clipped, torch.tensor([1.0, -2.0, 3.0]) - 0.1 * torch.tensor([0.6, 0.8, 0.0]), atol=1e-6)


def test_overflowing_gradients_skip_the_step_and_back_off_the_scale():
    scaler = _enabled_scaler(2.0**12)
    w, _ = _step(torch.tensor([float("inf"), 1.0, 1.0]), scaler)
    assert torch.equal(w, torch.tensor([1.0, -2.0, 3.0]))  # the optimizer step was skipped
    assert scaler.get_scale() == 2.0**11


@pytest.mark.parametrize("device,precision,enabled", [("cuda", "fp16", True), ("cuda", "bf16", False), ("cuda", "fp32", False), ("cpu", "fp16", False)])
def test_grad_scaler_is_enabled_for_fp16_on_cuda_only(monkeypatch, device, precision, enabled):
    made = []
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device_type, enabled: made.append((device_type, enabled)))
    grad_scaler(torch.device(device), precision)
    assert made == [(device, enabled)]
