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


class _FixedTower(torch.nn.Module):
    """Item embeddings given by the test: candidate c is row c."""

    def __init__(self, emb: torch.Tensor):
        super().__init__()
        self.emb = torch.nn.Parameter(emb)

    def forward(self, items):
        return self.emb


class _FixedUsers(torch.nn.Module):
    """The user state at every position is the same given vector."""

    def __init__(self, user: torch.Tensor):
        super().__init__()
        self.user = user

    def forward(self, x, valid):
        return self.user.expand(x.shape[0], x.shape[1], -1)


def _loss(emb, user, log_pop, own, seq_index):
    from tpme.datasets.batching import TrainBatch
    from tpme.scenarios.recommendation.model import Recommender

    model = Recommender(_FixedTower(emb), emb.shape[1], 4)
    model.user_encoder = _FixedUsers(user)
    batch = TrainBatch(torch.tensor(seq_index), torch.tensor(own), torch.tensor(log_pop), None)
    with torch.no_grad():
        return float(model(batch))


def _ce(logits: list[float], target: int) -> float:
    z = torch.tensor(logits, dtype=torch.float64)
    return float(-(z[target] - torch.logsumexp(z, 0)))


# 3 candidates in a 1-d embedding, user vector 1: candidate c scores emb[c]
EMB = torch.tensor([[5.0], [1.0], [2.0]])
USER = torch.tensor([1.0])


def test_own_items_other_than_the_target_are_masked_from_the_softmax():
    # sequence: candidate 0 then target candidate 1; candidate 0 is the user's own item, 2 is not
    loss = _loss(EMB, USER, [0.0, 0.0, 0.0], [[True, True, False]], [[0, 1]])
    assert loss == pytest.approx(_ce([1.0, 2.0], 0), rel=1e-5)  # only candidates 1 (target) and 2 compete
    # the masked own item's score does not matter; a foreign candidate's does
    assert _loss(torch.tensor([[50.0], [1.0], [2.0]]), USER, [0.0] * 3, [[True, True, False]], [[0, 1]]) == pytest.approx(loss, rel=1e-5)
    assert _loss(torch.tensor([[5.0], [1.0], [4.0]]), USER, [0.0] * 3, [[True, True, False]], [[0, 1]]) > loss + 1.0
    # without the own mark candidate 0 competes (and dominates)
    assert _loss(EMB, USER, [0.0] * 3, [[False, True, False]], [[0, 1]]) == pytest.approx(_ce([5.0, 1.0, 2.0], 1), rel=1e-5)


def test_log_q_correction_subtracts_log_popularity_from_every_logit():
    log_pop = [0.3, 1.5, -0.7]
    loss = _loss(EMB, USER, log_pop, [[False, True, False]], [[0, 1]])
    assert loss == pytest.approx(_ce([5.0 - 0.3, 1.0 - 1.5, 2.0 + 0.7], 1), rel=1e-5)
    # a more popular target is corrected down (higher loss), a more popular negative up (lower loss)
    assert _loss(EMB, USER, [0.3, 2.5, -0.7], [[False, True, False]], [[0, 1]]) > loss
    assert _loss(EMB, USER, [0.3, 1.5, 0.7], [[False, True, False]], [[0, 1]]) < loss


def test_padding_positions_do_not_count_in_the_loss():
    one = _loss(EMB, USER, [0.0] * 3, [[True, True, False]], [[0, 1]])
    padded = _loss(EMB, USER, [0.0] * 3, [[True, True, False]], [[-1, -1, 0, 1]])
    assert padded == pytest.approx(one, rel=1e-6)
