"""Weight sensitivity on hand-built cases whose winning regions are known analytically."""
from __future__ import annotations

import json

import numpy as np
import pytest
from records_factory import record, write_jsonl

from tpme.cli import main
from tpme.errors import TpmeError
from tpme.metrics.sensitivity import dense_ranks, kendall_tau_b, sensitivity, simplex_grid
from tpme.metrics.tpme import Entry, Weights


def test_grid_covers_the_simplex() -> None:
    grid, idx = simplex_grid(0.05)
    assert len(grid) == 21 * 22 // 2
    assert np.allclose(grid.sum(axis=1), 1) and (grid >= 0).all()
    assert (idx.sum(axis=1) == 20).all()
    with pytest.raises(TpmeError, match="does not divide"):
        simplex_grid(0.3)
    with pytest.raises(TpmeError):
        simplex_grid(0)


def test_three_methods_each_best_on_one_axis_split_the_simplex_in_thirds() -> None:
    # normalised terms A = (0,1,1), B = (1,0,1), C = (1,1,0): TPME_A = 1 - a1 etc., so the winner
    # is the largest weight; the three regions are congruent, each 1/3 of the simplex, and on the
    # symmetric grid (boundary ties split equally) each share is exactly 1/3.
    entries = [Entry("A", 0, 1, 1), Entry("B", 1, 0, 1), Entry("C", 1, 1, 0)]
    s = sensitivity(entries, Weights(0.8, 0.1, 0.1), 0.05)
    assert s.shares == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}, abs=1e-12)
    assert s.chosen_winners == ("A",)
    # every boundary lies within one step of where the two largest weights are equal
    for b in s.boundaries:
        a = sorted(b.weights, reverse=True)
        assert a[0] - a[1] <= 0.05 + 1e-9  # midway between grid points one step apart
    # at the paper weights A and C tie (a1 = a3)
    assert sensitivity(entries, Weights.parse("paper"), 0.05).chosen_winners == ("A", "C")


def test_asymmetric_case_matches_the_exact_grid_count_and_the_area() -> None:
    # A = (0,0,1), B = (1,1,0): TPME_A = a3, TPME_B = 1 - a3; A wins where a3 < 1/2 (3/4 of the area).
    entries = [Entry("A", 0, 0, 1), Entry("B", 1, 1, 0)]
    s = sensitivity(entries, Weights.parse("paper"), 0.05)
    # n = 20: points with k < 10 number sum_{k=0..9} (21 - k) = 165; the 11 points at k = 10 are ties
    assert s.shares["A"] == pytest.approx((165 + 11 / 2) / 231, abs=1e-12)
    assert s.shares["B"] == pytest.approx((231 - 165 - 11 + 11 / 2) / 231, abs=1e-12)
    fine = sensitivity(entries, Weights.parse("paper"), 0.002)
    assert fine.shares["A"] == pytest.approx(0.75, abs=0.002)
    assert {b.weights[2] for b in s.boundaries} == {0.475, 0.525}
    near = s.boundary_summary()[0]
    assert near["nearest"][2] == pytest.approx(0.475)


def test_rank_stability() -> None:
    entries = [Entry("A", 0, 0, 1), Entry("B", 1, 1, 0)]
    s = sensitivity(entries, Weights(0.5, 0.2, 0.3), 0.05)
    # two methods: tau is +1 where A leads, -1 where B leads, 0 against the tie line
    assert s.tau_min == -1.0
    assert s.identical_share == pytest.approx(165 / 231)
    assert s.tau_mean == pytest.approx((165 - (231 - 165 - 11)) / 231)


def test_kendall_tau_b_and_dense_ranks() -> None:
    ref = np.array([1, 2, 3])
    assert kendall_tau_b(np.array([[1, 2, 3], [3, 2, 1]]), ref).tolist() == [1.0, -1.0]
    assert kendall_tau_b(np.array([[1, 1, 2]]), ref)[0] == pytest.approx(2 / np.sqrt(6))
    assert kendall_tau_b(np.array([[1, 1, 1]]), np.array([1, 1, 1]))[0] == 1.0
    assert kendall_tau_b(np.array([[1, 1, 1]]), ref)[0] == 0.0
    assert dense_ranks(np.array([[0.3, 0.1, 0.3, 0.2]])).tolist() == [[3, 1, 3, 2]]


def test_single_method_wins_everywhere() -> None:
    s = sensitivity([Entry("A", 1, 1, 1)], Weights.parse("paper"), 0.1)
    assert s.shares == {"A": 1.0} and s.boundaries == [] and s.tau_min == 1.0


def test_cli_json(tmp_path, capsys) -> None:
    mib = 2**20
    path = write_jsonl(tmp_path / "results.jsonl", [record("A", 1.0, 10, 3 * mib), record("B", 3.0, 30, 1 * mib), record("C", 2.0, 20, 2 * mib)])
    assert main(["sensitivity", str(path), "--step", "0.1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["points"] == 66 and sum(data["shares"].values()) == pytest.approx(1.0)
    assert data["chosen_winner"] and "tie_rule" in data
    assert main(["sensitivity", str(path), "--step", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "share of the simplex" in out and "Kendall tau" in out and "ties:" in out
    assert main(["sensitivity", str(path), "--step", "0.3"]) == 2
