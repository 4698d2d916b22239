"""Shared fixtures for evaluation tests: a fake env that follows the env contract (fast, no
PyBullet) and EvalConfigs sized for a quick test run."""

from __future__ import annotations

import eval_fake_env
import pytest
from eval_fake_env import FAKE_EXPERT  # noqa: E402

from vla_sim.evaluation.evaluator import EvalConfig


@pytest.fixture
def fake_config(tmp_path):
    """``fake_config(**overrides)`` -> an EvalConfig on the fake Reach env."""

    def make(**overrides) -> EvalConfig:
        kwargs = dict(env_ids=[eval_fake_env.FAKE_ID], episodes=4, splits=["train"],
                      randomization=["low"], image_size=32, render_size=48,
                      expert_factory=FAKE_EXPERT, video_dir=None, record="none")
        kwargs.update(overrides)
        return EvalConfig(**kwargs)

    return make
