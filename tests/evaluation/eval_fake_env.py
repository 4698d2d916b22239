"""A tiny gymnasium env that follows the vla-sim env contract, for evaluator tests that must not
depend on PyBullet: a point "end effector" moves towards a target drawn from the reset seed.

A second, other-coloured point is on the table too; the ``swap_object`` reset option names it
instead (same scene), as the real env's language probe does."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import register

FAKE_ID = f"{__name__}:vla_sim_fake/Reach-v0"
CHARSET = "abcdefghijklmnopqrstuvwxyz "
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


class FakeReachEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, robot="panda", image_size=32, cameras=("front",), randomization="low",
                 instruction_split="train", render_mode=None, render_size=64):
        self.image_size, self.render_size, self.render_mode = image_size, render_size, render_mode
        self.split, self.level = instruction_split, randomization
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
            "state": spaces.Box(-np.inf, np.inf, (22,), np.float32),
            "instruction": spaces.Text(max_length=200, charset=CHARSET),
        })
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)

    def _image(self, size):
        img = np.full((size, size, 3), 40, np.uint8)
        for pos, colour in ((self.other, COLOURS[self.other_colour]),
                            (self.target, COLOURS[self.colour]), (self.ee, (255, 255, 255))):
            x, y = (np.clip(pos[:2], -0.5, 0.5) + 0.5) * (size - 1)
            img[max(0, int(y) - 1):int(y) + 2, max(0, int(x) - 1):int(x) + 2] = colour
        return img

    def _obs(self):
        state = np.zeros(22, np.float32)
        state[:3] = self.ee
        return {"image": self._image(self.image_size), "state": state,
                "instruction": self.instruction}

    def _info(self):
        info = {"is_success": self._success(), "task": "reach", "instruction": self.instruction,
                "randomization": dict(self.sample), "seed": self.seed_}
        if self.swapped:
            info["original_task"] = {"instruction": self.original_instruction,
                                     "roles": {"object": self.other_colour},
                                     "is_success": self._success(self.other)}
        return info

    def _success(self, target=None):
        target = self.target if target is None else target
        return bool(np.linalg.norm(self.ee - target) < 0.03)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seed_ = seed
        rng = self.np_random
        self.ee = np.zeros(3)
        direction = rng.normal(size=3)
        self.target = 0.3 * direction / np.linalg.norm(direction)
        self.colour = str(rng.choice(sorted(COLOURS)))
        verb = "reach" if self.split == "train" else "move to"
        self.instruction = f"{verb} the {self.colour} target"
        self.sample = {"target": self.target.round(6).tolist(), "colour": self.colour,
                       "level": self.level}
        direction = rng.normal(size=3)
        self.other = 0.3 * direction / np.linalg.norm(direction)
        self.other_colour = str(rng.choice(sorted(set(COLOURS) - {self.colour})))
        self.swapped = bool((options or {}).get("swap_object"))
        self.original_target = self.target  # what the unswapped instruction names
        if self.swapped:
            self.original_instruction = self.instruction
            self.target, self.other = self.other, self.target
            self.colour, self.other_colour = self.other_colour, self.colour
            self.instruction = f"{verb} the {self.colour} target"
        return self._obs(), self._info()

    def step(self, action):
        action = np.clip(np.asarray(action, np.float64), -1, 1)
        self.ee = self.ee + 0.025 * action[:3]
        success = self._success()
        reward = -float(np.linalg.norm(self.ee - self.target)) + (1.0 if success else 0.0)
        return self._obs(), reward, success, False, self._info()

    total_renders = 0  # class-wide: counts renders across env instances in this process

    def render(self):
        FakeReachEnv.total_renders += 1
        return self._image(self.render_size)

    def privileged_state(self):
        return {"ee_pos": self.ee.tolist(), "target_pos": self.target.tolist()}


class FakeExpert:
    def __init__(self, env):
        self.env = env.unwrapped

    def act(self, obs, deterministic=True):
        s = self.env.privileged_state()
        delta = (np.asarray(s["target_pos"]) - np.asarray(s["ee_pos"])) / 0.025
        return np.append(np.clip(delta, -1, 1), 1.0).astype(np.float32)


def make_fake_expert(env):
    return FakeExpert(env)


class LanguageBlindPolicy:
    """Goes to the object the unswapped instruction names whatever the instruction says: what
    a policy that ignores language (or binds the wrong object) does under the swap probe."""

    def __init__(self, env):
        self.env = env.unwrapped

    def act(self, obs, deterministic=True):
        delta = (self.env.original_target - self.env.ee) / 0.025
        return np.append(np.clip(delta, -1, 1), 1.0).astype(np.float32)


def make_language_blind_policy(env):
    return LanguageBlindPolicy(env)


class StallingPolicy:
    """Its mode holds still (a stall); its samples head for the target at a random speed drawn
    from the generator ``reset(seed)`` seeds: what ``sample_actions`` changes."""

    def __init__(self, env):
        self.env = env.unwrapped
        self.rng = np.random.default_rng(0)

    def reset(self, seed=None):
        self.rng = np.random.default_rng(seed)

    def act(self, obs, deterministic=True):
        if deterministic:
            return np.array([0, 0, 0, 1], np.float32)
        delta = (self.env.target - self.env.ee) / 0.025 * self.rng.uniform(0.3, 1.0)
        return np.append(np.clip(delta, -1, 1), 1.0).astype(np.float32)


def make_stalling_policy(env):
    return StallingPolicy(env)


class NoProbeReachEnv(FakeReachEnv):
    """Ignores reset options: an env that does not support the swap probe."""

    def reset(self, *, seed=None, options=None):
        return super().reset(seed=seed)


class WrongSpacePolicy:
    """Declares a 3-d action space and a 16x16 image: does not fit the fake env."""

    def __init__(self, env):
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (16, 16, 3), np.uint8),
            "state": spaces.Box(-np.inf, np.inf, (22,), np.float32)})
        self.action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)

    def act(self, obs, deterministic=True):
        return np.zeros(3, np.float32)


def make_wrong_space_policy(env):
    return WrongSpacePolicy(env)


register(id="vla_sim_fake/Reach-v0", entry_point=FakeReachEnv, max_episode_steps=30)
register(id="vla_sim_fake/NoProbeReach-v0", entry_point=NoProbeReachEnv, max_episode_steps=30)
NO_PROBE_ID = f"{__name__}:vla_sim_fake/NoProbeReach-v0"

# Import paths that worker processes can resolve (whatever name pytest gave this module).
FAKE_EXPERT = f"{__name__}:make_fake_expert"
WRONG_POLICY = f"{__name__}:make_wrong_space_policy"
BLIND_POLICY = f"{__name__}:make_language_blind_policy"
STALLING_POLICY = f"{__name__}:make_stalling_policy"
