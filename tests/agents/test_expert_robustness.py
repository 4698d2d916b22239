"""benchmarks/expert_robustness.py: the perception noise an expert is rolled under."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from expert_robustness import PerceptionNoise, noisy_action


def _state():
    return {"ee_position": [0.4, 0.0, 0.1], "roles": {"object": "cube", "destination": "zone"},
            "objects": {"cube": {"position": [0.5, 0.0, 0.02]},
                        "zone": {"position": [0.6, 0.1, 0.0]}}}


def test_no_noise_reads_the_true_positions_and_leaves_the_input_alone():
    state = _state()
    out = PerceptionNoise(0.0, 0.0)(state)
    for name in state["objects"]:
        np.testing.assert_allclose(out["objects"][name]["position"],
                                   state["objects"][name]["position"])
    assert out is not state and state["objects"]["cube"]["position"] == [0.5, 0.0, 0.02]


def test_the_bias_is_fixed_within_an_episode_and_redrawn_after_reset():
    noise = PerceptionNoise(0.02, 0.0, seed=3)
    first = noise(_state())["objects"]["cube"]["position"]
    again = noise(_state())["objects"]["cube"]["position"]
    np.testing.assert_allclose(first, again)
    assert first[2] == 0.02  # height untouched: only x, y are perturbed
    noise.reset()
    assert not np.allclose(noise(_state())["objects"]["cube"]["position"], first)


def test_jitter_changes_every_reading():
    noise = PerceptionNoise(0.0, 0.01, seed=0)
    a, b = (noise(_state())["objects"]["zone"]["position"] for _ in range(2))
    assert not np.allclose(a, b)


def test_negative_noise_is_refused():
    with pytest.raises(ValueError, match="bias and jitter"):
        PerceptionNoise(-0.01, 0.0)


def test_the_expert_plans_on_the_perturbed_state():
    class Recorder:
        env = type("Env", (), {"privileged_state": staticmethod(_state)})()

        def plan(self, s):
            self.seen = s
            return np.array([2.0, 0.0, 0.0, -1.0])

    expert = Recorder()
    action = noisy_action(expert, PerceptionNoise(0.05, 0.0, seed=1))
    assert action.dtype == np.float32 and action[0] == 1.0  # clipped to the action box
    assert not np.allclose(expert.seen["objects"]["cube"]["position"][:2], [0.5, 0.0])
