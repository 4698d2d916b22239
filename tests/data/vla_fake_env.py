"""A tiny deterministic stand-in for the vla_sim envs, with the same observation/info contract.

Used by the data tests so they run without PyBullet; ``gymnasium.make("vla_fake_env:VlaFakeReach-v0")``
imports this module (also inside spawned collection workers, which inherit ``sys.path``).
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

CHARSET = "abcdefghijklmnopqrstuvwxyz "


class FakeReachEnv(gymnasium.Env):
    """Move a point to a goal. A sample with ``blocked=True`` freezes x, so the expert fails
    (unless the goal's x is already close): the dataset tests need some failing attempts."""

    metadata = {"render_modes": [], "render_fps": 20}

    def __init__(self, robot: str = "panda", image_size: int = 32, cameras=("front",),
                 randomization: str = "low", instruction_split: str = "train"):
        self.image_size, self.cameras = image_size, tuple(cameras)
        obs = {"image": spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
               "state": spaces.Box(-np.inf, np.inf, (22,), np.float32), "instruction": spaces.Text(200, charset=CHARSET)}
        if "wrist" in self.cameras:
            obs["wrist_image"] = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Box(-1, 1, (4,), np.float32)
        self.robot = robot

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        sample = (options or {}).get("randomization")
        if sample is None:
            sample = {"goal": self.np_random.uniform(-0.25, 0.25, 3).round(4).tolist(),
                      "color": self.np_random.integers(40, 200, 3).tolist(),
                      "blocked": bool(self.np_random.random() < 0.3)}
        self.sample = sample
        self.goal = np.asarray(sample["goal"], np.float64)
        self.ee = np.zeros(3)
        self.instruction = f"reach the {'red' if sample['color'][0] > 120 else 'blue'} target"
        return self._obs(), self._info()

    def step(self, action):
        a = np.clip(np.asarray(action, np.float64), -1, 1)
        delta = 0.025 * a[:3]
        if self.sample["blocked"]:
            delta[0] = 0.0
        self.ee = self.ee + delta
        success = bool(np.linalg.norm(self.ee - self.goal) < 0.02)
        reward = float(-np.linalg.norm(self.ee - self.goal))
        return self._obs(), reward, success, False, self._info(success)

    def privileged_state(self) -> dict:
        return {"ee": self.ee.tolist(), "goal": self.goal.tolist()}

    def _info(self, success: bool = False) -> dict:
        return {"is_success": success, "task": "reach", "instruction": self.instruction,
                "randomization": dict(self.sample), "seed": None}

    def _render(self, shift: int) -> np.ndarray:
        s = self.image_size
        yy, xx = np.mgrid[:s, :s]
        img = np.empty((s, s, 3), np.uint8)
        img[:] = np.asarray(self.sample["color"], np.uint8)
        cx, cy = (self.ee[:2] / 0.4 + 0.5) * (s - 1)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy - shift) ** 2) / (2 * (s / 10) ** 2))
        img = np.clip(img * (1 - blob[..., None]) + 255 * blob[..., None], 0, 255).astype(np.uint8)
        return img

    def _obs(self) -> dict:
        state = np.zeros(22, np.float32)
        state[:3] = self.ee
        state[3:7] = (0, 0, 0, 1)
        state[7] = 0.04
        obs = {"image": self._render(0), "state": state, "instruction": self.instruction}
        if "wrist" in self.cameras:
            obs["wrist_image"] = self._render(3)
        return obs


class FakeExpert:
    def __init__(self, env):
        self.env = env

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        p = self.env.unwrapped.privileged_state()
        d = (np.asarray(p["goal"]) - np.asarray(p["ee"])) / 0.025
        return np.append(np.clip(d, -1, 1), 1.0).astype(np.float32)


def make_fake_expert(env) -> FakeExpert:
    return FakeExpert(env)


ENV_ID = "vla_fake_env:VlaFakeReach-v0"
EXPERT = "vla_fake_env:make_fake_expert"

if "VlaFakeReach-v0" not in gymnasium.registry:
    gymnasium.register("VlaFakeReach-v0", entry_point=f"{__name__}:FakeReachEnv", max_episode_steps=30)
