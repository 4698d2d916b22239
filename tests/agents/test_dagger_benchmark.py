"""benchmarks/dagger_benchmark.py: which envs a policy is evaluated on, the pooled mean, the
image size reaching the policy, and the dataset's name (one per image size, distractor share and
expert)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from dagger_benchmark import _table_cells, build_parser, dagger_config, data_tag, eval_env_ids


def test_multitask_is_evaluated_on_each_of_its_four_tasks():
    assert eval_env_ids("vla_sim/MultiTask-v0", None) == [
        "vla_sim/Reach-v0", "vla_sim/Push-v0", "vla_sim/PickPlace-v0", "vla_sim/Stack-v0"]


def test_a_single_task_is_evaluated_on_itself_unless_eval_envs_names_others():
    assert eval_env_ids("vla_sim/Reach-v0", None) == ["vla_sim/Reach-v0"]
    assert eval_env_ids("vla_sim/Reach-v0", "push, Stack") == ["vla_sim/Push-v0",
                                                                "vla_sim/Stack-v0"]


def _cell(k, n):
    return SimpleNamespace(success_rate=k / n, ci_low=0.0, ci_high=1.0, episodes=n, successes=k)


def test_the_pooled_row_is_the_mean_of_the_tasks_with_a_wilson_interval():
    rows = _table_cells({"vla_sim/Reach-v0": [_cell(90, 100), _cell(80, 100)],
                         "vla_sim/Push-v0": [_cell(10, 100), _cell(0, 100)]})
    assert [name for name, _ in rows] == ["Reach-v0", "Push-v0", "mean of the tasks"]
    (train, heldout) = rows[-1][1]
    assert train[0] == 0.5 and train[3] == 200 and train[1] < 0.5 < train[2]
    assert heldout[0] == 0.4


def test_one_env_gets_no_pooled_row():
    assert len(_table_cells({"vla_sim/Reach-v0": [_cell(1, 2), _cell(0, 2)]})) == 1


def test_image_size_reaches_the_policy_and_names_its_own_dataset():
    cams = ("front", "wrist")
    default = build_parser().parse_args(["--env", "Push"])
    large = build_parser().parse_args(["--env", "Push", "--image-size", "96"])
    assert dagger_config(default, cams).bc.policy.image_size == 64
    assert dagger_config(large, cams).bc.policy.image_size == 96
    assert data_tag(default, cams) == "Push_200_n0.3_front+wrist_low_panda"  # as before the flag
    assert data_tag(large, cams) == "Push_200_n0.3_front+wrist_low_panda_96px"
    # A policy size other than the demonstrations' is refused before any work.
    odd = build_parser().parse_args(["--image-size", "96", "bc.policy.image_size=32"])
    with pytest.raises(ValueError, match="contradicts --image-size 96"):
        dagger_config(odd, cams)


def test_another_expert_names_its_own_dataset():
    cams = ("front", "wrist")
    gated = build_parser().parse_args(
        ["--env", "Reach", "--expert", "vla_sim.agents.experts:make_gated_expert"])
    assert data_tag(gated, cams) == "Reach_200_n0.3_front+wrist_low_panda_make_gated_expert"
    assert build_parser().parse_args(["--env", "Reach"]).expert is None  # the default expert
