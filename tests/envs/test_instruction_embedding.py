"""InstructionEmbedding: Text instruction -> fixed-size arrays, encoded once per episode."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from vla_sim.envs.wrappers.instruction_embedding import InstructionEmbedding

from vla_sim.language.encoder import HashingTextEncoder

INSTRUCTIONS = ["pick up the red cube and put it in the blue bowl", "reach the green cube",
                "stack the yellow cube on the purple cube"]


class TextObsEnv(gym.Env):
    """Tiny env with the vla-sim observation layout (image, state, instruction Text)."""

    metadata = {"render_modes": [], "render_fps": 20}

    def __init__(self, image_size: int = 16):
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
            "state": spaces.Box(-np.inf, np.inf, (22,), np.float32),
            "instruction": spaces.Text(max_length=200, charset="abcdefghijklmnopqrstuvwxyz "),
        })
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._t = 0

    def _obs(self):
        image = np.full(self.observation_space["image"].shape, self._t % 255, np.uint8)
        state = np.full(22, self._t, np.float32)
        return {"image": image, "state": state, "instruction": self._instruction}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._instruction = INSTRUCTIONS[int(self.np_random.integers(len(INSTRUCTIONS)))]
        return self._obs(), {"instruction": self._instruction}

    def step(self, action):
        self._t += 1
        return self._obs(), 0.0, False, self._t >= 5, {"is_success": False}


class CountingEncoder(HashingTextEncoder):
    def __init__(self):
        super().__init__(dim=384)
        self.feature_calls = 0

    def features(self, instructions, max_tokens):
        self.feature_calls += 1
        return super().features(instructions, max_tokens)


def test_spaces_replace_text_with_boxes():
    env = InstructionEmbedding(TextObsEnv(), encoder=HashingTextEncoder(), max_tokens=12)
    space = env.observation_space
    assert "instruction" not in space.spaces
    assert space["instruction_embedding"].shape == (384,)
    assert space["instruction_tokens"].shape == (12, 384)
    assert space["instruction_mask"].shape == (12,)
    obs, _ = env.reset(seed=0)
    assert space.contains(obs)
    assert obs["instruction_mask"].sum() >= 3


def test_tokens_false_emits_only_the_pooled_vector():
    env = InstructionEmbedding(TextObsEnv(), encoder=HashingTextEncoder(), tokens=False)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"image", "state", "instruction_embedding"}


def test_instruction_is_encoded_once_per_episode():
    encoder = CountingEncoder()
    env = InstructionEmbedding(TextObsEnv(), encoder=encoder)
    obs, info = env.reset(seed=3)
    for _ in range(4):
        obs, *_ = env.step(env.action_space.sample())
    assert encoder.feature_calls == 1
    expected = encoder.features([info["instruction"]], 16)["instruction_embedding"][0]
    np.testing.assert_array_equal(obs["instruction_embedding"], expected)


def test_observations_are_copies_safe_to_modify():
    env = InstructionEmbedding(TextObsEnv(), encoder=HashingTextEncoder())
    obs, _ = env.reset(seed=0)
    obs["instruction_embedding"][:] = 0
    obs2, *_ = env.step(env.action_space.sample())
    assert np.abs(obs2["instruction_embedding"]).sum() > 0


def test_passes_sb3_env_checker():
    from stable_baselines3.common.env_checker import check_env

    check_env(InstructionEmbedding(TextObsEnv(), encoder=HashingTextEncoder()), warn=False)


def test_rejects_env_without_instruction():
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="instruction"):
        InstructionEmbedding(env, encoder=HashingTextEncoder())


def test_real_env_with_sb3_checker_and_real_encoder():
    from stable_baselines3.common.env_checker import check_env

    import vla_sim  # noqa: F401

    env = InstructionEmbedding(gym.make("vla_sim/Reach-v0", image_size=64))
    try:
        check_env(env, warn=False)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
    finally:
        env.close()
