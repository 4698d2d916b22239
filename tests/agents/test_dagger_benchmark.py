"""benchmarks/dagger_benchmark.py: which envs a policy is evaluated on, and the pooled mean."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from dagger_benchmark import _table_cells, eval_env_ids


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
