"""Add the env's privileged state, as one normalised vector, to the observation for a critic.

An asymmetric critic (Pinto et al. 2018) judges states from what the simulator knows, while the
actor sees only images, proprioception and the instruction. This wrapper adds
``obs["privileged"]``: ``Box(PRIVILEGED_DIM,)`` float32, laid out as :data:`PRIVILEGED_LAYOUT`::

    goal                     19  Task.goal_state() (vla_sim.envs.goal_state), its two xyz fields
                                 mapped from the robot workspace box to [-1, 1]
    ee_xyz                    3  end-effector position, workspace box -> [-1, 1]
    gripper                   1  finger opening over the robot's full opening (0 closed, 1 open)
    object_from_ee            3  instructed object - end effector, in units of 0.2 m
    destination_from_object   3  destination - instructed object, in units of 0.2 m (0 for Reach)
    object_yaw                2  sin and cos of the instructed object's yaw
    success                   1  the task's success predicate now (0/1)
    task                      4  one-hot of the task (PRIVILEGED_TASKS order): MultiTask's critic
                                 knows which task it judges

Fixed length whatever the task, so one critic serves every env. Every other key passes through,
and the actor never reads ``privileged`` (VLAPolicy's observation space does not hold it); the
evaluator's envs do not have this wrapper and need not.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vla_sim.envs.goal_state import GOAL_STATE_DIM, GOAL_STATE_LAYOUT, field_slices

PRIVILEGED_KEY = "privileged"
PRIVILEGED_TASKS = ("reach", "push", "pick_place", "stack")
"""Task names in one-hot order (a test checks that they are the env's tasks)."""
RELATIVE_SCALE = 0.2
"""Metres per unit of the relative vectors (object - ee, destination - object)."""

PRIVILEGED_FIELDS: tuple[tuple[str, int], ...] = (
    ("goal", GOAL_STATE_DIM), ("ee_xyz", 3), ("gripper", 1), ("object_from_ee", 3),
    ("destination_from_object", 3), ("object_yaw", 2), ("success", 1),
    ("task", len(PRIVILEGED_TASKS)),
)
"""(name, size) of each field of the privileged vector, in order."""


PRIVILEGED_LAYOUT: dict[str, slice] = field_slices(PRIVILEGED_FIELDS)
"""Field name -> its slice of the privileged vector."""
PRIVILEGED_DIM = PRIVILEGED_LAYOUT["task"].stop  # 36


def workspace_box() -> tuple[np.ndarray, np.ndarray]:
    """(centre, half extent) of the robot workspace box (m): positions map to [-1, 1] inside."""
    from vla_sim.sim.robots import WORKSPACE_HIGH, WORKSPACE_LOW

    return (WORKSPACE_HIGH + WORKSPACE_LOW) / 2.0, (WORKSPACE_HIGH - WORKSPACE_LOW) / 2.0


def privileged_vector(env: gym.Env) -> np.ndarray:
    """float32 (PRIVILEGED_DIM,) privileged state of a reset vla_sim env (see the module doc)."""
    base = env.unwrapped
    task = base.task
    state = base.privileged_state()
    centre, half = workspace_box()
    goal = task.goal_state().astype(np.float64)
    for name in ("object_xyz", "destination_xyz"):
        goal[GOAL_STATE_LAYOUT[name]] = (goal[GOAL_STATE_LAYOUT[name]] - centre) / half
    roles = state["roles"]
    obj = np.asarray(state["objects"][roles["object"]]["position"], np.float64)
    dest = (np.asarray(state["objects"][roles["destination"]]["position"], np.float64)
            if "destination" in roles else obj)
    ee = np.asarray(state["ee_position"], np.float64)
    yaw = float(state["objects"][roles["object"]]["yaw"])
    out = np.zeros(PRIVILEGED_DIM, np.float32)
    out[PRIVILEGED_LAYOUT["goal"]] = goal
    out[PRIVILEGED_LAYOUT["ee_xyz"]] = (ee - centre) / half
    out[PRIVILEGED_LAYOUT["gripper"]] = state["gripper_opening"] / (2.0 * base.robot.finger_max)
    out[PRIVILEGED_LAYOUT["object_from_ee"]] = (obj - ee) / RELATIVE_SCALE
    out[PRIVILEGED_LAYOUT["destination_from_object"]] = (dest - obj) / RELATIVE_SCALE
    out[PRIVILEGED_LAYOUT["object_yaw"]] = (math.sin(yaw), math.cos(yaw))
    out[PRIVILEGED_LAYOUT["success"]] = float(bool(state["success"]))
    out[PRIVILEGED_LAYOUT["task"].start + PRIVILEGED_TASKS.index(state["task"])] = 1.0
    return out


class PrivilegedObservation(gym.ObservationWrapper):
    """Add ``obs["privileged"]`` (:func:`privileged_vector`) for an asymmetric critic.

    Args:
        env: a vla_sim env (any wrappers around it) with a ``Dict`` observation space.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict):
            raise TypeError(f"PrivilegedObservation needs a Dict observation space, got {space}")
        if PRIVILEGED_KEY in space.spaces:
            raise ValueError(f"the observation already has a {PRIVILEGED_KEY!r} key")
        if not callable(getattr(env.unwrapped, "privileged_state", None)):
            raise TypeError("PrivilegedObservation needs a vla_sim env (privileged_state())")
        new = dict(space.spaces)
        new[PRIVILEGED_KEY] = spaces.Box(-np.inf, np.inf, (PRIVILEGED_DIM,), np.float32)
        self.observation_space = spaces.Dict(new)

    def observation(self, observation: dict) -> dict:
        return {**observation, PRIVILEGED_KEY: privileged_vector(self.env)}


__all__ = ["PRIVILEGED_DIM", "PRIVILEGED_FIELDS", "PRIVILEGED_KEY", "PRIVILEGED_LAYOUT",
           "PRIVILEGED_TASKS", "PrivilegedObservation", "privileged_vector", "workspace_box"]
