import pytest

from vla_sim.evaluation.stats import intervals_overlap, wilson_interval


def test_wilson_matches_hand_computed_8_of_10():
    # p=0.8, z=1.96: centre (0.8 + 1.9208/10) / 1.38416 = 0.71674,
    # half-width 1.96/1.38416 * sqrt(0.016 + 0.009604) = 0.22658.
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.49016, abs=1e-4)
    assert high == pytest.approx(0.94332, abs=1e-4)


def test_wilson_edges_stay_inside_unit_interval():
    assert wilson_interval(0, 5)[0] == 0.0
    assert wilson_interval(5, 5)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="k=6, n=5"):
        wilson_interval(6, 5)


def test_overlap():
    assert intervals_overlap((0.1, 0.5), (0.5, 0.9))
    assert not intervals_overlap((0.1, 0.4), (0.5, 0.9))
