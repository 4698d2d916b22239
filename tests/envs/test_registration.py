"""Registration is plain data: every task has a time limit, and ids resolve without PyBullet."""

import gymnasium as gym
from vla_sim.envs.registration import ENV_IDS, EPISODE_STEPS, max_steps

import vla_sim  # noqa: F401  (registers the ids)


def test_every_task_has_one_time_limit_and_multitask_gets_the_longest():
    from vla_sim.envs.tasks import TASKS

    assert set(EPISODE_STEPS) == set(TASKS)
    assert max_steps("multitask") == max(EPISODE_STEPS.values())


def test_registered_specs_carry_the_task_time_limits():
    for env_id, kwargs in ENV_IDS.items():
        assert gym.spec(env_id).max_episode_steps == max_steps(kwargs["task"])
