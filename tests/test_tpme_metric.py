"""TPME on hand-computed cases, its guards and weight validation."""
import pytest

from tpme.errors import TpmeError
from tpme.metrics.tpme import Entry, Weights, min_max, score


def test_paper_formula_by_hand():
    entries = [Entry("a", 100, 1000, 40), Entry("b", 50, 10, 20), Entry("c", 10, 100, 10)]
    s = {x.method: x for x in score(entries, Weights(0.45, 0.1, 0.45))}
    # t: (100,50,10) -> (1, 40/90, 0); p: (1000,10,100) -> (1, 0, 90/990); m: (40,20,10) -> (1, 1/3, 0)
    assert s["a"].tpme == pytest.approx(1.0)
    assert s["b"].t_norm == pytest.approx(40 / 90)
    assert s["b"].tpme == pytest.approx(0.45 * 40 / 90 + 0.45 / 3)
    assert s["c"].tpme == pytest.approx(0.1 * 90 / 990)
    assert [s[m].rank for m in "cba"] == [1, 2, 3]


def test_single_method_and_constant_columns_score_zero():
    assert score([Entry("only", 5, 5, 5)])[0].tpme == 0.0
    both = score([Entry("a", 5, 1, 7), Entry("b", 5, 2, 7)], Weights(0.5, 0.0, 0.5))
    assert [x.tpme for x in both] == [0.0, 0.0]
    assert [x.rank for x in both] == [1, 1]
    assert min_max([3.0, 3.0]) == [0.0, 0.0]


@pytest.mark.parametrize("text", ["0.6,0.6,0.6", "0.5,0.5", "-0.1,0.6,0.5", "a,b,c", "nan,0.5,0.5", "unknown-preset"])
def test_invalid_weights_are_refused(text):
    with pytest.raises(TpmeError):
        Weights.parse(text)


def test_weight_presets():
    assert Weights.parse("paper").as_tuple() == (0.45, 0.1, 0.45)
    assert Weights.parse("0.2,0.3,0.5").memory == 0.5


def test_negative_measurement_is_refused():
    with pytest.raises(TpmeError, match="epoch time"):
        score([Entry("a", -1, 1, 1), Entry("b", 1, 1, 1)])
