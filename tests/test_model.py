"""The recommender learns; fft changes backbone weights, frozen leaves them bit-identical."""
import numpy as np
import pytest
import torch

from tpme.scenarios.recommendation.training import build_training
from tpme.scenarios.recommendation.config import preset
from tpme.datasets.bundle import DataBundle
from tpme.methods.registry import get_method


def build(method: str, bundle: DataBundle):
    cfg = preset("ci").replace(embed_dim=32, lr=1e-3, batch_size=16)
    setup = build_training(cfg, get_method(method), bundle, torch.device("cpu"))
    return setup.model, setup.trainer, setup.loader, setup.model.tower


@pytest.fixture(scope="module")
def bundle(ci_bundle_path):
    return DataBundle.load(ci_bundle_path)


def test_loss_falls_on_synthetic_data(bundle):
    model, trainer, loader, _ = build("fft", bundle)
    model.train()
    losses = [float(trainer.step(b)) for epoch in range(6) for b in loader.epoch(epoch)]
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    assert last < first - 0.3, (first, last)


def test_loss_masks_own_items_and_ignores_padding(bundle):
    model, _, loader, _ = build("frozen", bundle)
    model.eval()
    batch = next(loader.epoch(0))
    with torch.no_grad():
        loss = model(batch)
    assert torch.isfinite(loss)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("method,changes", [("fft", True), ("frozen", False)])
def test_backbone_weights_change_only_when_trained(bundle, method, changes):
    model, trainer, loader, tower = build(method, bundle)
    before = {"text": snapshot(tower.text), "image": snapshot(tower.image)}
    heads_before = snapshot(model.tower.heads)
    model.train()
    batches = loader.forever()
    for _ in range(3):
        trainer.step(next(batches))
    for name, module in (("text", tower.text), ("image", tower.image)):
        after = snapshot(module)
        identical = all(torch.equal(before[name][k], after[k]) for k in after)
        assert identical is not changes, f"{method}: {name} backbone identical={identical}"
    assert not all(torch.equal(heads_before[k], v) for k, v in snapshot(model.tower.heads).items())


def test_frozen_trains_only_heads_and_user_encoder(bundle):
    model, _, _, _ = build("frozen", bundle)
    trainable = {n.split(".")[0] + "." + n.split(".")[1] if n.startswith("tower.") else n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"tower.heads", "user_encoder"}
