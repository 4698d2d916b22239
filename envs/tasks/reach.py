"""Reach: move the gripper just above the named object."""

from __future__ import annotations

import numpy as np

from vla_sim.envs.tasks.base import Task, TaskInstance

HOVER = 0.05  # target point is this far above the object's centre (m)
TOLERANCE = 0.03  # success radius (m)


class ReachTask(Task):
    name = "reach"
    n_other_objects = 2

    def sample_instance(self, rng: np.random.Generator, split: str) -> TaskInstance:
        objs = self._pick_objects(rng, split, 1 + self.n_other_objects, self.target_shapes)
        return self._finish(rng, split, objs, {"object": objs[0].name}, objs[0], None)

    def goal_point(self) -> np.ndarray:
        return self.position(self.instance.roles["object"]) + np.array([0.0, 0.0, HOVER])

    def is_success(self) -> bool:
        return bool(np.linalg.norm(self.robot.ee_position() - self.goal_point()) < TOLERANCE)

    def dense_reward(self, success: bool | None = None) -> float:
        return -float(np.linalg.norm(self.robot.ee_position() - self.goal_point())) \
            + float(self.is_success() if success is None else success)
