"""HR@K / NDCG@K math on hand-computed cases, history masking, the popularity baseline."""
import math

import numpy as np
import pytest
import torch

from tpme.scenarios.recommendation.evaluate import popularity_baseline
from tpme.datasets.bundle import DataBundle
from tpme.scenarios.recommendation.ranking import hit_ndcg, mask_history, target_ranks


def test_ranks_count_higher_scores_and_half_the_ties():
    scores = torch.tensor([[0.0, 0.9, 0.5, 0.1, 0.7], [0.0, 0.2, 0.2, 0.2, 0.2]])
    # user 0: target item 2 (0.5); 0.9 and 0.7 are higher -> rank 2
    # user 1: target item 1 tied with 3 others -> 3 // 2 = 1
    assert target_ranks(scores, torch.tensor([2, 1])).tolist() == [2, 1]


def test_hit_and_ndcg_by_hand():
    hit, ndcg = hit_ndcg(torch.tensor([0, 2, 9, 10]), k=10)
    assert hit.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert ndcg.tolist() == pytest.approx([1.0, 1 / math.log2(4), 1 / math.log2(11), 0.0])


def test_history_masked_except_target_and_padding_column():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    masked = mask_history(scores.clone(), torch.tensor([[0, 1, 3]]), torch.tensor([3]))
    assert masked[0, 0] == float("-inf") and masked[0, 1] == float("-inf")
    assert masked[0, 3] == 2.0  # the target stays even though it is in the history
    # target 3 (2.0): item 2 (3.0) is the only unmasked higher one -> rank 1
    assert target_ranks(masked, torch.tensor([3])).tolist() == [1]


def test_popularity_baseline_by_hand():
    # items 1..4; training parts: [1,2,1] [1,3,1] -> counts 1:4, 2:1, 3:1, 4:0
    seqs = [np.array([1, 2, 1, 4, 2]), np.array([1, 3, 1, 2, 4])]
    bundle = DataBundle("hand", np.zeros((5, 4), dtype=np.int32), seqs, 3, {"kind": "none"})
    pop = popularity_baseline(bundle).details
    # valid: user 0 history [1,2,1] target 4 -> 1,2 masked, 3 (1) above 4 (0) -> rank 1
    #        user 1 history [1,3,1] target 2 -> 1,3 masked -> rank 0
    assert pop["valid"]["hr@10"] == 1.0
    assert pop["valid"]["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1.0) / 2)
    # test: user 0 history [2,1,4] target 2 (in history, kept): 1 and 4 masked, 3 ties with 2 -> rank 0
    #       user 1 history [3,1,2] target 4: all others masked -> rank 0
    assert pop["test"]["ndcg@10"] == pytest.approx(1.0)
