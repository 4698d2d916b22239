"""The ``swap_object`` reset option (the evaluator's language probe): the same scene with the
instruction naming another object of the scene, success judged on that object."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest

import vla_sim  # noqa: F401
from vla_sim.language.instructions import COLOR_WORDS, NOUN_WORDS

TASK_IDS = {"reach": "vla_sim/Reach-v0", "push": "vla_sim/Push-v0",
            "pick_place": "vla_sim/PickPlace-v0", "stack": "vla_sim/Stack-v0"}
SWAP = {"swap_object": True}
MOVABLE = ("cube", "cylinder", "sphere")


def mentions(text: str, name: str) -> bool:
    color, shape = name.split("_")[-2:]
    pattern = r"\b(%s) (%s)\b" % ("|".join(COLOR_WORDS[color]), "|".join(NOUN_WORDS[shape]))
    return re.search(pattern, text) is not None


@pytest.mark.parametrize("task", list(TASK_IDS))
def test_swapped_reset_shows_the_same_scene_with_an_instruction_naming_another_object(task):
    env = gym.make(TASK_IDS[task], image_size=32, cameras=("front", "wrist"),
                   randomization="high")
    u = env.unwrapped
    try:
        for seed in range(5):
            obs, info = env.reset(seed=seed)
            roles, template = dict(u.instance.roles), u.instance.template
            obs2, info2 = env.reset(seed=seed, options=SWAP)
            s = u.privileged_state()
            new = s["roles"]
            # the scene, pixel for pixel, and the randomization sample are the unswapped ones
            for key in ("image", "wrist_image", "state"):
                assert np.array_equal(obs[key], obs2[key]), key
            assert info2["randomization"] == info["randomization"]
            # another movable object of the scene is named; the destination is kept
            assert new["object"] != roles["object"] and new["object"] in s["objects"]
            assert new["object"].split("_")[-1] in MOVABLE
            assert new.get("destination") == roles.get("destination")
            text = obs2["instruction"]
            assert text == info2["instruction"] == s["instruction"] != obs["instruction"]
            assert mentions(text, new["object"]) and not mentions(text, roles["object"])
            assert "destination" not in new or mentions(text, new["destination"])
            assert u.instance.template == template  # same sentence, other object
            assert info2["original_task"] == {"instruction": obs["instruction"], "roles": roles,
                                              "is_success": False}
            # deterministic per seed; an unswapped reset after it is the plain episode again
            assert env.reset(seed=seed, options=SWAP)[0]["instruction"] == text
            again, info3 = env.reset(seed=seed)
            assert again["instruction"] == obs["instruction"] and "original_task" not in info3
    finally:
        env.close()


@pytest.mark.parametrize("task", list(TASK_IDS))
def test_success_under_swap_is_judged_on_the_named_object(task):
    """The scripted expert reads the roles from privileged_state, so under the swap it does the
    swapped task: success, while the original task's predicate stays False."""
    from vla_sim.agents.experts import make_expert

    env = gym.make(TASK_IDS[task], image_size=16, randomization="none")
    u = env.unwrapped
    try:
        for seed in range(2):
            obs, info = env.reset(seed=seed, options=SWAP)
            named = u.privileged_state()["roles"]["object"]
            assert np.allclose(u.task.goal_state()[:3], u.sim.get_position(named))
            expert = make_expert(env)
            for _ in range(300):
                obs, reward, terminated, truncated, info = env.step(expert.act(obs))
                if terminated or truncated:
                    break
            assert info["is_success"] and terminated and reward > 0
            assert info["original_task"]["is_success"] is False
            assert u.task.is_success_for(u.instance.roles) is True
            assert u.task.is_success_for(info["original_task"]["roles"]) is False
    finally:
        env.close()
