"""Gymnasium ids, registered when ``vla_sim`` is imported.

Registration is plain data: the entry point is a string, so ``import vla_sim`` loads neither
PyBullet nor the tasks; ``gymnasium.make`` imports :class:`VLAEnv` on first use.
"""

from __future__ import annotations

import gymnasium as gym

# Time limit per task (control steps at 20 Hz): the one place it is defined.
EPISODE_STEPS: dict[str, int] = {"reach": 50, "push": 100, "pick_place": 100, "stack": 150}

ENV_IDS: dict[str, dict] = {
    "vla_sim/Reach-v0": {"task": "reach"},
    "vla_sim/Push-v0": {"task": "push"},
    "vla_sim/PickPlace-v0": {"task": "pick_place"},
    "vla_sim/Stack-v0": {"task": "stack"},
    "vla_sim/MultiTask-v0": {"task": "multitask"},
}


def resolve_env_id(name: str) -> str:
    """``reach`` / ``Reach`` / ``PickPlace`` / ``pick_place`` / ``Reach-v0`` / ``vla_sim/Reach-v0``
    -> ``vla_sim/Reach-v0``. Names with ``/`` or ``:`` (other namespaces) pass unchanged."""
    if "/" in name or ":" in name:
        return name
    short = {env_id.split("/")[1].rsplit("-v", 1)[0].lower(): env_id for env_id in ENV_IDS}
    key = name.rsplit("-v", 1)[0].lower().replace("_", "")
    if key not in short:
        raise ValueError(f"unknown env {name!r}; choose one of "
                         f"{[k.split('/')[1].rsplit('-v', 1)[0] for k in ENV_IDS]} or a full id")
    return short[key]


def max_steps(task: str) -> int:
    """The time limit of ``task``; ``multitask`` gets the longest, so every task can finish."""
    if task == "multitask":
        return max(EPISODE_STEPS.values())
    return EPISODE_STEPS[task]


def register_envs() -> None:
    for env_id, kwargs in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point="vla_sim.envs.core:VLAEnv", kwargs=kwargs,
                     max_episode_steps=max_steps(kwargs["task"]))
