"""Gymnasium ids, registered when ``vla_sim`` is imported."""

from __future__ import annotations

import gymnasium as gym

from vla_sim.envs.tasks import TASKS

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
    if task == "multitask":
        return max(t.max_episode_steps for t in TASKS.values())
    return TASKS[task].max_episode_steps


def register_envs() -> None:
    for env_id, kwargs in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point="vla_sim.envs.core:VLAEnv", kwargs=kwargs,
                     max_episode_steps=max_steps(kwargs["task"]))
