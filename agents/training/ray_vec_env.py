"""An SB3 ``VecEnv`` whose environments live in Ray actors, one long-lived actor per env.

The RL trainers' env workers on a Ray cluster (``backend="ray"``): each actor builds its env
(PyBullet client, text encoder, reward wrappers) once and then steps it for the whole run. The
protocol is SB3's ``SubprocVecEnv`` message for message (auto-reset with
``terminal_observation``, ``TimeLimit.truncated``, seeds and options used once), so a run gives
the same transitions with either. Actors are placed and given their CPU share by
:class:`vla_sim.utils.workers.RayWorkers`; Ray is imported only when one is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)
from stable_baselines3.common.vec_env.subproc_vec_env import _stack_obs

# ----------------------------------------------------------------- inside an actor (one env each)
_ENV: dict[str, gym.Env] = {}


def _make(env_fn: Callable[[], gym.Env]) -> tuple[gym.Space, gym.Space]:
    from stable_baselines3.common.vec_env.patch_gym import _patch_env

    _ENV["env"] = _patch_env(env_fn())
    return _ENV["env"].observation_space, _ENV["env"].action_space


def _step(action: np.ndarray) -> tuple[Any, float, bool, dict, dict]:
    env = _ENV["env"]
    observation, reward, terminated, truncated, info = env.step(action)
    done = terminated or truncated
    info["TimeLimit.truncated"] = truncated and not terminated
    reset_info: dict = {}
    if done:  # keep the final observation, then reset (as SubprocVecEnv's worker does)
        info["terminal_observation"] = observation
        observation, reset_info = env.reset()
    return observation, reward, done, info, reset_info


def _reset(seed: int | None, options: dict) -> tuple[Any, dict]:
    return _ENV["env"].reset(seed=seed, **({"options": options} if options else {}))


def _get_attr(name: str) -> Any:
    return _ENV["env"].get_wrapper_attr(name)


def _has_attr(name: str) -> bool:
    try:
        _ENV["env"].get_wrapper_attr(name)
        return True
    except AttributeError:
        return False


def _set_attr(name: str, value: Any) -> None:
    setattr(_ENV["env"], name, value)


def _env_method(name: str, args: tuple, kwargs: dict) -> Any:
    return _ENV["env"].get_wrapper_attr(name)(*args, **kwargs)


def _is_wrapped(wrapper_class: type[gym.Wrapper]) -> bool:
    from stable_baselines3.common.env_util import is_wrapped

    return is_wrapped(_ENV["env"], wrapper_class)


def _render() -> Any:
    return _ENV["env"].render()


def _close() -> None:
    env = _ENV.pop("env", None)
    if env is not None:
        env.close()


# ------------------------------------------------------------------------------- the vector env
class RayVecEnv(VecEnv):
    """``len(env_fns)`` envs, each in its own Ray actor (``address``: the cluster to join; empty:
    a local Ray started on demand). ``env_fns`` must be picklable (module-level functions or
    ``functools.partial`` of them), as for ``SubprocVecEnv``."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], address: str = ""):
        from vla_sim.utils.workers import RayWorkers

        self.waiting, self.closed = False, False
        self._workers = RayWorkers(len(env_fns), address=address)
        self._refs: list[Any] = []
        try:
            spaces = self._workers.get([self._workers.call(i, _make, fn)
                                        for i, fn in enumerate(env_fns)])
        except BaseException:
            self._workers.close()
            raise
        super().__init__(len(env_fns), *spaces[0])

    def _all(self, fn: Callable[..., Any], *args: Any, indices: VecEnvIndices = None) -> list[Any]:
        return self._workers.get([self._workers.call(i, fn, *args)
                                  for i in self._get_indices(indices)])

    def step_async(self, actions: np.ndarray) -> None:
        self._refs = [self._workers.call(i, _step, a) for i, a in enumerate(actions)]
        self.waiting = True

    def step_wait(self) -> VecEnvStepReturn:
        results = self._workers.get(self._refs)
        self.waiting, self._refs = False, []
        obs, rews, dones, infos, reset_infos = zip(*results, strict=True)
        self.reset_infos = list(reset_infos)
        return (_stack_obs(obs, self.observation_space), np.stack(rews), np.stack(dones),
                infos)  # type: ignore[return-value]

    def reset(self) -> VecEnvObs:
        results = self._workers.get([self._workers.call(i, _reset, self._seeds[i],
                                                        self._options[i])
                                     for i in range(self.num_envs)])
        obs, reset_infos = zip(*results, strict=True)
        self.reset_infos = list(reset_infos)
        self._reset_seeds()  # seeds and options are used once
        self._reset_options()
        return _stack_obs(obs, self.observation_space)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.waiting:
                self._workers.get(self._refs)
            self._all(_close)
        finally:
            self._workers.close()
            self.closed = True

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        return self._all(_render)

    def has_attr(self, attr_name: str) -> bool:
        return all(self._all(_has_attr, attr_name))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._all(_get_attr, attr_name, indices=indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._all(_set_attr, attr_name, value, indices=indices)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return self._all(_env_method, method_name, method_args, method_kwargs, indices=indices)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper],
                       indices: VecEnvIndices = None) -> list[bool]:
        return self._all(_is_wrapped, wrapper_class, indices=indices)


__all__ = ["RayVecEnv"]
