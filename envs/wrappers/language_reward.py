"""Choose the training reward: sparse success, the task's dense reward, or language shaping.

Rewards by ``mode`` (``success`` is ``info["is_success"]`` as 0/1, ``env`` the wrapped env's
reward, ``shaping`` the potential-based language term of :class:`LanguageReward`):

- ``sparse``:   success_weight * success
- ``dense``:    dense_weight * env               (the env must use ``reward_type="dense"``)
- ``language``: success_weight * success + language_weight * shaping
- ``mixed``:    dense_weight * env + language_weight * shaping

``info["reward_terms"]`` carries every term (``env``, ``success``, ``potential``, ``shaping``) so
a run can log them whatever the mode. Observations and spaces pass through unchanged.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

REWARD_MODES = ("sparse", "dense", "language", "mixed")


class LanguageRewardWrapper(gym.Wrapper):
    """Replace the env's reward by the one ``mode`` names (see the module docstring).

    Args:
        env: a vla_sim env (``env.unwrapped.privileged_state()`` is read in language modes).
        mode: one of ``sparse``, ``dense``, ``language``, ``mixed``.
        reward: a :class:`~vla_sim.language.reward.LanguageReward`; default one is built with
            ``gamma`` (and the shared text encoder) when the mode needs it.
        gamma: discount of the shaping term; must equal the RL algorithm's.
    """

    def __init__(self, env: gym.Env, mode: str = "language", reward: Any = None,
                 gamma: float = 0.99, success_weight: float = 1.0, dense_weight: float = 1.0,
                 language_weight: float = 1.0):
        super().__init__(env)
        if mode not in REWARD_MODES:
            raise ValueError(f"unknown reward mode {mode!r}; valid modes: {list(REWARD_MODES)}")
        if mode in ("dense", "mixed") and getattr(env.unwrapped, "reward_type", "dense") != "dense":
            raise ValueError(f"reward mode {mode!r} needs the env's dense reward; make the env "
                             f"with reward_type='dense' (got {env.unwrapped.reward_type!r})")
        self.mode = mode
        self.success_weight, self.dense_weight = float(success_weight), float(dense_weight)
        self.language_weight = float(language_weight)
        self.uses_language = mode in ("language", "mixed")
        if self.uses_language and reward is None:
            from vla_sim.language.reward import LanguageReward

            reward = LanguageReward(gamma=gamma)
        self.language_reward = reward
        self._phi = 0.0

    def _potential(self) -> float:
        return self.language_reward.potential(self.env.unwrapped.privileged_state())

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self.uses_language:
            self.language_reward.prepare(self.env.unwrapped.privileged_state()["instruction"])
            self._phi = self._potential()
        return obs, info

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        success = float(bool(info.get("is_success", False)))
        terms = {"env": float(env_reward), "success": success, "potential": 0.0, "shaping": 0.0}
        if self.uses_language:
            phi_next = self._potential()
            terms["potential"] = phi_next
            terms["shaping"] = self.language_reward.shaping(self._phi, phi_next, terminated)
            self._phi = phi_next
        if self.mode == "sparse":
            reward = self.success_weight * success
        elif self.mode == "dense":
            reward = self.dense_weight * terms["env"]
        elif self.mode == "language":
            reward = self.success_weight * success + self.language_weight * terms["shaping"]
        else:
            reward = self.dense_weight * terms["env"] + self.language_weight * terms["shaping"]
        info = dict(info)
        info["reward_terms"] = terms
        return obs, float(reward), terminated, truncated, info


__all__ = ["LanguageRewardWrapper", "REWARD_MODES"]
