"""Each RL run reports its throughput (env steps/s, time per update, wall-clock split) in a log
line and summary.json, and draws its success curve into the run folder."""

import itertools
import json
import logging
import time

import pytest
import torch
from test_ppo import _cfg, tiny_bc_checkpoint

from vla_sim.agents.training.rl_common import RunStats, format_throughput
from vla_sim.utils.plots import read_curve_csv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SUMMARY_KEYS = {"env_steps", "wall_s", "env_steps_per_s", "rollout_env_steps_per_s", "updates",
                "update_s_mean", "rollout_s", "update_s", "eval_s", "rollout_fraction",
                "update_fraction", "eval_fraction", "other_fraction", "curve"}


def test_time_inside_an_evaluation_is_not_charged_to_the_rollout_around_it(tmp_path):
    stats = RunStats(tmp_path, "test")
    with stats.timed("rollout"):
        time.sleep(0.05)
        with stats.timed("eval"):
            time.sleep(0.1)
    token = stats.begin()
    time.sleep(0.02)
    stats.end("update", token)
    assert 0.045 < stats.seconds["rollout"] < 0.09
    assert stats.seconds["eval"] >= 0.1 and stats.seconds["update"] >= 0.02
    stats.rollout_steps, stats.updates = 100, 1
    summary = stats.summary(100)
    assert set(summary) == SUMMARY_KEYS
    assert summary["rollout_env_steps_per_s"] == pytest.approx(100 / stats.seconds["rollout"],
                                                               rel=1e-2)
    assert abs(sum(summary[f"{k}_fraction"] for k in ("rollout", "update", "eval", "other"))
               - 1.0) < 1e-3
    assert "env steps/s while collecting" in format_throughput("t", summary)


def test_curve_points_carry_intervals_and_survive_a_resume(tmp_path):
    stats = RunStats(tmp_path, "test")
    stats.add_point(0, 0.2, 10)
    stats.add_point(64, 0.5, 10)
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC
    points = read_curve_csv(tmp_path / "curve.csv")
    assert [p["env_steps"] for p in points] == [0, 64]
    assert points[1]["ci_low"] < 0.5 < points[1]["ci_high"] and points[1]["episodes"] == 10
    saved = stats.state()
    resumed = RunStats(tmp_path, "test", state=saved)
    assert resumed.wall() >= saved["wall_s"]  # the wall-clock axis continues
    resumed.add_point(128, 0.7, 10)
    assert [p["env_steps"] for p in read_curve_csv(tmp_path / "curve.csv")] == [0, 64, 128]


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_rl_run_writes_summary_curve_and_logs_throughput(algo, tmp_path, caplog):
    torch.set_num_threads(1)
    bc = tiny_bc_checkpoint(tmp_path / "bc")
    caplog.set_level(logging.INFO, logger="vla_sim")
    if algo == "ppo":
        from vla_sim.agents.training.ppo import train_ppo

        result = train_ppo(_cfg(total_env_steps=96, eval_every_env_steps=32, freeze_vision=True),
                           tmp_path / "run", init=bc)
    else:
        from test_reinforce import _tiny_cfg

        from vla_sim.agents.training.reinforce import train_reinforce

        result = train_reinforce(_tiny_cfg(reward="dense", eval_every_env_steps=20),
                                 tmp_path / "run", init=bc)
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["trainer"] == algo
    assert summary["env_steps"] == result.steps and summary["updates"] >= 1
    assert summary["rollout_env_steps_per_s"] > 0 and summary["update_s_mean"] > 0
    assert result.summary["env_steps"] == result.steps
    points = read_curve_csv(run / "curve.csv")
    assert len(points) == len(result.eval_history) >= 3
    assert [int(p["env_steps"]) for p in points] == [s for s, _ in result.eval_history]
    assert all(a["wall_s"] <= b["wall_s"] for a, b in itertools.pairwise(points))
    assert (run / "curves.png").read_bytes()[:8] == PNG_MAGIC
    assert any("env steps/s while collecting" in r.getMessage() for r in caplog.records)
