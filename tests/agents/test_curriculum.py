"""Curriculum scheduler: advances exactly at the threshold, logs, stops at the last stage."""

import logging

import numpy as np
import pytest

from vla_sim.agents.training.curriculum import (
    CurriculumCallback,
    CurriculumConfig,
    CurriculumScheduler,
    CurriculumStage,
    strength_stages,
)


def test_advances_at_threshold_not_below_and_stops_at_last_stage(caplog):
    sched = CurriculumScheduler(CurriculumConfig(stages=strength_stages("high", [0.0, 0.5, 1.0]),
                                                 threshold=0.7))
    assert not sched.update(0.7 - 1e-9, step=10)
    assert sched.stage_index == 0
    with caplog.at_level(logging.INFO, logger="vla_sim.agents.training.curriculum"):
        assert sched.update(0.7, step=20)
    assert sched.stage_index == 1 and "stage 0 -> 1" in caplog.text
    assert sched.history[0].step == 20 and sched.history[0].success_rate == 0.7
    assert sched.randomization().color_jitter == pytest.approx(0.5)
    assert sched.update(1.0, step=30) and sched.finished
    assert not sched.update(1.0, step=40)
    assert sched.stage_index == 2 and len(sched.history) == 2


def test_min_evals_per_stage_and_state_roundtrip():
    sched = CurriculumScheduler(CurriculumConfig(threshold=0.5, min_evals_per_stage=2))
    assert not sched.update(0.9) and sched.update(0.9)
    other = CurriculumScheduler(CurriculumConfig(threshold=0.5, min_evals_per_stage=2))
    other.load_state_dict(sched.state_dict())
    assert other.stage.level == "low" and other.history == sched.history


class _FakeEnv:
    def __init__(self):
        self.unwrapped = self
        self.randomization = None

    def set_randomization(self, cfg):
        self.randomization = cfg


class _FakeVecEnv:
    def __init__(self, n=2):
        self.envs = [_FakeEnv() for _ in range(n)]

    def env_method(self, name, *args):
        return [getattr(e, name)(*args) for e in self.envs]


def test_bc_eval_fn_and_sb3_callback_push_the_new_randomization():
    sched = CurriculumScheduler(CurriculumConfig(threshold=0.5))
    seen = []
    eval_fn = sched.bc_eval_fn(lambda policy, stage: seen.append(stage.level) or 0.6)
    assert eval_fn(object()) == 0.6 and sched.stage.level == "low" and seen == ["none"]

    sched = CurriculumScheduler(CurriculumConfig(threshold=0.5))
    venv, extra = _FakeVecEnv(), _FakeEnv()
    cb = CurriculumCallback(sched, eval_freq=2, extra_envs=[extra])

    class Model:  # the parts of an SB3 algorithm the callback touches
        ep_success_buffer = [1.0, 1.0, 0.0]
        num_timesteps = 0
        logger = type("Logger", (), {"record": lambda *a, **k: None})()

        def get_env(self):
            return venv

    cb.init_callback(Model())
    cb._on_training_start()
    assert venv.envs[0].randomization.name == "none"
    cb.n_calls = 1
    cb._on_step()
    assert sched.stage_index == 0  # not an eval step
    cb.n_calls = 2
    cb._on_step()
    assert sched.stage_index == 1
    assert all(e.randomization.name == "low" for e in venv.envs) and extra.randomization.name == "low"
    assert Model.ep_success_buffer == []


def test_stage_validation():
    with pytest.raises(ValueError, match="unknown randomization level"):
        CurriculumStage("extreme")
    with pytest.raises(ValueError, match="threshold"):
        CurriculumConfig(threshold=1.5)


def test_bc_data_curriculum_evaluates_at_the_current_stage_and_advances():

    from vla_sim.agents.policies import VLAPolicyConfig
    from vla_sim.agents.training.bc import BCConfig
    from vla_sim.agents.training.curriculum import train_bc_curriculum
    from vla_sim.data.demos import DemoArrays
    from vla_sim.language.encoder import HashingTextEncoder

    small = dict(image_size=16, channels=[8], image_features=16, attn_dim=16, attn_heads=2,
                 lang_features=16, state_hidden=16, trunk_hidden=[16], max_tokens=8)
    rng = np.random.default_rng(0)

    def demos(instr):
        return DemoArrays.from_steps({"image": rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)},
                                     rng.normal(size=(8, 22)), rng.uniform(-1, 1, (8, 4)),
                                     [instr] * 8, np.repeat([0, 1], 4))

    sched = CurriculumScheduler(CurriculumConfig(stages=[CurriculumStage("none"),
                                                         CurriculumStage("low")], threshold=0.5))
    seen = []
    bc = BCConfig(steps=6, batch_size=4, device="cpu", warmup_steps=0, policy=VLAPolicyConfig(**small))
    res = train_bc_curriculum([demos("stage zero"), demos("stage one")], sched,
                              lambda p, stage: seen.append(stage.level) or 1.0, bc, eval_every_grad_steps=2,
                              encoder=HashingTextEncoder())
    assert seen == ["none", "low"] and sched.stage_index == 1
    assert [e[:2] for e in res.evaluations] == [(2, 0), (4, 1)]
    assert sched.history[0].step == 2 and len(res.train_losses) == 6
