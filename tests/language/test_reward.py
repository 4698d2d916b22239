"""Language reward: goal parsing, potential ordering on every task, exact telescoping."""

import gymnasium as gym
import numpy as np
import pytest
from vla_sim.agents.experts import make_expert
from vla_sim.envs.wrappers.language_reward import LanguageRewardWrapper

import vla_sim  # noqa: F401
from vla_sim.language.encoder import HashingTextEncoder
from vla_sim.language.instructions import TEMPLATES, make_instruction
from vla_sim.language.reward import Goal, LanguageReward, parse_instruction

DEST = {"reach": None, "push": ("orange", "zone"), "pick_place": ("blue", "tray"),
        "stack": ("purple", "cube")}
ENVS = {"reach": "vla_sim/Reach-v0", "push": "vla_sim/Push-v0",
        "pick_place": "vla_sim/PickPlace-v0", "stack": "vla_sim/Stack-v0"}


@pytest.fixture(scope="module")
def encoder():
    return HashingTextEncoder()


@pytest.mark.parametrize("task", sorted(TEMPLATES))
def test_parse_instruction_recovers_roles_for_every_template(task):
    rng = np.random.default_rng(0)
    for split in ("train", "heldout"):
        for _ in range(30):
            ins = make_instruction(task, split, ("red", "cube"), DEST[task], rng)
            assert parse_instruction(ins.text) == Goal(task, ("red", "cube"), DEST[task]), ins


@pytest.mark.parametrize("task", sorted(ENVS))
def test_potential_is_higher_at_success_than_at_start(task, encoder):
    reward = LanguageReward(encoder=encoder)
    env = gym.make(ENVS[task], image_size=16, randomization="none")
    try:
        for seed in (0, 1):
            obs, _ = env.reset(seed=seed)
            start = reward.potential(env.unwrapped.privileged_state())
            expert = make_expert(env)
            for _ in range(150):
                obs, _, terminated, truncated, info = env.step(expert.act(obs))
                if terminated or truncated:
                    break
            assert info["is_success"], f"expert failed {task} seed {seed}"
            end = reward.potential(env.unwrapped.privileged_state())
            assert end == pytest.approx(1.0) and start < end - 0.2, (task, start, end)
    finally:
        env.close()


def _obj(color, shape, pos, half):
    return {"position": list(pos), "yaw": 0.0, "color": color, "shape": shape,
            "half_height": half}


def _pick_state(cube_xy, ee=(0.3, 0.3, 0.3), holding=None):
    return {"instruction": "pick up the crimson block and put it in the azure container",
            "objects": {"red_cube": _obj("red", "cube", (*cube_xy, 0.02), 0.02),
                        "blue_tray": _obj("blue", "tray", (0.1, 0.1, 0.0), 0.0),
                        "purple_tray": _obj("purple", "tray", (-0.1, -0.1, 0.0), 0.0),
                        "yellow_cube": _obj("yellow", "cube", (0.1, -0.15, 0.02), 0.02)},
            "ee_position": list(ee), "holding": holding}


def test_roles_grounding_ranks_right_bowl_over_wrong_bowl(encoder):
    reward = LanguageReward(encoder=encoder)
    right = reward.potential(_pick_state((0.1, 0.1)))
    wrong = reward.potential(_pick_state((-0.1, -0.1)))
    near = reward.potential(_pick_state((0.25, 0.0), ee=(0.25, 0.0, 0.05)))
    assert right == pytest.approx(1.0)
    assert wrong == 0.0  # the wrong bowl is never a kept fact
    assert 0.0 < near < right


def test_minilm_potential_orders_progress():
    """With the real encoder: nothing < near the cube < cube in the right bowl."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few short sentences: more threads only contend on a busy CPU
    try:
        from vla_sim.language.encoder import get_text_encoder

        enc = get_text_encoder()  # the packaged MiniLM weights: a failure here is a failure
        reward = LanguageReward(encoder=enc)
        far = reward.potential(_pick_state((0.25, 0.0)))
        near = reward.potential(_pick_state((0.25, 0.0), ee=(0.25, 0.0, 0.05)))
        done = reward.potential(_pick_state((0.1, 0.1)))
    finally:
        torch.set_num_threads(threads)
    assert far < near < done


@pytest.mark.parametrize("policy", ["expert", "random"])
def test_shaping_telescopes_exactly(policy, encoder):
    gamma = 0.9
    env = LanguageRewardWrapper(
        gym.make("vla_sim/Reach-v0", image_size=16, randomization="none", max_episode_steps=25),
        mode="language", reward=LanguageReward(encoder=encoder, gamma=gamma), gamma=gamma)
    try:
        obs, _ = env.reset(seed=3)
        phi0 = env.language_reward.potential(env.unwrapped.privileged_state())
        act = make_expert(env).act if policy == "expert" else (
            lambda o, rng=np.random.default_rng(0): rng.uniform(-1, 1, 4))
        total, discount, t = 0.0, 1.0, 0
        while True:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            terms = info["reward_terms"]
            assert reward == pytest.approx(terms["success"] + terms["shaping"], abs=1e-12)
            total += discount * terms["shaping"]
            discount *= gamma
            t += 1
            if terminated or truncated:
                break
        phi_t = 0.0 if terminated else terms["potential"]
        assert total == pytest.approx(gamma ** t * phi_t - phi0, abs=1e-12)
        if policy == "expert":
            assert terminated and phi0 < 0.5
    finally:
        env.close()


def test_wrapper_modes(encoder):
    base = gym.make("vla_sim/Reach-v0", image_size=16, randomization="none", max_episode_steps=3)
    for mode in ("sparse", "dense"):
        env = LanguageRewardWrapper(base, mode=mode)
        env.reset(seed=0)
        _, r, _, _, info = env.step(np.zeros(4, np.float32))
        t = info["reward_terms"]
        assert r == (t["success"] if mode == "sparse" else t["env"])
    with pytest.raises(ValueError, match="unknown reward mode"):
        LanguageRewardWrapper(base, mode="shaped")
    base.close()


def test_softmax_aggregate_is_below_max_and_bad_arguments_are_named(encoder):
    state = _pick_state((0.25, 0.0), ee=(0.25, 0.0, 0.05), holding="red_cube")
    hard = LanguageReward(encoder=encoder).potential(state)
    soft = LanguageReward(encoder=encoder, aggregate="softmax", temperature=0.05).potential(state)
    assert 0.0 < soft <= hard
    with pytest.raises(ValueError, match="grounding must be one of"):
        LanguageReward(encoder=encoder, grounding="pooled")
