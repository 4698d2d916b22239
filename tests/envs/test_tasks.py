"""Instructions name objects that exist, uniquely, and that the success predicate checks."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest

import vla_sim  # noqa: F401
from vla_sim.language.instructions import COLOR_WORDS, HELDOUT_COMBOS, NOUN_WORDS
from vla_sim.randomization.config import LEVELS

TASK_IDS = {"reach": "vla_sim/Reach-v0", "push": "vla_sim/Push-v0",
            "pick_place": "vla_sim/PickPlace-v0", "stack": "vla_sim/Stack-v0"}
SEEDS = range(12)


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` contains '<colour synonym> <noun synonym>' for object ``name``."""
    color, shape = name.split("_")[-2:]
    pattern = r"\b(%s) (%s)\b" % ("|".join(COLOR_WORDS[color]), "|".join(NOUN_WORDS[shape]))
    return re.search(pattern, text) is not None


@pytest.fixture(scope="module", params=list(TASK_IDS))
def env_for_task(request):
    envs = {split: gym.make(TASK_IDS[request.param], image_size=16, randomization="high",
                            instruction_split=split) for split in ("train", "heldout")}
    yield request.param, envs
    for e in envs.values():
        e.close()


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_instruction_names_existing_unique_objects_the_predicate_checks(env_for_task, split):
    task, envs = env_for_task
    env = envs[split]
    for seed in SEEDS:
        obs, info = env.reset(seed=seed)
        s = env.unwrapped.privileged_state()
        text, roles, objects = obs["instruction"], s["roles"], s["objects"]
        assert s["task"] == task and s["instruction"] == text
        expected_roles = {"object"} if task == "reach" else {"object", "destination"}
        assert set(roles) == expected_roles
        for role, name in roles.items():
            assert name in objects, (role, name, list(objects))
            assert mentions(text, name), (text, name)
            color, shape = name.split("_")[-2:]
            # unique: no other object in the scene (distractors included) has the same colour
            # and shape class, so the phrase picks exactly one object
            same = [o for o, d in objects.items() if (d["color"], d["shape"]) == (color, shape)]
            assert same == [name], (text, same)
        # the phrases name nothing but the role objects
        named = [o for o in objects if mentions(text, o)]
        assert sorted(named) == sorted(roles.values()), (text, named)
        # the instruction and roles come from the task instance the predicate reads
        inst = env.unwrapped.instance
        assert inst.roles == roles and inst.instruction == text and inst.split == split
        target = tuple(roles["object"].split("_")[-2:])
        if split == "heldout":
            assert target in HELDOUT_COMBOS, (text, target)
        else:
            movable = {tuple(n.split("_")[-2:]) for n, d in objects.items()
                       if d["shape"] in ("cube", "cylinder", "sphere")}
            assert not movable & HELDOUT_COMBOS, (text, movable & HELDOUT_COMBOS)


def test_success_predicate_follows_the_target_object():
    """Teleporting the *named* object into the named tray succeeds; another object does not."""
    env = gym.make("vla_sim/PickPlace-v0", image_size=16, randomization="none")
    u = env.unwrapped
    for seed in range(4):
        env.reset(seed=seed)
        roles = u.privileged_state()["roles"]
        tray = u.sim.get_position(roles["destination"])
        other = next(n for n in u.privileged_state()["objects"]
                     if n not in roles.values() and n.split("_")[-1] in ("cube", "cylinder",
                                                                          "sphere"))
        u.sim.set_pose(other, (tray[0], tray[1], 0.03))
        _, _, terminated, _, info = env.step(np.array([0, 0, 1.0, 1.0]))
        assert not info["is_success"] and not terminated
        u.sim.set_pose(other, (0.3, 0.5, 0.03))
        u.sim.set_pose(roles["object"], (tray[0], tray[1], 0.03))
        for _ in range(3):
            _, reward, terminated, _, info = env.step(np.array([0, 0, 1.0, 1.0]))
        assert info["is_success"] and terminated and reward > 0
    env.close()


@pytest.mark.parametrize("task", list(TASK_IDS) + ["multitask"])
def test_instruction_and_roles_do_not_depend_on_randomization_level(task):
    env_id = TASK_IDS.get(task, "vla_sim/MultiTask-v0")
    env = gym.make(env_id, image_size=16)
    u = env.unwrapped
    for seed in range(6):
        seen = set()
        for level in LEVELS:
            u.set_randomization(level)
            obs, info = env.reset(seed=seed)
            seen.add((obs["instruction"], info["task"],
                      tuple(sorted(u.privileged_state()["roles"].items())),
                      tuple(o.name for o in u.instance.objects)))
        assert len(seen) == 1, seen
    env.close()


def test_multitask_draws_every_task():
    env = gym.make("vla_sim/MultiTask-v0", image_size=16)
    tasks = {env.reset(seed=s)[1]["task"] for s in range(40)}
    assert tasks == set(TASK_IDS)
    env.close()


def test_task_option_plays_the_named_task_and_replays_with_the_seed():
    env = gym.make("vla_sim/MultiTask-v0", image_size=16)
    drawn = {env.reset(seed=s)[1]["task"] for s in range(8)}
    for task in TASK_IDS:
        firsts = []
        for _ in range(2):
            obs, info = env.reset(seed=3, options={"task": task})
            assert info["task"] == task and env.unwrapped.task.name == task
            firsts.append(obs["image"].copy())
        np.testing.assert_array_equal(*firsts)
        # its randomization sample replays it, as for a drawn task
        again, _ = env.reset(seed=3, options={"task": task, "randomization": info["randomization"]})
        np.testing.assert_array_equal(again["image"], firsts[0])
    # the seed's own task is the episode the seed gives without the option
    obs, info = env.reset(seed=5)
    forced, _ = env.reset(seed=5, options={"task": info["task"]})
    np.testing.assert_array_equal(forced["image"], obs["image"])
    assert len(drawn) > 1
    env.close()


def test_task_option_names_the_env_s_tasks_when_refused():
    env = gym.make("vla_sim/Reach-v0", image_size=16)
    with pytest.raises(ValueError, match=r"task='push'.*\['reach'\]"):
        env.reset(seed=0, options={"task": "push"})
    env.close()
